"""Drop announcements on schedule, and payment deadlines: each fires once across nodes.

- The schedule is a zset of ``start:<drop>`` / ``end:<drop>`` (and
  ``pstart:<packet>`` / ``pexpire:<packet>``) -> time.  Every node polls it
  with ``schedule_claim.lua``, which hands each due entry (due on Redis's
  clock) to one node and pushes it a lease ahead; the node removes it once the
  action reports done (the start announced, the drop ended, the refund made).
  A node that dies mid-action, or an action not yet due, leaves the entry to
  come back after the lease: every action runs at least once, and each is
  idempotent.
- Payment deadlines: each round, the node that takes the sweep lease runs the
  expire script on every active drop.  The script claims each due order, so a
  second sweeper (a lease that lapsed mid-round) changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..clock import Clock
from ..redisio.client import REDIS_DOWN, WHOLE_REDIS_DOWN
from ..redisio.keyspace import FINISHED_TTL_S
from ..redisio.store import Store
from ..tasks import reraise_if_cancelling
from .packets import RedPacketService
from .service import SeckillService

__all__ = ["DropScheduler"]

log = logging.getLogger(__name__)

EXPIRE_BATCH = 500


class DropScheduler:
    def __init__(
        self, store: Store, clock: Clock, seckill: SeckillService,
        packets: RedPacketService, node_id: str, *, schedule_s: float, sweep_s: float,
    ) -> None:
        self._redis, self._scripts, self._keys = store
        self._clock = clock
        self._seckill = seckill
        self._packets = packets
        self._node_id = node_id
        self._schedule_s = schedule_s
        self._sweep_s = sweep_s
        self.fired = 0
        self.expired = 0
        self.failures = 0  # entries and drops that failed alone (logged; the others went on)

    async def fire_due(self) -> int:
        """Run the due announcements; an entry is removed only once its action is done."""
        lease_ms = max(1000, int(self._schedule_s * 20_000))
        due = await self._scripts.schedule_claim(keys=[self._keys.schedule], args=[lease_ms, 100])
        fired = 0
        for entry in due:
            try:
                fired += await self._fire(entry)
            except WHOLE_REDIS_DOWN:
                raise  # Redis itself is gone: the loop retries the whole round
            except Exception:  # one bad entry (a cluster refusal, a bug) never holds up the others;
                reraise_if_cancelling()  # its lease runs out and it is tried again
                self.failures += 1
                log.exception("drop schedule entry %s failed", entry)
        self.fired += fired
        return fired

    async def _fire(self, entry: str) -> int:
        """One due entry; 1 if its action is done (and the entry removed)."""
        action, _, drop_id = entry.partition(":")
        if action in ("pstart", "pexpire"):
            status, refunded = await self._packets.fire(drop_id, "announce" if action == "pstart" else "expire")
            done = status == "gone" or (refunded >= 0 if action == "pexpire" else status != "countdown")
        else:
            status, _ = await self._seckill.announce(drop_id)
            done = status == "gone" or (status == "ended" if action == "end" else status != "countdown")
            if status in ("ended", "gone"):
                room = await self._redis.hget(self._keys.drop(drop_id).meta, "room")
                if room:
                    await self._redis.srem(self._keys.room(room).drops, drop_id)
        if not done:
            return 0
        await self._redis.zrem(self._keys.schedule, entry)
        return 1

    async def sweep(self) -> int:
        lease_ms = int(self._sweep_s * 3000)
        if not await self._redis.set(self._keys.sweep_lease, self._node_id, nx=True, px=lease_ms):
            if await self._redis.get(self._keys.sweep_lease) != self._node_id:
                return 0
            await self._redis.pexpire(self._keys.sweep_lease, lease_ms)
        expired = 0
        for drop_id in await self._redis.smembers(self._keys.active_drops):
            try:
                expired += await self._sweep_drop(drop_id)
            except WHOLE_REDIS_DOWN:
                raise
            except Exception:  # one drop that fails (a cluster refusal, a bug) never stops the others' deadlines
                reraise_if_cancelling()
                self.failures += 1
                log.exception("payment deadlines of drop %s not swept", drop_id)
        self.expired += expired
        return expired

    async def _sweep_drop(self, drop_id: str) -> int:
        """Release one drop's orders past their deadline; the orders released."""
        dk = self._keys.drop(drop_id)
        count, status, pending = await self._scripts.seckill_expire(
            keys=[dk.meta, dk.buyers, dk.orders, dk.deadlines, self._keys.orders_stream], args=[EXPIRE_BATCH]
        )
        if status in ("ended", "gone") and int(pending) == 0:  # settled: kept a week for reads, then gone
            await self._redis.srem(self._keys.active_drops, drop_id)
            pipe = self._redis.pipeline(transaction=False)
            for key in dk.all():
                pipe.expire(key, FINISHED_TTL_S)
            await pipe.execute()
        return int(count)

    async def _loop(self, period: float, step: Any, name: str) -> None:
        while True:
            reraise_if_cancelling()
            await asyncio.sleep(period)
            try:
                await step()
            except REDIS_DOWN as exc:
                reraise_if_cancelling()
                log.warning("%s failed: %s", name, exc)
            except Exception:  # a bug must not stop announcements or deadlines for good
                reraise_if_cancelling()
                log.exception("%s failed", name)

    async def run_schedule(self) -> None:
        await self._loop(self._schedule_s, self.fire_due, "drop schedule")

    async def run_sweeper(self) -> None:
        await self._loop(self._sweep_s, self.sweep, "payment deadline sweep")
