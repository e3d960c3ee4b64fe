"""Local fan-out: the rooms of this process and their connections.

The hub takes a room's message once, encodes it at most once per protocol
(JSON text, msgpack binary) and appends the same frame object to every
connection's bounded queue without awaiting any socket.  One writer task per
connection drains its queue.  (python-websockets' broadcast model: encode
once, no backpressure in the loop, a queue per client, disconnect the laggard.)

What a connection does with a frame it cannot write at once (drop it, queue it,
or close as a slow consumer with 4008) is the send queue's policy
(sendqueue.py); a :class:`Connection` is the I/O shell around it: it writes
to the transport when nothing waits, and its writer task drains the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .auth import Principal
from .sendqueue import Closing, Push, SendQueue
from .wire import DROPPABLE_TYPES, CloseCode, Protocol, close_reason, encode_frame, frame

__all__ = ["Connection", "Hub", "HubStats", "QueueLimits"]

log = logging.getLogger(__name__)

Frame = bytes  # a complete WebSocket frame (wire.frame): header and payload


@dataclass(frozen=True, slots=True)
class QueueLimits:
    send_queue_frames: int
    droppable_queue_frames: int
    slow_consumer_timeout_s: float
    close_grace_s: float


@dataclass(slots=True)
class HubStats:
    """Counters read by the Prometheus collector."""

    frames_sent: int = 0
    frames_dropped: int = 0
    slow_closed: int = 0
    messages_delivered: int = 0
    delivery_errors: int = 0  # a connection that failed an enqueue (a bug): logged, aborted, the others served


class Connection:
    """One WebSocket as the hub sees it: who, which room, a bounded queue, a writer."""

    __slots__ = (
        "__weakref__",
        "_limits",
        "_protocol",
        "_queue",
        "_stats",
        "_transport",
        "_wakeup",
        "_writer",
        "closed",
        "closing",
        "dm",
        "is_host",
        "principal",
        "protocol",
        "room",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        principal: Principal,
        room: str,
        protocol: Protocol,
        limits: QueueLimits,
        stats: HubStats,
        *,
        is_host: bool = False,
    ) -> None:
        self.ws = ws
        req = ws._req  # noqa: SLF001 - the request behind a prepared WebSocketResponse
        assert req is not None and req.transport is not None
        self._transport = req.transport
        self._protocol = req.protocol
        self.principal = principal
        self.room = room
        self.protocol = protocol
        self.is_host = is_host
        self._limits = limits
        self._stats = stats
        self._queue = SendQueue(limits.send_queue_frames, limits.droppable_queue_frames,
                                limits.slow_consumer_timeout_s)
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.closing = False
        self.closed = asyncio.Event()
        #: the danmaku fan-out's cursor for this connection (danmaku/fanout.py ``Cursor``), its own to set
        self.dm: Any = None

    @property
    def user(self) -> str:
        return self.principal.user

    @property
    def queued(self) -> int:
        return len(self._queue.entries)

    @property
    def dropped(self) -> int:
        """Droppable frames this connection did not get."""
        return self._queue.dropped

    # -- enqueue (never awaits) ------------------------------------------------

    def enqueue(self, frame: Frame, droppable: bool = False) -> bool:
        """Send or queue one complete frame.  Returns False if it was dropped or the connection closes.

        When nothing is queued and the socket is not backpressured, the frame
        goes straight to the transport (no task switch); otherwise the send
        queue's policy decides (sendqueue.py) and the writer task drains it.
        """
        if self.closing:
            return False
        queue = self._queue
        if not queue.entries and self._writer is not None and not self._protocol.writing_paused:
            transport = self._transport
            if transport.is_closing():  # the peer went away and the reader has not noticed yet
                self.abort()
                return False
            try:
                transport.write(frame)
            except (ConnectionError, RuntimeError):  # uvloop raises on a transport that closed under us
                self.abort()
                return False
            self._stats.frames_sent += 1
            if queue.full_since is not None:
                queue.wrote()
            return True
        pushed = queue.push(frame, droppable, time.monotonic() if droppable else 0.0)
        if pushed is Push.WAKE:
            self._wakeup.set()
            return True
        if pushed is Push.QUEUED:
            return True
        if droppable:
            self._stats.frames_dropped += 1
        if pushed is Push.CLOSE:
            self.close_slow()
        return False

    def _stop_writer(self) -> None:
        """Nothing more can be written: stop the writer (unless it is the caller) and count the
        connection closed, so that the teardown does not wait for a flush that cannot come."""
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task() and not writer.done():
            writer.cancel()
        self.closed.set()

    def send(self, msg: dict[str, Any]) -> bool:
        """Encode ``msg`` for this connection alone and send it as control."""
        return self.enqueue(encode_frame(msg, self.protocol), droppable=False)

    def send_first(self, msg: dict[str, Any], *frames: Frame) -> None:
        """Put ``msg`` (the ``welcome``) and then ``frames`` ahead of everything queued
        while the connection joined, then start writing."""
        self._queue.push_first([encode_frame(msg, self.protocol), *frames])
        self._wakeup.set()
        self.start()

    # -- writer ----------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"writer:{self.room}:{self.user}"
            )

    async def _drain(self) -> None:
        """Wait until the transport's buffer fell below its low-water mark."""
        helper = getattr(self._protocol, "_drain_helper", None)  # aiohttp's own wait for resume_writing
        if helper is not None:
            await helper()
        else:  # pragma: no cover - a future aiohttp without it
            while self._protocol.writing_paused:
                await asyncio.sleep(0.01)

    async def _write_loop(self) -> None:
        queue, wakeup, stats, transport, protocol = self._queue, self._wakeup, self._stats, self._transport, self._protocol
        entries = queue.entries
        try:
            while True:
                if not entries:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                if transport.is_closing():
                    raise ConnectionResetError("transport closed")
                if protocol.writing_paused:
                    await self._drain()
                    continue
                entry = entries.popleft()
                if type(entry) is bytes:
                    transport.write(entry)
                    stats.frames_sent += 1
                elif isinstance(entry, Closing):
                    await self._close_ws(entry.code, entry.reason)
                    break
        except (ConnectionError, RuntimeError):
            # the peer went away (or the socket closed under us): the reader side ends the session
            self.closing = True
            queue.clear()
        self.closed.set()

    async def _close_ws(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=close_reason(reason)), self._limits.close_grace_s
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once (also when it closed under us): every later write is a
        no-op, and the reader side ends the session."""
        self.closing = True
        with contextlib.suppress(Exception):
            self._transport.abort()
        self._queue.clear()
        self._stop_writer()

    # -- closing ---------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Flush what is queued, then close with ``code``.  Never awaits."""
        if self.closing:
            return
        self.closing = True
        self._queue.close(code, reason)
        self._wakeup.set()
        self.start()

    def close_slow(self) -> None:
        """Close as a slow consumer (4008): drop the queue, cancel the writer, close."""
        if self.closing:
            return
        self.closing = True
        self._stats.slow_closed += 1
        log.info("closing slow consumer %s in room %s (%d frames dropped)", self.user, self.room, self.dropped)
        self._queue.clear()
        if self._writer is not None:
            self._writer.cancel()
        self._writer = asyncio.get_running_loop().create_task(self._close_slow())

    async def _close_slow(self) -> None:
        try:
            await self._close_ws(CloseCode.POLICY, "slow consumer")
        finally:
            self.closed.set()

    def detach(self) -> None:
        """The session ended without a close of ours (the peer closed): stop the writer."""
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        if self._writer is not None:
            self._writer.cancel()
        self.closed.set()

    async def wait_closed(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        if not self.closed.is_set():
            self.abort()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()


class _Room:
    __slots__ = ("conns", "json_conns", "msgpack_conns", "users")

    def __init__(self) -> None:
        self.conns: set[Connection] = set()
        self.users: dict[str, int] = {}
        self.json_conns = 0
        self.msgpack_conns = 0


class Hub:
    """The rooms of this process."""

    def __init__(self, limits: QueueLimits) -> None:
        self.limits = limits
        self.stats = HubStats()
        self._rooms: dict[str, _Room] = {}
        self._user_conns: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(r.conns) for r in self._rooms.values())

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def connections(self, room: str | None = None) -> Iterator[Connection]:
        rooms = self._rooms.values() if room is None else filter(None, [self._rooms.get(room)])
        for r in list(rooms):
            yield from list(r.conns)

    def user_connections(self, user: str) -> int:
        """How many connections ``user`` holds (or is opening) on this process."""
        return self._user_conns.get(user, 0)

    def reserve_user(self, user: str, limit: int) -> bool:
        """Take one of ``user``'s ``limit`` connection slots (before the join's awaits, so
        that concurrent hellos cannot pass the limit together).  :meth:`remove` or
        :meth:`release_user` gives it back."""
        n = self._user_conns.get(user, 0)
        if n >= limit:
            return False
        self._user_conns[user] = n + 1
        return True

    def release_user(self, user: str) -> None:
        left = self._user_conns.get(user, 1) - 1
        if left <= 0:
            self._user_conns.pop(user, None)
        else:
            self._user_conns[user] = left

    def has_user(self, room: str, user: str) -> bool:
        r = self._rooms.get(room)
        return r is not None and user in r.users

    def has_room(self, room: str) -> bool:
        return room in self._rooms

    def room_connections(self, room: str) -> list[Connection]:
        r = self._rooms.get(room)
        return list(r.conns) if r else []

    def users(self, room: str) -> list[str]:
        r = self._rooms.get(room)
        return list(r.users) if r else []

    def add(self, conn: Connection) -> tuple[bool, bool]:
        """Register ``conn`` (whose user slot is reserved).  Returns (first connection in
        the room, first of the user in the room).

        Only the audience counts as the room's users (presence, ``online``, UV, PV and watch
        time): a connection that may run the room (its host, an admin) is a connection
        of the room but not one of its users."""
        r = self._rooms.get(conn.room)
        first_room = r is None
        if r is None:
            r = self._rooms[conn.room] = _Room()
        r.conns.add(conn)
        if conn.protocol is Protocol.MSGPACK:
            r.msgpack_conns += 1
        else:
            r.json_conns += 1
        if conn.is_host:
            return first_room, False
        n = r.users.get(conn.user, 0)
        r.users[conn.user] = n + 1
        return first_room, n == 0

    def remove(self, conn: Connection) -> tuple[bool, bool]:
        """Unregister ``conn``.  Returns (room now empty here, user's last connection in the room)."""
        r = self._rooms.get(conn.room)
        if r is None or conn not in r.conns:
            return False, False
        r.conns.discard(conn)
        if conn.protocol is Protocol.MSGPACK:
            r.msgpack_conns -= 1
        else:
            r.json_conns -= 1
        n = 1
        if not conn.is_host:
            n = r.users.get(conn.user, 1) - 1
            if n <= 0:
                r.users.pop(conn.user, None)
            else:
                r.users[conn.user] = n
        self.release_user(conn.user)
        empty = not r.conns
        if empty:
            del self._rooms[conn.room]
        return empty, n <= 0

    def deliver(
        self,
        room: str,
        msg: dict[str, Any],
        msgpack_payload: bytes | None = None,
        *,
        hosts_only: bool = False,
    ) -> int:
        """Fan ``msg`` out to the room's local connections.  Returns how many got it queued.

        ``msgpack_payload`` is ``msg`` already encoded as msgpack (the broker's
        payload), reused for the binary frame so that it is not encoded again.
        """
        kind = msg.get("type", "")
        r = self._rooms.get(room)
        if r is None:
            return 0
        json_frame = encode_frame(msg, Protocol.JSON) if r.json_conns else None
        msgpack_frame = None
        if r.msgpack_conns:
            msgpack_frame = frame(msgpack_payload, text=False) if msgpack_payload else encode_frame(msg, Protocol.MSGPACK)
        droppable = kind in DROPPABLE_TYPES
        count = 0
        for conn in list(r.conns):  # a copy: a failing connection must not cut the others short
            if hosts_only and not conn.is_host:
                continue
            data = msgpack_frame if conn.protocol is Protocol.MSGPACK else json_frame
            try:
                if conn.enqueue(data, droppable):  # type: ignore[arg-type]
                    count += 1
            except Exception:  # a bug for one viewer: log it, close that viewer, go on with the others
                self.stats.delivery_errors += 1
                log.exception("delivering %s to %s in room %s failed", kind, conn.user, room)
                conn.abort()
        self.stats.messages_delivered += 1
        return count
