"""The hub's fan-out against sockets that close under it (uvloop raises on such a write)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from liveserver.auth import Principal, Role
from liveserver.danmaku.fanout import Cursor, DanmakuFanout
from liveserver.hub import Connection, Hub, QueueLimits
from liveserver.wire import Protocol

LIMITS = QueueLimits(send_queue_frames=64, droppable_queue_frames=32, slow_consumer_timeout_s=5, close_grace_s=1)


class Transport:
    """A transport as uvloop's behaves: a write after the peer's reset raises RuntimeError."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.report_closing = True  # uvloop sets is_closing() only once it noticed the reset

    def write(self, data: bytes) -> None:
        if self.closed:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed and self.report_closing

    def abort(self) -> None:
        self.closed = True


def _conn(hub: Hub, user: str, room: str = "r") -> tuple[Connection, Transport]:
    transport = Transport()
    ws: Any = SimpleNamespace(_req=SimpleNamespace(transport=transport, protocol=SimpleNamespace(writing_paused=False)))
    conn = Connection(ws, Principal(user, Role.VIEWER, user, 0), room, Protocol.JSON, LIMITS, hub.stats)
    hub.reserve_user(user, 10)
    hub.add(conn)
    conn.dm = Cursor()
    conn.dm.backlog = None  # welcomed: the danmaku ticks reach it
    conn.start()
    return conn, transport


async def test_a_reset_viewer_neither_raises_nor_cuts_the_push_short() -> None:
    hub = Hub(LIMITS)
    viewers = [_conn(hub, f"v{i}") for i in range(5)]
    await asyncio.sleep(0)
    viewers[2][1].closed = True  # reset by the peer; is_closing() already says so
    viewers[3][1].closed = True
    viewers[3][1].report_closing = False  # ... or not yet: the write itself raises
    assert hub.deliver("r", {"type": "room", "status": "live"}) == 3
    for i, (_, transport) in enumerate(viewers):
        assert len(transport.written) == (0 if i in (2, 3) else 1)
    assert viewers[3][0].closing and viewers[3][0].enqueue(b"x") is False  # from now on a no-op
    for conn, _ in viewers:
        conn.detach()


async def test_the_danmaku_tick_survives_a_viewer_that_fails() -> None:
    hub = Hub(LIMITS)
    good, good_t = _conn(hub, "good")
    _, bad_t = _conn(hub, "bad")
    late, late_t = _conn(hub, "late")
    await asyncio.sleep(0)

    def broken(data: bytes) -> None:
        raise ValueError("a bug in one viewer's path")

    bad_t.write = broken  # type: ignore[method-assign]

    async def no_history(room: str, after: int, before: int) -> list[dict[str, Any]]:
        return []

    fanout = DanmakuFanout(hub, no_history, tick_s=0.01, items_per_tick=100, lag_items_per_tick=10, lag_frames=32)
    for seq in (1, 2, 3):
        fanout.on_item("r", {"id": seq, "prev": seq - 1, "user": "u", "name": "u", "text": f"t{seq}", "ts_ms": 0})
    fanout.flush()
    fanout.on_item("r", {"id": 4, "prev": 3, "user": "u", "name": "u", "text": "t4", "ts_ms": 0})
    fanout.flush()  # the next tick still runs
    assert len(good_t.written) == 2 and len(late_t.written) == 2
    assert fanout.errors == 1  # the bad viewer failed once, was aborted, and left the tick
    for conn in (good, late):
        conn.detach()


async def test_ids_below_what_the_node_saw_mean_redis_rolled_back() -> None:
    hub = Hub(LIMITS)
    conn, transport = _conn(hub, "v")
    await asyncio.sleep(0)

    async def no_history(room: str, after: int, before: int) -> list[dict[str, Any]]:
        return []

    fanout = DanmakuFanout(hub, no_history, tick_s=0.01, items_per_tick=100, lag_items_per_tick=10, lag_frames=32)
    for seq in range(1, 11):
        fanout.on_item("r", {"id": seq, "prev": seq - 1, "user": "u", "name": "u", "text": "x", "ts_ms": 0})
    fanout.flush()
    # Redis lost 8..10 in a crash; its next id jumped to the clock and says it follows 7
    fanout.on_item("r", {"id": 1_733_000_000_000_000, "prev": 7, "user": "u", "name": "u", "text": "after", "ts_ms": 0})
    fanout.flush()
    assert fanout.rollbacks == 1
    assert len(transport.written) == 2 and b"after" in transport.written[1]  # delivered, not taken for a duplicate
    conn.detach()


async def test_an_aborted_connection_is_closed_at_once() -> None:
    hub = Hub(LIMITS)
    conn, transport = _conn(hub, "gone")
    await asyncio.sleep(0)
    conn.abort()
    assert transport.closed and conn.closed.is_set()
    await asyncio.wait_for(conn.wait_closed(5), 0.5)  # the teardown does not wait out the grace
