"""The listening socket: TLS, the HTTP connection guard, and the site that binds them.

aiohttp parses HTTP well but, out of the box, leaves three doors open that a
hostile client walks through:

- **Slow requests** (slowloris): a connection that sends its request line and
  headers a byte at a time is kept for as long as aiohttp's keep-alive
  timeout (an hour in 3.14).  Here a request's head must be complete within
  ``http_header_timeout_s`` of its first byte (of the connection, for the first
  request); else the connection is closed.  Idle keep-alive connections close
  after ``http_keepalive_s``.
- **Malformed requests** (a header over 8,190 bytes, more than 128 headers, an
  unknown method, bad framing) are answered with plain text and logged at ERROR
  with a traceback each, so a client can flood the log.  Here they are answered
  in the API's JSON error shape, and logged at WARNING at most once a minute
  per cause, with the count of the ones not logged.
- **TLS**: HTTPS and WSS on the same port, TLS 1.2 or later with 1.3
  preferred (``--tls-min 1.3`` refuses 1.2).

:class:`GuardedSite` is ``web.SockSite`` with the guarded protocol; the CLI and
the tests start the server through :func:`start_site`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .errors import HTTP_CODES, error_body
from .settings import Settings

__all__ = ["GuardStats", "GuardedSite", "LogLimiter", "ssl_context", "start_site"]

log = logging.getLogger(__name__)



@dataclass(slots=True)
class LogLimiter:
    """At most one log line per cause every ``period_s``; counts what it held back (pure: fed ``now``)."""

    period_s: float = 60.0
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def admit(self, cause: str, now: float) -> int | None:
        """None to stay quiet; else how many lines of this cause were held back since the last one."""
        last = self._last.get(cause)
        if last is not None and now - last < self.period_s:
            self._held[cause] = self._held.get(cause, 0) + 1
            return None
        self._last[cause] = now
        return self._held.pop(cause, 0)


@dataclass(slots=True)
class GuardStats:
    """Counters read by the Prometheus collector."""

    header_timeouts: int = 0
    bad_requests: int = 0
    limiter: LogLimiter = field(default_factory=LogLimiter)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol with a deadline for each request's head and JSON errors."""

    def __init__(self, *args: Any, header_timeout_s: float, stats: GuardStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._guard_stats = stats
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_seen = 0  # requests whose head was complete when the timer was last settled

    # -- the head deadline ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and data and not self._upgraded and not self._request_in_progress:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self._request_count > self._heads_seen:  # a head is complete (or was refused): in time
            self._heads_seen = self._request_count
            self._disarm()

    def _arm(self) -> None:
        if self._header_timeout_s > 0 and self._head_timer is None:
            self._head_timer = self._loop.call_later(self._header_timeout_s, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_count > self._heads_seen or self._upgraded:
            return
        stats = self._guard_stats
        stats.header_timeouts += 1
        held = stats.limiter.admit("header_timeout", time.monotonic())
        if held is not None:
            peer = self.transport.get_extra_info("peername") if self.transport else None
            log.warning("closed a connection from %s: no complete request head within %g s (%d more not logged)",
                        peer, self._header_timeout_s, held)
        self.force_close()
        if self.transport is not None:
            self.transport.close()

    # -- errors before a handler ran -------------------------------------------------

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (4xx), or a handler's escape (500: a bug): the API's
        JSON error shape, and one WARNING per cause a minute, never a traceback per request."""
        stats = self._guard_stats
        cause = type(exc).__name__ if exc is not None else str(status)
        held = stats.limiter.admit(cause, time.monotonic())
        if status >= 500:
            if held is not None:
                log.error("request from %s failed (%d more like it not logged)", request.remote, held, exc_info=exc)
            code, text = "internal", "internal error"
        else:
            stats.bad_requests += 1
            text = (message or getattr(exc, "message", None) or "malformed request")[:300]
            if held is not None:
                log.warning("malformed request from %s: %s (%d more like it not logged)", request.remote, text, held)
            code = HTTP_CODES.get(status, "bad_request")
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun: no error response can follow")
        body = json.dumps(error_body(code, text), ensure_ascii=False)
        resp = web.Response(status=status, text=body, content_type="application/json")
        resp.force_close()
        return resp


class GuardedSite(web.SockSite):
    """``web.SockSite`` serving :class:`GuardedRequestHandler` connections (and TLS, if given)."""

    __slots__ = ("_header_timeout_s", "_stats")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, *, header_timeout_s: float,
                 stats: GuardStats | None = None, **kwargs: Any) -> None:
        super().__init__(runner, sock, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._stats = stats or GuardStats()

    @property
    def stats(self) -> GuardStats:
        return self._stats

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        kwargs = dict(server._kwargs)  # noqa: SLF001 - the runner's handler arguments (keepalive, limits, logs)

        def protocol() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                server, loop=loop, header_timeout_s=self._header_timeout_s, stats=self._stats, **kwargs
            )

        self._server = await loop.create_server(protocol, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context, or None without ``--tls-cert``.  Raises ``OSError`` or
    ``ssl.SSLError`` for a file that cannot be read or does not hold a matching key."""
    if settings.tls_cert is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if settings.tls_min == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def start_site(runner: web.BaseRunner, sock: socket.socket, settings: Settings,
                     stats: GuardStats | None = None) -> GuardedSite:
    """Serve ``runner`` on ``sock`` (bound, listening) with the guard and, if configured, TLS."""
    site = GuardedSite(runner, sock, header_timeout_s=settings.http_header_timeout_s, stats=stats,
                       ssl_context=ssl_context(settings), backlog=4096)
    await site.start()
    return site
