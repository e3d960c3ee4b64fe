"""Joining a room: from a valid ``hello`` to what the ``welcome`` says.

:func:`join` makes every check and read of a join (docs/protocol.md, section 2)
and returns a :class:`JoinResult`, or raises a :class:`Rejection` that names
the close code, the ``error`` code and the message; the gateway maps it in one
place.  :func:`welcome_message` builds the ``welcome`` (pure).

The order of a join matters:

1. the token (4001), then one of the user's connection slots on this process,
   taken before any await so that concurrent hellos cannot pass the limit
   together (4029);
2. the room and the user's ban in one read (4004, 4003; Redis down: 1013);
3. the connection is registered in the hub *before* the node subscribes, so that
   from here on every room message queues up behind the ``welcome``;
4. subscribe, count the viewer in presence, read the join state (room, ban, the
   danmaku seq and history, likes, open drops) in one MULTI, the drops, the pinned
   product; then the room and the ban are checked again, since they may have
   changed while the node subscribed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .auth import Principal, TokenError, verify_token
from .danmaku.service import JoinState
from .hub import Connection
from .redisio.client import REDIS_DOWN
from .rooms.service import Room
from .services import Services
from .wire import CloseCode, ErrorCode, Hello, error_message

__all__ = ["JoinResult", "Rejection", "join", "welcome_message"]

log = logging.getLogger(__name__)


#: ``attach(principal, room, is_host)`` makes the session's hub connection and registers it.
Attach = Callable[[Principal, str, bool], Connection]


class Rejection(Exception):
    """A join (or a first message) refused: the client gets an ``error`` frame (when
    ``error_code`` is set) and then a close with ``close_code``."""

    def __init__(
        self, close_code: CloseCode, error_code: str | None, message: str, *, req_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.error_code = error_code
        self.message = message
        self.req_id = req_id  # the request's id when the rejected frame is no hello (else the hello's)

    def frame(self) -> dict[str, Any] | None:
        """The ``error`` frame sent before the close, if any."""
        if self.error_code is None:
            return None
        return error_message(self.error_code, self.message, req_id=self.req_id)

    @classmethod
    def unavailable(cls) -> Rejection:
        return cls(CloseCode.TRY_AGAIN_LATER, ErrorCode.UNAVAILABLE, "service unavailable, retry")

    @classmethod
    def not_found(cls, room: str) -> Rejection:
        return cls(CloseCode.ROOM_NOT_FOUND, ErrorCode.NOT_FOUND, f"room {room} not found")

    @classmethod
    def banned(cls) -> Rejection:
        return cls(CloseCode.FORBIDDEN, ErrorCode.FORBIDDEN, "you are banned from this room")


@dataclass(frozen=True, slots=True)
class JoinResult:
    """Everything a welcome says, read during the join."""

    principal: Principal
    conn: Connection
    state: JoinState
    room: Room  # == state.room, checked
    online: int
    drops: list[dict[str, Any]]  # flash sales, coupons and red packets, as their pushes say them
    pinned: dict[str, Any] | None


async def join(services: Services, hello: Hello, attach: Attach) -> JoinResult:
    """Admit the holder of ``hello`` to its room (see the module's docstring for the order)."""
    s = services
    try:
        principal = verify_token(hello.token, s.settings.secret)
    except TokenError as exc:
        raise Rejection(CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, exc.message) from None
    if not s.hub.reserve_user(principal.user, s.settings.max_connections_per_user):
        raise Rejection(CloseCode.TOO_MANY_CONNECTIONS, ErrorCode.TOO_MANY_CONNECTIONS,
                        "too many connections for this user")
    attached = False
    try:
        try:
            room, ban_ms = await s.rooms.find_for(hello.room, principal.user)
        except REDIS_DOWN as exc:
            log.warning("hello failed, Redis unavailable: %s", exc)
            raise Rejection.unavailable() from exc
        if room is None:
            raise Rejection.not_found(hello.room)
        is_host = principal.may_run(room.host)
        if _banned(s, ban_ms, is_host):
            raise Rejection.banned()
        conn = attach(principal, room.room_id, is_host)  # the connection holds the slot from here on
        attached = True
    finally:
        if not attached:
            s.hub.release_user(principal.user)
    try:
        await s.broker.subscribe(room.room_id)
        online = await s.presence.sync(room.room_id, principal.user)
        if online is not None:  # the user entered the room (their first connection on this node)
            s.room_metrics.entered(room.room_id, principal.user)
        state = await s.danmaku.join_state(room.room_id, principal.user, hello.last_seq)
        drops = [*await s.seckill.room_drops(room.room_id, state.drop_ids),
                 *await s.packets.room_packets(room.room_id, state.packet_ids)]
        if online is None:
            online = await s.presence.online(room.room_id)
        pinned = await s.rooms.product(room.room_id, state.room.pinned) if state.room and state.room.pinned else None
    except REDIS_DOWN as exc:
        log.warning("join failed, Redis unavailable: %s", exc)
        raise Rejection.unavailable() from exc
    if state.room is None:  # the room's keys expired while we joined
        raise Rejection.not_found(hello.room)
    if _banned(s, state.ban_ms, is_host):  # banned while we subscribed
        raise Rejection.banned()
    return JoinResult(principal, conn, state, state.room, online, drops, pinned.public() if pinned else None)


def _banned(s: Services, ban_ms: int | None, is_host: bool) -> bool:
    return ban_ms is not None and ban_ms > s.clock.now_ms() and not is_host


def welcome_message(result: JoinResult, server_time_ms: int, req_id: str | None) -> dict[str, Any]:
    """The ``welcome`` (docs/protocol.md, section 2), from what the join read (pure)."""
    room, state, principal = result.room, result.state, result.principal
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
            "online": result.online,
            "likes": state.likes,
        },
        "server_time_ms": server_time_ms,
        "seq": state.seq,
        "drops": result.drops,
    }
    if state.recovered is not None:
        welcome["recovered"] = state.recovered
    if result.pinned is not None:
        welcome["pinned"] = result.pinned
    if state.program is not None:
        welcome["program"] = state.program
    if req_id is not None:
        welcome["req_id"] = req_id
    return welcome
