"""Coalesced danmaku delivery on one node.

Danmaku arrive from the broker one by one, in seq order (the send script
publishes them).  Each room collects them and, once per tick, the node sends
one ``danmaku`` frame per room, encoded once per protocol, to every viewer.

Per viewer, a :class:`Cursor` (kept in ``Connection.dm``) holds the last seq it
was given (or skipped).  It makes delivery exactly-once at the seams:

- while a viewer is joining (its cursor has a ``backlog``), the items of each
  tick are kept there; at ``welcome`` the viewer gets the missed history after
  its ``last_seq``, then the backlog after the welcome's ``seq``, in order;
- a tick's items at or below a viewer's ``seq`` are never sent to it again.

Load policy, per tick:

- a frame carries at most ``danmaku_items_per_tick`` items; a burst beyond it
  waits for the next ticks (in order).  Only when more wait than
  ``MAX_DELAY_TICKS`` ticks' worth, and more than the room's accepted burst
  (so never for what the room's flood cap lets in), is the room thinned for
  everyone: host messages first, then the newest, sent in seq order;
- a viewer whose queue holds more than ``danmaku_lag_frames`` frames gets a
  frame thinned to ``danmaku_lag_items_per_tick`` items;
- a viewer whose queue is full loses the frame (hub.py, and may be closed 4008).

Every item not delivered this way is counted in ``thinned`` (per room, flushed to
Redis for the room's metrics, and in total for ``/metrics``).

Each item carries ``prev``, the room's id before it.  A gap (``prev`` above
the last id this node saw: a lost pub/sub connection) is filled from the
history stream before the room's next frame goes out.  A ``prev`` below it
means Redis lost ids this node had seen (a crash or failover lost its last
writes): ids never repeat, so the room goes on, and the loss is logged and
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..hub import Connection, Hub
from ..redisio.client import REDIS_DOWN
from ..wire import Protocol, encode_frame

__all__ = ["Cursor", "DanmakuFanout", "thin"]

log = logging.getLogger(__name__)

Item = dict[str, Any]
FetchRange = Callable[[str, int, int], Awaitable[list[Item]]]

MAX_BACKLOG = 5000
REPLAY_CHUNK = 100
MAX_DELAY_TICKS = 10


class Cursor:
    """Where one viewer is in its room's danmaku."""

    __slots__ = ("backlog", "seq")

    def __init__(self) -> None:
        self.seq = 0  # the last danmaku seq this viewer was given or skipped
        #: while the viewer joins, the ticks' items it will get after its welcome; None once welcomed
        self.backlog: list[Item] | None = []


def _cursor(conn: Connection) -> Cursor:
    cursor = conn.dm
    if cursor is None:
        cursor = conn.dm = Cursor()
    return cursor  # type: ignore[no-any-return]


def thin(items: list[Item], keep: int) -> list[Item]:
    """At most ``keep`` items: priority (host) items first, then the newest; in seq order (pure)."""
    if len(items) <= keep:
        return items
    ranked = sorted(items, key=lambda i: (i.get("prio", 0), i["id"]), reverse=True)[:keep]
    return sorted(ranked, key=lambda i: i["id"])


class _Feed:
    __slots__ = ("filling", "last_seq", "pending", "thinned")

    def __init__(self) -> None:
        self.pending: list[Item] = []
        self.last_seq: int | None = None
        self.filling = False
        self.thinned = 0  # items not delivered since the last flush to Redis


class _Frames:
    """One tick's frames for a room, each encoded at most once per protocol."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[int, Protocol], bytes] = {}

    def get(self, key: int, items: list[Item], protocol: Protocol) -> bytes:
        frame = self._cache.get((key, protocol))
        if frame is None:
            frame = encode_frame({"type": "danmaku", "seq": items[-1]["id"], "items": items}, protocol)
            self._cache[(key, protocol)] = frame
        return frame


class DanmakuFanout:
    def __init__(
        self,
        hub: Hub,
        fetch_range: FetchRange,
        *,
        tick_s: float,
        items_per_tick: int,
        lag_items_per_tick: int,
        lag_frames: int,
        max_waiting: int = 0,
    ) -> None:
        self._hub = hub
        self._fetch_range = fetch_range
        self._tick_s = tick_s
        self._cap = items_per_tick
        self._lag_cap = lag_items_per_tick
        self._lag_frames = lag_frames
        #: items that may wait for later ticks before a flood is thinned (at least one burst's worth)
        self._max_waiting = max(items_per_tick * MAX_DELAY_TICKS, max_waiting)
        self._feeds: dict[str, _Feed] = {}
        self._fills: set[asyncio.Task[None]] = set()
        self.items_delivered = 0  # item deliveries (items x viewers), for /metrics and the benchmark
        self.items_thinned = 0
        self.frames_built = 0
        self.errors = 0  # rooms or viewers whose tick failed (a bug): logged, the others served
        self.rollbacks = 0  # times Redis was seen to have lost danmaku ids this node had delivered

    # -- input from the broker -------------------------------------------------------

    def on_item(self, room: str, msg: dict[str, Any]) -> None:
        feed = self._feeds.get(room)
        if feed is None:
            feed = self._feeds[room] = _Feed()
        item: Item = {"id": msg["id"], "user": msg["user"], "name": msg["name"], "text": msg["text"], "ts_ms": msg["ts_ms"]}
        if msg.get("prio"):
            item["prio"] = msg["prio"]
        seq = item["id"]
        last = feed.last_seq
        if last is not None and seq <= last:
            return  # a duplicate (already filled from history)
        feed.pending.append(item)
        if last is not None:
            prev = msg.get("prev", seq - 1)  # the room's id before this one
            if prev > last and not feed.filling:  # this node missed (prev - last) or more: fill from history
                feed.filling = True
                task = asyncio.get_running_loop().create_task(self._fill(room, feed, last, seq))
                self._fills.add(task)
                task.add_done_callback(self._fills.discard)
            elif prev < last:
                # Redis lost ids prev+1..last that this node had seen (its last second went in a
                # crash or a failover).  Ids never repeat (redisio/lua/_ids_lib.lua), so the room
                # goes on from ``seq``: viewers keep what they had, and get everything after.
                self.rollbacks += 1
                log.warning("room %s: Redis lost danmaku %d..%d (a restart or failover lost its last writes); "
                            "going on from %d", room, prev + 1, last, seq)
        feed.last_seq = seq

    def on_delete(self, room: str, msg: dict[str, Any]) -> None:
        """A deleted danmaku still waiting for the tick is not sent; viewers get the notice."""
        feed = self._feeds.get(room)
        if feed is not None and feed.pending:
            feed.pending = [i for i in feed.pending if i["id"] != msg["id"]]
        self._hub.deliver(room, msg)

    async def _fill(self, room: str, feed: _Feed, after: int, before: int) -> None:
        try:
            missing = await asyncio.wait_for(self._fetch_range(room, after, before), 5.0)
        except REDIS_DOWN as exc:
            log.warning("could not fill danmaku gap %d..%d in %s: %s", after, before, room, exc)
            missing = []
        if missing:
            known = {i["id"] for i in feed.pending}
            feed.pending = sorted([*feed.pending, *(i for i in missing if i["id"] not in known)], key=lambda i: i["id"])
        feed.filling = False

    # -- joining viewers -------------------------------------------------------------

    def note_seq(self, room: str, seq: int) -> None:
        """A viewer joined at room seq ``seq``: if this node had no feed yet, start it there."""
        feed = self._feeds.get(room)
        if feed is None:
            feed = self._feeds[room] = _Feed()
        if feed.last_seq is None:
            feed.last_seq = seq

    def activate(self, conn: Connection, seq: int, replay: list[Item]) -> list[bytes]:
        """The frames a joining viewer gets right after ``welcome``: ``replay`` (the history
        it missed), then what arrived while it joined; from then on it gets every tick."""
        cursor = _cursor(conn)
        items = [*replay, *(i for i in cursor.backlog or () if i["id"] > seq)]
        cursor.backlog = None
        cursor.seq = max(seq, items[-1]["id"] if items else 0)
        frames = []
        for start in range(0, len(items), REPLAY_CHUNK):
            chunk = items[start : start + REPLAY_CHUNK]
            frames.append(encode_frame({"type": "danmaku", "seq": chunk[-1]["id"], "items": chunk}, conn.protocol))
        return frames

    # -- the tick ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.flush()  # no await inside: a cancellation always lands in the sleep

    def flush(self) -> None:
        """One tick: every room's frame.  A room that fails (a bug) is logged and loses this
        tick's items; the other rooms, and the next ticks, go on."""
        for room in list(self._feeds):
            feed = self._feeds[room]
            try:
                if feed.pending and not feed.filling:
                    self._flush_room(room, feed)
                elif not feed.pending and not self._hub.has_room(room):
                    del self._feeds[room]
            except Exception:
                self.errors += 1
                log.exception("danmaku tick of room %s failed; %d items not sent", room, len(feed.pending))
                feed.pending = []

    def _flush_room(self, room: str, feed: _Feed) -> None:
        conns = self._hub.room_connections(room)
        if not conns:
            feed.pending = []
            return
        thinned = 0
        waiting = feed.pending
        if len(waiting) > self._max_waiting:  # a sustained flood: thin what waits
            kept = thin(waiting, self._max_waiting)
            thinned += (len(waiting) - len(kept)) * sum(1 for c in conns if c.dm is not None and c.dm.backlog is None)
            waiting = kept
        items, feed.pending = waiting[: self._cap], waiting[self._cap :]
        lagged = thin(items, self._lag_cap)
        frames = _Frames()
        delivered = 0
        for conn in conns:
            try:
                sent, lost = self._deliver_tick(conn, items, lagged, frames)
            except Exception:  # one viewer's failure never cuts the tick short for the others
                self.errors += 1
                log.exception("danmaku tick for %s in room %s failed", conn.user, room)
                conn.abort()
                continue
            delivered += sent
            thinned += lost
        self.items_delivered += delivered
        self.items_thinned += thinned
        feed.thinned += thinned
        self.frames_built += len(frames._cache)  # noqa: SLF001

    def _deliver_tick(self, conn: Connection, items: list[Item], lagged: list[Item], frames: _Frames) -> tuple[int, int]:
        """Hand one viewer its part of a tick: (items delivered, items thinned)."""
        first, last = items[0]["id"], items[-1]["id"]
        cursor = conn.dm
        if cursor is None:
            cursor = _cursor(conn)
        backlog = cursor.backlog
        if backlog is not None:  # still joining
            if len(backlog) < MAX_BACKLOG:
                backlog.extend(items)
                return 0, 0
            return 0, len(items)
        seq = cursor.seq
        if seq >= last:
            return 0, 0
        if seq >= first:  # the seam right after a join: only what it has not had
            mine = [i for i in items if i["id"] > seq]
            frame = encode_frame({"type": "danmaku", "seq": last, "items": mine}, conn.protocol)
            due = want = len(mine)
        elif conn.queued > self._lag_frames:
            frame, due, want = frames.get(1, lagged, conn.protocol), len(items), len(lagged)
        else:
            frame, due = frames.get(0, items, conn.protocol), len(items)
            want = due
        sent = want if conn.enqueue(frame, True) else 0
        cursor.seq = last
        return sent, due - sent

    def take_thinned(self) -> dict[str, int]:
        """Per-room thinned counts since the last call (to add to Redis)."""
        out = {}
        for room, feed in self._feeds.items():
            if feed.thinned:
                out[room] = feed.thinned
                feed.thinned = 0
        return out

    async def close(self) -> None:
        for task in list(self._fills):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
