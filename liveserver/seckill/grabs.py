"""The grab path of flash sales and coupons: one grab in, one ``grab_result`` out.

Grabs of one drop are group-committed (``batcher.py``) into one
``seckill_grab.lua`` call, which decides stock, limits and idempotency.  Before
that, the node answers hopeless grabs (ended, sold out, clearly early) from its
own view of each drop, kept current by the drop's broadcasts, and applies the
anti-fraud rules that need no shared state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..auth import Principal
from ..clock import Clock
from ..redisio.store import Store
from ..settings import Settings
from ..wire import ID_RE
from .batcher import GrabBatcher, GrabRequest
from .drop import drop_status, too_soon
from .terms import KIND_FIELD

__all__ = ["Grabs"]


@dataclass(slots=True)
class _Seen:
    """What this node knows of a drop from its broadcasts.

    ``holders``: everyone who ever won it, loaded once after a broadcast said
    sold out or ended.  Their grabs may be retries of a grab that won, so
    they go to Redis for their first answer; everyone else is answered here.
    """

    room: str
    kind: str
    starts: int
    ends: int
    left: int
    status: str
    holders: frozenset[str] | None = None
    loading: asyncio.Future[frozenset[str]] | None = None


class Grabs:
    """Answers grabs; ``counts``, ``fraud`` and ``local_answers`` are read by ``/metrics``."""

    def __init__(self, store: Store, settings: Settings, clock: Clock,
                 is_subscribed: Callable[[str], bool], is_blocked: Callable[[str], bool]) -> None:
        self._redis, self._scripts, self._keys = store
        self._s = settings
        self._clock = clock
        self._is_subscribed = is_subscribed
        self._is_blocked = is_blocked
        self._seen: dict[str, _Seen] = {}
        self.batcher = GrabBatcher(self._run_batch, max_batch=settings.grab_batch_max)
        self.counts: dict[tuple[str, str], int] = {}  # (kind, answer) -> grabs answered
        self.fraud: dict[str, int] = {}  # rule -> grabs refused by it
        self.local_answers = 0

    # -- node-local view -------------------------------------------------------------

    def on_message(self, room: str, msg: dict[str, Any]) -> None:
        """A ``flash_sale`` / ``coupon`` broadcast passed through this node."""
        kind = "sale" if msg.get("type") == "flash_sale" else "coupon"
        drop_id = msg.get(KIND_FIELD[kind])
        if isinstance(drop_id, str):
            self._seen[drop_id] = _Seen(room, kind, msg["starts_at_ms"], msg["ends_at_ms"], msg["stock_left"], msg["status"])

    async def _holders(self, drop_id: str, seen: _Seen) -> frozenset[str]:
        if seen.holders is not None:
            return seen.holders
        if seen.loading is None:  # one HKEYS per sold-out or end, however many grabs wait for it
            seen.loading = asyncio.get_running_loop().create_future()
            try:
                seen.holders = frozenset(await self._redis.smembers(self._keys.drop(drop_id).winners))
                seen.loading.set_result(seen.holders)
            except BaseException as exc:
                seen.loading.set_exception(exc)
                seen.loading.exception()  # retrieved: the waiters below re-raise it
                seen.loading = None
                raise
            return seen.holders
        return await asyncio.shield(seen.loading)

    def forget_room(self, room: str) -> None:
        for drop_id in [d for d, s in self._seen.items() if s.room == room]:
            del self._seen[drop_id]
    # -- grabbing ----------------------------------------------------------------------

    def _answer(self, kind: str, drop_id: str, answer: str, **extra: Any) -> dict[str, Any]:
        self.counts[(kind, answer)] = self.counts.get((kind, answer), 0) + 1
        result: dict[str, Any] = {"type": "grab_result", "ok": answer == "ok", KIND_FIELD[kind]: drop_id}
        if answer != "ok":
            result["reason"] = answer
        result.update(extra)
        return result

    async def grab(
        self, who: Principal, drop_id: str, kind: str, req_id: str, ip: str, rtt_ms: int | None = None
    ) -> dict[str, Any]:
        """One grab, answered as the contract's ``grab_result`` (without ``req_id``)."""
        # A refusal by the anti-fraud rules still goes through the script, which answers a retry of
        # an earlier grab (one that won, say) with its first answer, and remembers this one.
        rule = "blocklist" if self._is_blocked(who.user) else None
        seen = self._seen.get(drop_id)
        now = self._clock.now_ms()
        if seen is not None and self._is_subscribed(seen.room):  # this view is kept current by broadcasts
            if seen.kind != kind:
                return self._answer(kind, drop_id, "not_found")
            # near the end, as near the start, Redis's clock decides
            status = drop_status(False, seen.starts, seen.ends + 1000, seen.left, now)
            hopeless = "ended" if "ended" in (seen.status, status) else "sold_out" if seen.status == "sold_out" else None
            if hopeless is not None and who.user not in await self._holders(drop_id, seen):
                self.local_answers += 1
                return self._answer(kind, drop_id, hopeless)
            if now < seen.starts - 1000:  # clearly early; near the start Redis's clock decides
                self.local_answers += 1
                return self._answer(kind, drop_id, "not_started")
            if rule is None and self._s.grab_too_soon and too_soon(now, seen.starts, rtt_ms):
                rule = "too_soon"
        if not ID_RE.match(drop_id):
            return self._answer(kind, drop_id, "not_found")
        refusal = "blocked" if rule else ""
        answer, order_id, expires = await self.batcher.submit((drop_id, kind), GrabRequest(who.user, req_id, ip, refusal))
        if rule and answer == "blocked":
            self.fraud[rule] = self.fraud.get(rule, 0) + 1
        extra: dict[str, Any] = {}
        if answer == "ok" and kind == "sale":
            extra = {"order_id": order_id, "expires_at_ms": expires}
        elif answer == "ok":
            await self._redis.sadd(self._keys.user_coupons(who.user), drop_id)
        return self._answer(kind, drop_id, answer, **extra)

    async def _run_batch(self, target: tuple[str, str], batch: list[GrabRequest]) -> list[tuple[str, str, int]]:
        drop_id, kind = target
        dk = self._keys.drop(drop_id)
        keys = [dk.meta, dk.buyers, dk.answers, dk.orders, dk.deadlines, self._keys.orders_stream, dk.winners,
                dk.order_uv, dk.stats]
        args: list[Any] = [self._s.grab_user_rate, self._s.grab_user_burst, self._s.grab_ip_rate,
                           self._s.grab_ip_burst, kind]
        for g in batch:
            keys += [dk.user_rate(g.user), dk.ip_rate(g.ip)]
            args += [g.user, g.req_id, g.refusal]
        res = await self._scripts.seckill_grab(keys=keys, args=args)
        return [(r[0], r[1], int(r[2])) for r in res]
