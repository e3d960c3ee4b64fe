"""``liveserver serve`` and ``liveserver token``.

Errors a user can cause (a missing secret, an unreachable Redis, a taken
port) print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from . import __version__
from .settings import Settings, SettingsError

__all__ = ["main"]

log = logging.getLogger("liveserver")

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liveserver", description="Live-commerce room server.")
    p.add_argument("--version", action="version", version=f"liveserver {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument("--redis-url", help="Redis to use (env REDIS_URL); none: start an embedded Redis")
    serve.add_argument("--redis-cluster", action="store_true", default=None, help="REDIS_URL is a Redis Cluster node")
    serve.add_argument("--dev", action="store_true", default=None,
                       help="demo mode: a demo room, the pages, tokens at POST /api/v1/dev/tokens; signed with "
                            "LIVESERVER_SECRET when it is set, else with a secret generated for this run")
    serve.add_argument("--workers", type=int, default=None, help="processes sharing the port (SO_REUSEPORT); default 1")
    serve.add_argument("--data-dir", help="embedded Redis data (env LIVESERVER_DATA_DIR, default ./.liveserver)")
    serve.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ERROR")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS and WSS on the port (env LIVESERVER_TLS_CERT)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert (env LIVESERVER_TLS_KEY)")
    serve.add_argument("--public-url", help="the URL other nodes redirect WHIP and WHEP to for this node's rooms")
    serve.add_argument("--ice-host", dest="ice_hosts", metavar="ADDR[,ADDR]",
                       help="addresses WebRTC host candidates are offered on (default: --host unless a wildcard)")
    serve.add_argument("--tls-min", choices=["1.2", "1.3"], help="oldest TLS version accepted (default 1.2; 1.3 is preferred)")

    tok = sub.add_parser("token", help="mint a token with LIVESERVER_SECRET (as the platform's backend does), "
                                       "or fetch one from a --dev server (--dev-url)")
    tok.add_argument("--sub", required=True, help="user id")
    tok.add_argument("--role", default="viewer", choices=["viewer", "host", "admin"])
    tok.add_argument("--name", help="display name (at most 32 characters)")
    tok.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    tok.add_argument("--dev-url", metavar="URL",
                     help="ask this --dev server (POST URL/api/v1/dev/tokens) instead of minting with "
                          "LIVESERVER_SECRET, e.g. http://127.0.0.1:8080")
    return p


def _fail(message: str, code: int) -> int:
    print(f"liveserver: error: {message}", file=sys.stderr)
    return code


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=4096, reuse_port=reuse_port)


def _run(coro: Any) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(coro)


async def _serve(settings: Settings, sock: socket.socket, parent_pid: int | None = None) -> int:
    """Serve on ``sock`` until SIGTERM, SIGINT or SIGHUP (or, for a worker, until its
    supervisor ``parent_pid`` is gone), then drain."""
    from .app import create_app
    from .dev import seed_demo
    from .keys import SERVICES
    from .serving import GuardedSite, start_site

    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=settings.drain_timeout_s, access_log=None,
                           keepalive_timeout=settings.http_keepalive_s)
    try:
        await runner.setup()
    except ConnectionError as exc:
        sock.close()
        return _fail(str(exc), EXIT_RUNTIME)
    try:
        await start_site(runner, sock, settings, app[SERVICES].guard)
    except (OSError, ssl.SSLError) as exc:
        await runner.cleanup()
        return _fail(f"cannot serve TLS with {settings.tls_cert} and {settings.tls_key}: {exc}", EXIT_CONFIG)
    host, port = sock.getsockname()[:2]
    http, ws = ("https", "wss") if settings.tls_cert else ("http", "ws")
    shown = f"[{host}]" if ":" in host else host
    log.info("listening on %s://%s:%d (WebSocket: %s://%s:%d/ws)%s", http, shown, port, ws, shown, port,
             f", TLS {settings.tls_min}+" if settings.tls_cert else "")
    if settings.public_url or settings.workers == 1:
        app[SERVICES].video.advertise(settings.public_url or f"{http}://{shown}:{port}")
    else:  # workers share the port, which is no one worker's address: each also listens on its own
        # loopback port, to which the other workers forward the WHIP and WHEP of the rooms it holds
        private = socket.create_server(("127.0.0.1", 0), backlog=512)
        await GuardedSite(runner, private, header_timeout_s=settings.http_header_timeout_s,
                          stats=app[SERVICES].guard, backlog=512).start()
        app[SERVICES].video.advertise(f"http://127.0.0.1:{private.getsockname()[1]}")
    if settings.dev:
        await seed_demo(app[SERVICES], f"{http}://{shown}:{port}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: the terminal closed; drain as for SIGTERM
        loop.add_signal_handler(sig, stop.set)
    orphan_watch = loop.create_task(_watch_parent(parent_pid, stop)) if parent_pid is not None else None
    await stop.wait()
    if orphan_watch is not None:
        orphan_watch.cancel()
    log.info("draining: refusing new connections, closing sockets with 1012")
    await runner.cleanup()
    log.info("stopped")
    return 0


async def _watch_parent(parent_pid: int, stop: asyncio.Event, period_s: float = 1.0) -> None:
    """A worker whose supervisor died (SIGKILL, OOM) is re-parented: it drains and exits
    instead of serving on alone, unsupervised, on the shared port."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(period_s)
    log.warning("the supervisor (pid %d) is gone: draining", parent_pid)
    stop.set()


def _worker(settings: Settings, index: int, parent_pid: int) -> None:
    """A worker process of ``--workers N``: binds the shared port with SO_REUSEPORT."""
    _setup_logging(settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C (and SIGHUP) into SIGTERM
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        sock = _bind(settings.host, settings.port, reuse_port=True)
    except OSError as exc:
        sys.exit(_fail(f"worker {index} cannot listen on {settings.host}:{settings.port}: {exc.strerror}", EXIT_RUNTIME))
    sys.exit(_run(_serve(settings, sock, parent_pid)))


def _supervise(settings: Settings) -> int:
    """Run ``settings.workers`` processes; forward SIGTERM; restart a worker that dies."""
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, Any] = {}

    def spawn(i: int) -> None:
        p = ctx.Process(target=_worker, args=(settings, i, os.getpid()), name=f"liveserver-worker-{i}")
        p.start()
        procs[i] = p

    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    for i in range(settings.workers):
        spawn(i)
    log.info("%d workers on http://%s:%d", settings.workers, settings.host, settings.port)
    started = time.monotonic()
    while not stopping:
        time.sleep(0.2)
        for i, p in list(procs.items()):
            if p.is_alive() or stopping:
                continue
            if p.exitcode == EXIT_RUNTIME and time.monotonic() - started < 10:
                stopping = True  # a worker that fails at start (Redis down) fails the server
                break
            log.warning("worker %d exited with %s; restarting it", i, p.exitcode)
            spawn(i)
    for p in procs.values():
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    codes = []
    for p in procs.values():
        p.join(settings.drain_timeout_s + 10)
        if p.is_alive():
            p.kill()
            p.join()
        codes.append(p.exitcode)
    return 0 if all(c == 0 for c in codes) else EXIT_RUNTIME


#: the flags of ``serve`` that are settings of the same name (a flag not given is None: the env decides)
_SERVE_FLAGS = ("host", "port", "redis_url", "redis_cluster", "dev", "workers", "data_dir", "log_level", "tls_cert",
                "tls_key", "tls_min", "ice_hosts", "public_url")


def serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(**{name: getattr(args, name) for name in _SERVE_FLAGS})
    except SettingsError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    _setup_logging(settings.log_level)
    log.info("liveserver %s starting%s", __version__, " in --dev mode (demo only)" if settings.dev else "")

    # Refuse a taken port before starting anything else.
    try:
        probe = _bind(settings.host, settings.port, reuse_port=False)
    except OSError as exc:
        return _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", EXIT_RUNTIME)
    if settings.workers > 1:
        probe.close()

    embedded = None
    if settings.redis_url is None:
        from .embedded import EmbeddedRedis, EmbeddedRedisError

        embedded = EmbeddedRedis(settings.data_dir, appendfsync=settings.embedded_appendfsync)
        try:
            url = embedded.start()
        except EmbeddedRedisError as exc:
            probe.close()
            return _fail(str(exc), EXIT_RUNTIME)
        log.info("no REDIS_URL: started an embedded redis-server (pid %s) at %s", embedded.pid, url)
        log.info("embedded Redis data in %s (AOF on, appendfsync %s); it stops with the server",
                 embedded.data_dir, settings.embedded_appendfsync)
        if not settings.dev:
            log.warning("no REDIS_URL: the embedded Redis is for development and single-machine demos; "
                        "its data lives in %s. Set REDIS_URL to a Redis of your own in production.", embedded.data_dir)
        settings = settings.replace(redis_url=url)
    else:
        from .redisio import describe_url

        log.info("using Redis at %s%s", describe_url(settings.redis_url), " (cluster)" if settings.redis_cluster else "")

    try:
        if settings.workers == 1:
            return _run(_serve(settings, probe))
        return _supervise(settings)
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded Redis stopped")


def token(args: argparse.Namespace) -> int:
    from .auth import mint_token
    from .settings import MIN_SECRET_LENGTH
    from .wire import ID_RE

    if not ID_RE.match(args.sub):
        return _fail("--sub must be 1-64 of [A-Za-z0-9_.-]", EXIT_CONFIG)
    if args.dev_url:
        return _dev_token(args)
    secret = os.environ.get("LIVESERVER_SECRET", "")
    if len(secret) < MIN_SECRET_LENGTH:
        return _fail(f"set LIVESERVER_SECRET (at least {MIN_SECRET_LENGTH} characters) to mint tokens, "
                     "or fetch one from a --dev server with --dev-url URL", EXIT_CONFIG)
    print(mint_token(secret, args.sub, args.role, name=args.name, ttl_s=args.ttl))
    return 0


def _dev_token(args: argparse.Namespace) -> int:
    """``token --dev-url``: a token from a --dev server's ``POST /api/v1/dev/tokens`` (signed with its secret)."""
    import json
    import urllib.error
    import urllib.request

    url = args.dev_url.rstrip("/") + "/api/v1/dev/tokens"
    body: dict[str, Any] = {"sub": args.sub, "role": args.role, "ttl_s": args.ttl}
    if args.name is not None:
        body["name"] = args.name
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            print(json.load(resp)["token"])
            return 0
    except urllib.error.HTTPError as exc:
        return _fail(_dev_token_refusal(args.dev_url, exc), EXIT_CONFIG if exc.code in (400, 422) else EXIT_RUNTIME)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(f"cannot reach {args.dev_url} for a token: {reason}", EXIT_RUNTIME)
    except KeyError:
        return _fail(f"{url} answered without a token: is {args.dev_url} a liveserver?", EXIT_RUNTIME)


def _dev_token_refusal(dev_url: str, exc: Any) -> str:
    """One line for a refused ``POST /api/v1/dev/tokens``: the server's own message when it has one."""
    import json

    try:
        message = json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError, OSError):
        message = exc.reason
    if exc.code == 403:
        return f"{dev_url} is not a --dev server ({message}): mint with LIVESERVER_SECRET instead"
    if exc.code == 404:
        return f"{dev_url} has no /api/v1/dev/tokens: is it a liveserver started with --dev?"
    return f"{dev_url} refused the token: HTTP {exc.code} {message}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "serve":
            return serve(args)
        if args.command == "token":
            return token(args)
    return 0
