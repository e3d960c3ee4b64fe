"""`liveserver serve` as a user runs it: configuration errors, embedded Redis, drain, workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from liveserver.sdk import HostClient, ViewerClient

from ..conftest import SECRET, RedisProcess, free_port, start_redis
from .conftest import token


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVESERVER_", "REDIS_URL"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "liveserver", *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def spawn(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVESERVER_", "REDIS_URL"))}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "liveserver", "serve", *args], env=full_env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """Kill the server if it still runs; return its stderr (and close the pipe)."""
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate(timeout=timeout)
    return err


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if healthz(port)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("server did not become healthy")


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``liveserver serve --dev`` on a free port, its embedded Redis in a temporary directory."""
    port = free_port()
    proc = spawn("--dev", "--port", str(port), "--log-level", "WARNING",
                 "--data-dir", str(tmp_path_factory.mktemp("dev") / "data"))
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        finish(proc)


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("liveserver: error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def test_missing_and_short_secret() -> None:
    r = run_cli("serve", "--redis-url", "redis://127.0.0.1:1")
    assert r.returncode == 2 and "LIVESERVER_SECRET" in one_error_line(r.stderr)
    r = run_cli("serve", "--redis-url", "redis://127.0.0.1:1", env={"LIVESERVER_SECRET": "short"})
    assert r.returncode == 2 and "too short" in one_error_line(r.stderr)


def test_bad_settings_values() -> None:
    r = run_cli("serve", env={"LIVESERVER_SECRET": SECRET, "REDIS_URL": "http://nope"})
    assert r.returncode == 2 and "REDIS_URL" in one_error_line(r.stderr)
    r = run_cli("serve", "--workers", "0", env={"LIVESERVER_SECRET": SECRET})
    assert r.returncode == 2 and "--workers" in one_error_line(r.stderr)


def test_unreachable_redis() -> None:
    dead = free_port()
    r = run_cli("serve", "--port", str(free_port()), "--redis-url", f"redis://127.0.0.1:{dead}/0",
                env={"LIVESERVER_SECRET": SECRET})
    assert r.returncode == 1 and "cannot reach Redis" in one_error_line(r.stderr)


def test_taken_port(redis_server: RedisProcess) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("serve", "--port", str(port), "--redis-url", redis_server.url, env={"LIVESERVER_SECRET": SECRET})
    assert r.returncode == 1 and "cannot listen" in one_error_line(r.stderr)


def test_token_command() -> None:
    r = run_cli("token", "--sub", "alice", "--role", "host", env={"LIVESERVER_SECRET": SECRET})
    assert r.returncode == 0
    from liveserver.auth import verify_token

    assert verify_token(r.stdout.strip(), SECRET).user == "alice"
    r = run_cli("token", "--sub", "alice")
    assert r.returncode == 2 and "LIVESERVER_SECRET" in one_error_line(r.stderr)


async def test_sigterm_drains_with_1012(redis_server: RedisProcess, key_prefix: str) -> None:
    port = free_port()
    proc = spawn("--port", str(port), "--redis-url", redis_server.url,
                 env={"LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": key_prefix})
    try:
        await asyncio.to_thread(wait_healthy, port, proc)
        base = f"http://127.0.0.1:{port}"
        async with HostClient(base, token("h", "host")) as h:
            await h.create_room("drain", room_id="drain-room")
            await h.start_room("drain-room")
        viewers = [await ViewerClient.connect(f"ws://127.0.0.1:{port}/ws", token(f"v{i}"), "drain-room") for i in range(5)]
        proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(v.wait_closed(timeout_s=10) for v in viewers))
        assert codes == [1012] * 5
        assert await asyncio.to_thread(proc.wait, 15) == 0
        with pytest.raises(OSError):  # no longer listening
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        finish(proc)


async def test_healthz_follows_redis(key_prefix: str) -> None:
    own = start_redis()
    port = free_port()
    proc = spawn("--port", str(port), "--redis-url", own.url,
                 env={"LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": key_prefix})
    try:
        await asyncio.to_thread(wait_healthy, port, proc)
        own.kill()
        status, body = await asyncio.to_thread(healthz, port)
        assert status == 503 and body["status"] == "unavailable"
        # an API call while Redis is down is a 503 with the error shape, not a 500
        async with HostClient(f"http://127.0.0.1:{port}", token("h", "host")) as h:
            from liveserver.sdk import ApiError

            with pytest.raises(ApiError) as e:
                await h.get_room("any")
            assert e.value.status == 503 and e.value.code == "unavailable"
        own.start()
        deadline = time.monotonic() + 10
        while (await asyncio.to_thread(healthz, port))[0] != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    finally:
        finish(proc)
        own.stop()


def test_embedded_redis_lifecycle(tmp_path: Path) -> None:
    """--dev with no REDIS_URL: a real redis-server child with AOF under the data dir, stopped with the server."""
    port = free_port()
    data = tmp_path / "data"
    proc = spawn("--dev", "--port", str(port), "--data-dir", str(data))
    try:
        wait_healthy(port, proc)
        children = psutil.Process(proc.pid).children()
        redis_children = [c for c in children if "redis-server" in c.name()]
        assert len(redis_children) == 1
        redis_pid = redis_children[0].pid
        assert (data / "appendonly.aof").exists() or (data / "appendonlydir").exists()
        # a second server on the same data dir refuses with one line
        second = spawn("--dev", "--port", str(free_port()), "--data-dir", str(data))
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1 and "in use" in one_error_line(err)
        # the demo room is live
        with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/rooms/demo", headers={"Authorization": f"Bearer {dev_token(port)}"}
        )) as r:
            assert json.load(r)["status"] == "live"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "embedded redis-server" in err
        assert not psutil.pid_exists(redis_pid) or psutil.Process(redis_pid).status() == psutil.STATUS_ZOMBIE
    finally:
        finish(proc)


def dev_token(port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/dev/tokens", data=b'{"sub": "t"}', method="POST")
    with urllib.request.urlopen(req) as r:
        return json.load(r)["token"]


def test_embedded_redis_dies_with_a_killed_server(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn("--dev", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    try:
        wait_healthy(port, proc)
        redis_child = next(c for c in psutil.Process(proc.pid).children() if "redis-server" in c.name())
        finish(proc)
        redis_child.wait(timeout=10)  # PR_SET_PDEATHSIG: it does not outlive the server
        assert not redis_child.is_running()
    finally:
        finish(proc)


async def test_workers_share_port_and_rooms(redis_server: RedisProcess, key_prefix: str) -> None:
    port = free_port()
    proc = spawn("--port", str(port), "--workers", "2", "--redis-url", redis_server.url,
                 env={"LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": key_prefix})
    try:
        await asyncio.to_thread(wait_healthy, port, proc)
        workers = [c for c in psutil.Process(proc.pid).children() if "python" in c.name().lower()]
        assert len(workers) >= 2
        base = f"http://127.0.0.1:{port}"
        async with HostClient(base, token("h", "host")) as h:
            await h.create_room("workers", room_id="w-room")
            await h.start_room("w-room")
            viewers = [await ViewerClient.connect(f"ws://127.0.0.1:{port}/ws", token(f"v{i}"), "w-room") for i in range(12)]
            await h.put_product("w-room", "p", "P", 1)
            await h.pin_product("w-room", "p")
            for v in viewers:  # whichever worker holds it
                assert (await v.wait_for("product_pinned"))["product_id"] == "p"
            assert (await h.get_room("w-room"))["online"] == 12
        proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(v.wait_closed(timeout_s=15) for v in viewers))
        assert set(codes) == {1012}
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        finish(proc)


async def test_workers_drain_when_their_supervisor_is_killed(redis_server: RedisProcess, key_prefix: str) -> None:
    """SIGKILL (or the OOM killer) takes the supervisor of --workers: its workers notice within a
    second or two, close their viewers with 1012 and exit, instead of serving on unsupervised."""
    port = free_port()
    proc = spawn("--port", str(port), "--workers", "2", "--redis-url", redis_server.url,
                 env={"LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": key_prefix})
    workers: list[psutil.Process] = []
    try:
        await asyncio.to_thread(wait_healthy, port, proc)
        workers = [c for c in psutil.Process(proc.pid).children() if "python" in c.name().lower()]
        assert len(workers) >= 2
        async with HostClient(f"http://127.0.0.1:{port}", token("h", "host")) as h:
            await h.create_room("orphans", room_id="o-room")
            await h.start_room("o-room")
        viewer = await ViewerClient.connect(f"ws://127.0.0.1:{port}/ws", token("v"), "o-room")
        proc.kill()
        assert await viewer.wait_closed(timeout_s=15) == 1012
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, 20)
        assert alive == []
    finally:
        finish(proc)
        for w in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                w.kill()


def test_tls_flags_are_checked() -> None:
    r = run_cli("serve", "--tls-cert", "/nonexistent.pem", env={"LIVESERVER_SECRET": SECRET})
    assert r.returncode == 2 and "--tls-key" in one_error_line(r.stderr)
    r = run_cli("serve", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key",
                env={"LIVESERVER_SECRET": SECRET})
    assert r.returncode == 2 and "not a readable file" in one_error_line(r.stderr)


def test_sighup_drains_like_sigterm_and_the_embedded_redis_warns(tmp_path: Path) -> None:
    """A closed terminal (SIGHUP) drains and exits 0, and takes the embedded Redis with it; without
    --dev the embedded Redis says loudly that it is for development."""
    port = free_port()
    proc = spawn("--port", str(port), "--data-dir", str(tmp_path / "data"), env={"LIVESERVER_SECRET": SECRET})
    try:
        wait_healthy(port, proc)
        redis_pid = next(c.pid for c in psutil.Process(proc.pid).children() if "redis-server" in c.name())
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "draining" in err
        warnings = [ln for ln in err.splitlines() if " WARNING " in ln and "embedded Redis is for development" in ln]
        assert len(warnings) == 1 and str(tmp_path / "data") in warnings[0]
        assert not psutil.pid_exists(redis_pid) or psutil.Process(redis_pid).status() == psutil.STATUS_ZOMBIE
    finally:
        finish(proc)


# -- --dev's own instructions, and `liveserver token --dev-url` -------------------------------------


def read_stderr_until(proc: subprocess.Popen[str], marker: str, timeout: float = 20) -> str:
    """What the server wrote on stderr up to the line holding ``marker`` (raw reads: no buffering
    can hide a line from the wait)."""
    assert proc.stderr is not None
    fd, seen = proc.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen or not seen.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0 and proc.poll() is None, f"no {marker!r} on stderr: {seen.decode(errors='replace')}"
        if select.select([fd], [], [], min(remaining, 0.5))[0]:
            seen += os.read(fd, 65536)
    return seen.decode()


def logged(stderr: str, prefix: str) -> str:
    """The text after ``prefix`` on the one log line that holds it."""
    lines = [ln.split(prefix, 1)[1] for ln in stderr.splitlines() if prefix in ln]
    assert len(lines) == 1, stderr
    return lines[0]


def curl(command: str) -> tuple[int, dict]:
    """Run a logged ``curl -H 'Authorization: Bearer ...' URL`` as curl would (no curl needed)."""
    argv = shlex.split(command)
    assert argv[0] == "curl" and argv[1] == "-H" and len(argv) == 4, argv
    name, _, value = argv[2].partition(": ")
    with urllib.request.urlopen(urllib.request.Request(argv[3], headers={name: value}), timeout=5) as r:
        return r.status, json.load(r)


def test_dev_logs_commands_that_work(tmp_path: Path) -> None:
    """The demo room's line is a curl that answers 200 as printed, and the token command it names
    mints tokens the server takes; without LIVESERVER_SECRET the log says the secret was generated."""
    port = free_port()
    proc = spawn("--dev", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    try:
        err = read_stderr_until(proc, "more tokens:")
        status, room = curl(logged(err, "demo room 'demo' is live: "))
        assert status == 200 and room["status"] == "live"
        assert "a secret generated for this run" in logged(err, "tokens are signed with ")

        command = shlex.split(logged(err, "more tokens: ").split(" (or: ")[0])
        assert command[:2] == ["liveserver", "token"] and "--dev-url" in command
        minted = run_cli(*command[1:])
        assert minted.returncode == 0, minted.stderr
        status, _ = curl(shlex.join(["curl", "-H", f"Authorization: Bearer {minted.stdout.strip()}",
                                     f"http://127.0.0.1:{port}/api/v1/rooms/demo"]))
        assert status == 200
    finally:
        finish(proc)


def test_dev_signs_with_liveserver_secret_when_set(tmp_path: Path) -> None:
    """--dev takes LIVESERVER_SECRET when it is set (the help says so): its demo tokens and the ones
    `token --dev-url` fetches verify with it, and the log says which secret signs."""
    from liveserver.auth import verify_token

    assert "LIVESERVER_SECRET" in run_cli("serve", "--help").stdout
    port = free_port()
    proc = spawn("--dev", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                 env={"LIVESERVER_SECRET": SECRET})
    try:
        err = read_stderr_until(proc, "more tokens:")
        assert logged(err, "tokens are signed with ") == "LIVESERVER_SECRET"
        assert verify_token(logged(err, "demo viewer token: ").strip(), SECRET).user == "demo-viewer"
        r = run_cli("token", "--dev-url", f"http://127.0.0.1:{port}", "--sub", "carol", "--role", "host",
                    "--name", "Carol", "--ttl", "600")
        assert r.returncode == 0, r.stderr
        principal = verify_token(r.stdout.strip(), SECRET)
        assert (principal.user, str(principal.role), principal.name) == ("carol", "host", "Carol")
        r = run_cli("token", "--dev-url", f"http://127.0.0.1:{port}", "--sub", "carol", "--ttl", "0")
        assert r.returncode == 2 and "refused the token" in one_error_line(r.stderr)  # the server's 422
    finally:
        finish(proc)


def test_token_dev_url_errors_are_one_line(redis_server: RedisProcess, key_prefix: str) -> None:
    """No server there, a server without --dev, neither a secret nor --dev-url: one line each, no traceback."""
    r = run_cli("token", "--sub", "alice", "--dev-url", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "cannot reach" in one_error_line(r.stderr)
    port = free_port()
    proc = spawn("--port", str(port), "--redis-url", redis_server.url,
                 env={"LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": key_prefix})
    try:
        wait_healthy(port, proc)
        r = run_cli("token", "--sub", "alice", "--dev-url", f"http://127.0.0.1:{port}")
        assert r.returncode == 1 and "is not a --dev server" in one_error_line(r.stderr)
    finally:
        finish(proc)
    r = run_cli("token", "--sub", "alice")  # neither a secret nor a --dev server: the error names both ways
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "LIVESERVER_SECRET" in line and "--dev-url" in line


async def test_workers_share_a_rooms_video(redis_server: RedisProcess, key_prefix: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With --workers 2, a room's media runs in one worker; WHEP offers that the kernel hands to the
    other worker are forwarded to it over its own loopback port, so every viewer gets the program."""
    import aiohttp
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])  # loopback only
    from .test_video import RED, Publisher, Viewer

    port = free_port()
    proc = spawn("--port", str(port), "--workers", "2", "--redis-url", redis_server.url,
                 env={"LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": key_prefix,
                      "LIVESERVER_VIDEO_WIDTH": "320", "LIVESERVER_VIDEO_HEIGHT": "240"})
    viewers: list[Viewer] = []
    cam = None
    try:
        await asyncio.to_thread(wait_healthy, port, proc)
        base = f"http://127.0.0.1:{port}"
        async with HostClient(base, token("h", "host")) as h:
            await h.create_room("workers video", room_id="wv-room")
            await h.start_room("wv-room")
        node = SimpleNamespace(base_url=base)
        async with aiohttp.ClientSession() as http:
            cam = Publisher(node, "wv-room", "cam1", RED)
            assert await cam.start(http, token("h", "host")) == 201
        for i in range(6):  # a new connection each: the kernel spreads them over the workers
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                for _ in range(50):
                    viewer = Viewer()
                    viewers.append(viewer)
                    status, body, _ = await viewer.start(http, node, "wv-room", token(f"wv{i}"))  # type: ignore[arg-type]
                    if status != 409:  # 409: the program's first frame is not there yet
                        break
                    await asyncio.sleep(0.2)
                assert status == 201, body
        seats = [v for v in viewers if v.pc.remoteDescription is not None]  # the ones answered 201
        assert len(seats) == 6
        for viewer in seats:
            await viewer.colour_becomes(160, 120, RED)
    finally:
        for viewer in viewers:
            await viewer.close()
        if cam is not None:
            await cam.pc.close()
        finish(proc)
