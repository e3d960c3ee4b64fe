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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from .auth import Principal, TokenError, verify_token
from .danmaku.service import JoinState
from .errors import ApiError, BadRequest, Unavailable
from .hub import Connection
from .keys import NODE
from .limits import StrikeCounter, TokenBucket
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

if TYPE_CHECKING:
    from .node import Node

__all__ = ["Command", "Session", "websocket_handler"]

log = logging.getLogger(__name__)

#: A command handler: ``await handler(session, message)``; it replies through ``session.reply``.
Command = Callable[["Session", Any], Awaitable[None]]

_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)


class LiveWebSocket(web.WebSocketResponse):
    """aiohttp closes a frame over ``max_msg_size`` with 1009; the contract says 4008."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            code, message = CloseCode.POLICY, b"frame too large"
        return await super().close(code=code, message=message, drain=drain)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    s = node.settings
    if node.draining:
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
    session = Session(node, ws, protocol, ip=request.remote or "unknown")
    node.sessions.add(session)
    try:
        await session.run()
    except Exception:  # a bug in the teardown itself: never an HTTP 500 written into an upgraded socket
        log.exception("WebSocket session of %s failed", session.principal.user if session.principal else request.remote)
        with contextlib.suppress(Exception):
            if not ws.closed:
                await asyncio.wait_for(ws.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error"), s.close_grace_s)
    finally:
        node.sessions.discard(session)
        session.done.set()
        node.metrics.ws_closes.labels(code=str(ws.close_code)).inc()
    return ws


class Session:
    """One WebSocket from upgrade to close."""

    def __init__(self, node: Node, ws: LiveWebSocket, protocol: Protocol, *, ip: str = "unknown") -> None:
        self.node = node
        self.ws = ws
        self.protocol = protocol
        self.ip = ip
        self.rtt_ms: int | None = None  # as the client measured it (ping.rtt_ms)
        self.conn: Connection | None = None
        self.principal: Principal | None = None
        self.done = asyncio.Event()
        s = node.settings
        self._bucket = TokenBucket(s.client_msg_rate, s.client_msg_burst, time.monotonic())
        self._strikes = StrikeCounter(s.bad_frame_limit, s.bad_frame_window_s)
        self._slot: str | None = None  # the user whose connection slot this session holds
        self._busy = False  # a command is being handled
        self._drain_after = False  # close with 1012 once the command in hand is answered

    # -- the session -------------------------------------------------------------

    async def run(self) -> None:
        try:
            if len(self.node.sessions) > self.node.settings.max_connections:
                await self._reject(CloseCode.TOO_MANY_CONNECTIONS, "server is full", ErrorCode.TOO_MANY_CONNECTIONS)
                return
            if await self._handshake():
                await self._read_loop()
        except Exception:  # a bug: logged, and the client hears it (error frame, 1011), never a silent 1000
            log.exception("WebSocket session of %s failed", self.principal.user if self.principal else self.ip)
            self.node.metrics.ws_errors.labels(code=ErrorCode.INTERNAL).inc()
            if self.conn is None:
                await self._reject(CloseCode.INTERNAL_ERROR, "internal error", ErrorCode.INTERNAL)
            elif not self.conn.closing:
                self.conn.send(error_message(ErrorCode.INTERNAL, "internal error"))
                self.conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await self._teardown()

    def drain(self) -> None:
        """SIGTERM: close with 1012, after the command in hand (if any) has been answered."""
        conn = self.conn
        if conn is None:  # still in the handshake: no hub connection to flush
            task = asyncio.get_running_loop().create_task(self._reject(CloseCode.SERVICE_RESTART, "server restart"))
            self.node.background(task)
        elif self._busy:
            self._drain_after = True
        else:
            conn.close(CloseCode.SERVICE_RESTART, "server restart")

    async def _reject(self, code: int, reason: str, error_code: str | None = None, req_id: str | None = None) -> None:
        """Before ``welcome``: send an error frame (if any) and close with ``code``."""
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            if error_code is not None:
                frame = encode(error_message(error_code, reason, req_id=req_id), self.protocol)
                await (self.ws.send_bytes(frame) if isinstance(frame, bytes) else self.ws.send_str(frame))
            await asyncio.wait_for(
                self.ws.close(code=code, message=close_reason(reason)), self.node.settings.close_grace_s
            )
        self.node.metrics.ws_errors.labels(code=error_code or str(code)).inc()

    async def _handshake(self) -> bool:
        node, s = self.node, self.node.settings
        try:
            msg = await self.ws.receive(timeout=s.hello_timeout_s)
        except asyncio.TimeoutError:
            await self._reject(CloseCode.UNAUTHORIZED, f"no hello within {s.hello_timeout_s:g} s", ErrorCode.UNAUTHORIZED)
            return False
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY) or node.draining:
            return False
        try:
            hello = parse_client_message(decode(msg.data, self.protocol))
        except WireError as exc:
            await self._reject(CloseCode.UNAUTHORIZED, f"the first message must be a valid hello: {exc.message}",
                               exc.code, exc.req_id)
            return False
        if not isinstance(hello, Hello):
            await self._reject(CloseCode.UNAUTHORIZED, "the first message must be hello", ErrorCode.UNAUTHORIZED,
                               getattr(hello, "req_id", None))
            return False
        try:
            principal = verify_token(hello.token, s.secret)
        except TokenError as exc:
            await self._reject(CloseCode.UNAUTHORIZED, exc.message, ErrorCode.UNAUTHORIZED, hello.req_id)
            return False
        self.principal = principal
        if not node.hub.reserve_user(principal.user, s.max_connections_per_user):
            await self._reject(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this user",
                               ErrorCode.TOO_MANY_CONNECTIONS, hello.req_id)
            return False
        self._slot = principal.user
        try:
            room, ban_ms = await node.rooms.find_for(hello.room, principal.user)
        except _REDIS_DOWN as exc:
            log.warning("hello failed, Redis unavailable: %s", exc)
            await self._reject(CloseCode.TRY_AGAIN_LATER, "service unavailable, retry", ErrorCode.UNAVAILABLE, hello.req_id)
            return False
        if room is None:
            await self._reject(CloseCode.ROOM_NOT_FOUND, f"room {hello.room} not found", ErrorCode.NOT_FOUND, hello.req_id)
            return False
        is_host = principal.may_run(room.host)
        if self._banned(ban_ms, is_host):
            await self._reject(CloseCode.FORBIDDEN, "you are banned from this room", ErrorCode.FORBIDDEN, hello.req_id)
            return False

        conn = Connection(ws=self.ws, principal=principal, room=room.room_id, protocol=self.protocol,
                          limits=node.hub.limits, stats=node.hub.stats, is_host=is_host)
        node.hub.add(conn)
        self.conn, self._slot = conn, None  # the connection holds the slot now; from here on,
        # room messages queue up behind the welcome
        try:
            await node.broker.subscribe(room.room_id)
            online = await node.presence.sync(room.room_id, principal.user)
            if online is not None:  # the user entered the room (their first connection on this node)
                node.room_metrics.entered(room.room_id, principal.user)
            state = await node.danmaku.join_state(room.room_id, principal.user, hello.last_seq)
            drops = [*await node.seckill.room_drops(room.room_id, state.drop_ids),
                     *await node.packets.room_packets(room.room_id, state.packet_ids)]
            if online is None:
                online = await node.presence.online(room.room_id)
            pinned = await node.rooms.product(room.room_id, state.room.pinned) if state.room and state.room.pinned else None
        except _REDIS_DOWN as exc:
            log.warning("join failed, Redis unavailable: %s", exc)
            conn.send_first(error_message(ErrorCode.UNAVAILABLE, "service unavailable, retry", req_id=hello.req_id))
            conn.close(CloseCode.TRY_AGAIN_LATER, "service unavailable, retry")
            return False
        if state.room is None:  # the room's keys expired while we joined
            conn.send_first(error_message(ErrorCode.NOT_FOUND, f"room {hello.room} not found", req_id=hello.req_id))
            conn.close(CloseCode.ROOM_NOT_FOUND, f"room {hello.room} not found")
            return False
        if self._banned(state.ban_ms, is_host):  # banned while we subscribed
            conn.send_first(error_message(ErrorCode.FORBIDDEN, "you are banned from this room", req_id=hello.req_id))
            conn.close(CloseCode.FORBIDDEN, "you are banned from this room")
            return False
        welcome = self._welcome(state, online, hello, pinned.public() if pinned else None)
        welcome["drops"] = drops
        # No await from here to send_first: the danmaku seam (fanout.activate) relies on it.
        node.fanout.note_seq(room.room_id, state.seq)
        node.likes.seen(room.room_id, state.likes)
        conn.send_first(welcome, *node.fanout.activate(conn, state.seq, state.items))
        return True

    def _banned(self, ban_ms: int | None, is_host: bool) -> bool:
        return ban_ms is not None and ban_ms > self.node.clock.now_ms() and not is_host

    def _welcome(self, state: JoinState, online: int, hello: Hello, pinned: dict[str, Any] | None) -> dict[str, Any]:
        room, principal = state.room, self.principal
        assert room is not None and principal is not None
        welcome: dict[str, Any] = {
            "type": "welcome",
            "user": principal.user,
            "role": str(principal.role),
            "name": principal.name,
            "room": {
                "room_id": room.room_id,
                "title": room.title,
                "host": room.host,
                "status": room.status,
                "online": online,
                "likes": state.likes,
            },
            "server_time_ms": self.node.clock.now_ms(),
            "seq": state.seq,
            "drops": [],
        }
        if state.recovered is not None:
            welcome["recovered"] = state.recovered
        if pinned is not None:
            welcome["pinned"] = pinned
        if hello.req_id is not None:
            welcome["req_id"] = hello.req_id
        return welcome

    async def _read_loop(self) -> None:
        conn = self.conn
        assert conn is not None
        s = self.node.settings
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
            self.reply({"type": "pong", "t": msg.t, "server_time_ms": self.node.clock.now_ms()}, msg.req_id)
            return
        if isinstance(msg, Hello):
            self.reply_error(error_message(ErrorCode.ALREADY_JOINED, "this connection has joined a room already", req_id=msg.req_id))
            return
        handler = self.node.commands.get(type(msg))
        req_id = getattr(msg, "req_id", None)
        if handler is None:
            self.reply_error(error_message(ErrorCode.UNSUPPORTED, "this server does not handle that message yet", req_id=req_id))
            return
        try:
            await handler(self, msg)
        except ApiError as exc:
            self.reply_error(error_message(exc.code, exc.message, req_id=req_id, field=exc.field))
        except _REDIS_DOWN as exc:
            log.warning("command %s failed, Redis unavailable: %s", type(msg).__name__, exc)
            self.node.metrics.redis_errors.labels(where="ws").inc()
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
        self.node.metrics.ws_errors.labels(code=msg["code"]).inc()
        assert self.conn is not None
        self.conn.send(msg)

    # -- teardown ----------------------------------------------------------------

    async def _teardown(self) -> None:
        node = self.node
        if self._slot is not None:
            node.hub.release_user(self._slot)
            self._slot = None
        conn = self.conn
        if conn is None:
            return
        empty, _ = node.hub.remove(conn)
        try:
            if await node.presence.sync(conn.room, conn.user) is not None:
                node.room_metrics.left(conn.room)
        except _REDIS_DOWN as exc:  # retried by the presence heartbeat
            log.warning("presence leave failed for %s in %s: %s", conn.user, conn.room, exc)
        if empty:
            node.broker.release(conn.room)
            node.presence.forget(conn.room)
        if not self.ws.closed and not conn.closing:
            conn.close(CloseCode.NORMAL, "")
        conn.detach()
        await conn.wait_closed(node.settings.close_grace_s)
