"""The ``/ws`` endpoint: handshake, ``hello`` -> ``welcome``, the read loop, dispatch.

One :class:`Session` per socket.  Reading happens here; writing happens in
the connection's writer task (hub.py), so a slow socket never blocks a read
and nothing here awaits another viewer's socket.

Protocol points (docs/protocol.md, sections 2 and 4):

- the first client message is ``hello`` within ``hello_timeout_s``, else close 4001;
- a bad or expired token: 4001; an unknown room: 4004; a banned user: 4003;
  too many connections (per process or per user): 4029;
- a frame over ``max_frame_bytes``, an undecodable or invalid message, or one
  over the connection's message rate is answered with an ``error`` frame and
  counts as a strike; more than ``bad_frame_limit`` strikes within
  ``bad_frame_window_s`` close with 4008; a frame over ``hard_frame_bytes``
  closes with 4008 at once;
- SIGTERM: every socket is closed with 1012 after what is queued for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .admission import Rejection, join, welcome_message
from .auth import Principal
from .errors import ApiError, BadRequest, Unavailable
from .hub import Connection
from .limits import StrikeCounter, TokenBucket
from .redisio.client import REDIS_DOWN
from .services import Services
from .wire import (
    ClientMessage,
    CloseCode,
    ErrorCode,
    Hello,
    Ping,
    Protocol,
    WireError,
    close_reason,
    decode,
    encode,
    error_message,
    parse_client_message,
)

__all__ = ["Command", "Gateway", "LiveWebSocket", "Session"]

log = logging.getLogger(__name__)

#: A command handler: ``await handler(session, message)``; it replies through ``session.reply``.
Command = Callable[["Session", Any], Awaitable[None]]



class LiveWebSocket(web.WebSocketResponse):
    """aiohttp closes a frame over ``max_msg_size`` with 1009; the contract says 4008."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            code, message = CloseCode.POLICY, b"frame too large"
        return await super().close(code=code, message=message, drain=drain)


class Gateway:
    """The ``/ws`` endpoint of one node: its sessions, its command table and its drain
    (aiohttp's own pattern: the app keeps its websockets and closes them ``on_shutdown``)."""

    def __init__(self, services: Services, commands: Mapping[type, Command]) -> None:
        self.services = services
        #: client command handlers by message class (danmaku, grabs and claims register here: app.py)
        self.commands = dict(commands)
        self.sessions: set[Session] = set()  # WebSocket sessions on this process, welcomed or not
        self.draining = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        s = self.services.settings
        if self.draining:
            raise Unavailable("the server is restarting: connect to another node")
        ws = LiveWebSocket(
            protocols=(Protocol.JSON.value, Protocol.MSGPACK.value),
            compress=False,  # frames are encoded once for many sockets; per-socket deflate would undo that
            max_msg_size=s.hard_frame_bytes,
            heartbeat=s.ws_heartbeat_s,
        )
        if not ws.can_prepare(request).ok:
            raise BadRequest("/ws speaks WebSocket: send an Upgrade request")
        await ws.prepare(request)
        if s.ws_sndbuf_bytes and request.transport is not None:
            sock = request.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, s.ws_sndbuf_bytes)
        protocol = Protocol(ws.ws_protocol) if ws.ws_protocol else Protocol.JSON
        session = Session(self, ws, protocol, ip=request.remote or "unknown")
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:  # a bug in the teardown itself: never an HTTP 500 written into an upgraded socket
            log.exception("WebSocket session of %s failed", session.who)
            with contextlib.suppress(Exception):
                if not ws.closed:
                    await asyncio.wait_for(
                        ws.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error"), s.close_grace_s
                    )
        finally:
            self.sessions.discard(session)
            session.done.set()
            self.services.metrics.ws_closes.labels(code=str(ws.close_code)).inc()
        return ws

    async def drain(self) -> None:
        """Close every WebSocket with 1012 (after the command in hand and what is queued)
        and wait for them, at most ``drain_timeout_s``; then drop what is left."""
        self.draining = True
        sessions = list(self.sessions)
        for session in sessions:
            session.drain()
        if sessions:
            done = asyncio.gather(*(s.done.wait() for s in sessions))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done, self.services.settings.drain_timeout_s)
        for conn in self.services.hub.connections():
            conn.abort()


class Session:
    """One WebSocket from upgrade to close."""

    def __init__(self, gateway: Gateway, ws: LiveWebSocket, protocol: Protocol, *, ip: str = "unknown") -> None:
        self.gateway = gateway
        self.services = gateway.services
        self.ws = ws
        self.protocol = protocol
        self.ip = ip
        self.rtt_ms: int | None = None  # as the client measured it (ping.rtt_ms)
        self.conn: Connection | None = None
        self.principal: Principal | None = None
        self.done = asyncio.Event()
        s = self.services.settings
        self._bucket = TokenBucket(s.client_msg_rate, s.client_msg_burst, time.monotonic())
        self._strikes = StrikeCounter(s.bad_frame_limit, s.bad_frame_window_s)
        self._busy = False  # a command is being handled
        self._drain_after = False  # close with 1012 once the command in hand is answered

    @property
    def who(self) -> str:
        """The user, once the token was read; else the peer's address (for logs)."""
        return self.principal.user if self.principal else self.ip

    # -- the session -------------------------------------------------------------

    async def run(self) -> None:
        try:
            if len(self.gateway.sessions) > self.services.settings.max_connections:
                await self._refuse(Rejection(CloseCode.TOO_MANY_CONNECTIONS, ErrorCode.TOO_MANY_CONNECTIONS,
                                             "server is full"))
                return
            if await self._handshake():
                await self._read_loop()
        except Exception:  # a bug: logged, and the client hears it (error frame, 1011), never a silent 1000
            log.exception("WebSocket session of %s failed", self.who)
            if self.conn is None or not self.conn.closing:
                await self._refuse(Rejection(CloseCode.INTERNAL_ERROR, ErrorCode.INTERNAL, "internal error"))
        finally:
            await self._teardown()

    def drain(self) -> None:
        """SIGTERM: close with 1012, after the command in hand (if any) has been answered."""
        conn = self.conn
        if conn is None:  # still in the handshake: no hub connection to flush
            restart = Rejection(CloseCode.SERVICE_RESTART, None, "server restart")
            self.services.tasks.spawn(self._refuse(restart), name="drain-handshake")
        elif self._busy:
            self._drain_after = True
        else:
            conn.close(CloseCode.SERVICE_RESTART, "server restart")

    async def _refuse(self, rejection: Rejection) -> None:
        """The one place a rejection reaches the client: its ``error`` frame (if any), then its
        close.  Before the hub connection exists the frame is written here; after, it goes
        ahead of everything queued for the connection."""
        frame = rejection.frame()
        self.services.metrics.ws_errors.labels(code=rejection.error_code or str(int(rejection.close_code))).inc()
        conn = self.conn
        if conn is not None:
            if frame is not None:
                conn.send_first(frame)
            conn.close(rejection.close_code, rejection.message)
            return
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            if frame is not None:
                data = encode(frame, self.protocol)
                await (self.ws.send_bytes(data) if isinstance(data, bytes) else self.ws.send_str(data))
            await asyncio.wait_for(
                self.ws.close(code=rejection.close_code, message=close_reason(rejection.message)),
                self.services.settings.close_grace_s,
            )

    async def _handshake(self) -> bool:
        """``hello`` -> :func:`admission.join` -> ``welcome``; False if the session ends here."""
        services = self.services
        hello: Hello | None = None
        try:
            hello = await self._read_hello()
            if hello is None:
                return False
            result = await join(services, hello, self._attach)
        except Rejection as rejection:
            if rejection.req_id is None and hello is not None:
                rejection.req_id = hello.req_id
            await self._refuse(rejection)
            return False
        self.principal = result.principal
        room = result.room.room_id
        welcome = welcome_message(result, services.clock.now_ms(), hello.req_id)
        # No await from here to send_first: the danmaku seam (fanout.activate) relies on it.
        services.fanout.note_seq(room, result.state.seq)
        services.likes.seen(room, result.state.likes)
        result.conn.send_first(welcome, *services.fanout.activate(result.conn, result.state.seq, result.state.items))
        return True

    async def _read_hello(self) -> Hello | None:
        """The first message, which must be a valid ``hello``; None if the socket closed (or
        the server drains) before it came."""
        s = self.services.settings
        try:
            msg = await self.ws.receive(timeout=s.hello_timeout_s)
        except TimeoutError:
            raise Rejection(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED,
                            f"no hello within {s.hello_timeout_s:g} s") from None
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY) or self.gateway.draining:
            return None
        try:
            hello = parse_client_message(decode(msg.data, self.protocol))
        except WireError as exc:
            raise Rejection(CloseCode.UNAUTHORIZED, exc.code, f"the first message must be a valid hello: {exc.message}",
                            req_id=exc.req_id) from None
        if not isinstance(hello, Hello):
            raise Rejection(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, "the first message must be hello",
                            req_id=getattr(hello, "req_id", None))
        return hello

    def _attach(self, principal: Principal, room: str, is_host: bool) -> Connection:
        """The join passed its first checks: the session's hub connection, registered (room
        messages queue up behind the welcome from here on)."""
        hub = self.services.hub
        self.principal = principal
        conn = Connection(ws=self.ws, principal=principal, room=room, protocol=self.protocol,
                          limits=hub.limits, stats=hub.stats, is_host=is_host)
        hub.add(conn)
        self.conn = conn
        return conn

    async def _read_loop(self) -> None:
        conn = self.conn
        assert conn is not None
        s = self.services.settings
        max_bytes = s.max_frame_bytes
        async for msg in self.ws:
            if conn.closing:
                break
            if msg.type is WSMsgType.TEXT:
                data: str | bytes = msg.data
                size = len(data) if len(data) * 4 <= max_bytes else len(msg.data.encode())
            elif msg.type is WSMsgType.BINARY:
                data = msg.data
                size = len(data)
            else:
                break
            now = time.monotonic()
            try:
                if size > max_bytes:
                    raise WireError(ErrorCode.FRAME_TOO_LARGE, f"frames are limited to {max_bytes} bytes")
                if not self._bucket.take(now):
                    raise WireError(ErrorCode.RATE_LIMITED, f"more than {s.client_msg_rate:g} messages a second")
                parsed = parse_client_message(decode(data, self.protocol))
            except WireError as exc:
                if self._strike(exc, now):
                    break
                continue
            self._busy = True
            try:
                await self._dispatch(parsed)
            finally:
                self._busy = False
            if self._drain_after:
                conn.close(CloseCode.SERVICE_RESTART, "server restart")
                break

    def _strike(self, exc: WireError, now: float) -> bool:
        """Answer a bad frame; close with 4008 past the limit.  Returns True if closing."""
        self.reply_error(exc.to_message())
        if self._strikes.strike(now):
            assert self.conn is not None
            self.conn.close(CloseCode.POLICY, "too many malformed frames")
            return True
        return False

    async def _dispatch(self, msg: ClientMessage) -> None:
        conn = self.conn
        assert conn is not None
        if isinstance(msg, Ping):
            if msg.rtt_ms is not None:
                self.rtt_ms = msg.rtt_ms
            self.reply({"type": "pong", "t": msg.t, "server_time_ms": self.services.clock.now_ms()}, msg.req_id)
            return
        if isinstance(msg, Hello):
            self.reply_error(error_message(ErrorCode.ALREADY_JOINED, "this connection has joined a room already", req_id=msg.req_id))
            return
        handler = self.gateway.commands.get(type(msg))
        req_id = getattr(msg, "req_id", None)
        if handler is None:
            self.reply_error(error_message(ErrorCode.UNSUPPORTED, "this server does not handle that message yet", req_id=req_id))
            return
        try:
            await handler(self, msg)
        except ApiError as exc:
            self.reply_error(error_message(exc.code, exc.message, req_id=req_id, field=exc.field))
        except REDIS_DOWN as exc:
            log.warning("command %s failed, Redis unavailable: %s", type(msg).__name__, exc)
            self.services.metrics.redis_errors.labels(where="ws").inc()
            self.reply_error(error_message(ErrorCode.UNAVAILABLE, "service unavailable, retry", req_id=req_id))
        except Exception:
            log.exception("command %s failed", type(msg).__name__)
            self.reply_error(error_message(ErrorCode.INTERNAL, "internal error", req_id=req_id))

    # -- replies -----------------------------------------------------------------

    def reply(self, msg: dict[str, Any], req_id: str | None = None) -> None:
        """Queue a reply (control: never dropped) to this connection."""
        if req_id is not None:
            msg["req_id"] = req_id
        assert self.conn is not None
        self.conn.send(msg)

    def reply_error(self, msg: dict[str, Any]) -> None:
        self.services.metrics.ws_errors.labels(code=msg["code"]).inc()
        assert self.conn is not None
        self.conn.send(msg)

    # -- teardown ----------------------------------------------------------------

    async def _teardown(self) -> None:
        services = self.services
        conn = self.conn
        if conn is None:
            return
        empty, _ = services.hub.remove(conn)
        try:
            if await services.presence.sync(conn.room, conn.user) is not None:
                services.room_metrics.left(conn.room)
        except REDIS_DOWN as exc:  # retried by the presence heartbeat
            log.warning("presence leave failed for %s in %s: %s", conn.user, conn.room, exc)
        if empty:
            services.broker.release(conn.room)
            services.presence.forget(conn.room)
        if not self.ws.closed and not conn.closing:
            conn.close(CloseCode.NORMAL, "")
        conn.detach()
        await conn.wait_closed(services.settings.close_grace_s)
