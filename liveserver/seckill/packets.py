"""Red packets and red-packet rain.

The split is made here, by a pure function with its RNG passed in
(redpacket.py); the shares go to Redis at creation and ``redpacket_claim.lua``
pops one per user.  Claims of one packet are group-committed like grabs.  At
expiry the scheduler runs ``redpacket_expire.lua``, which refunds the rest
exactly once.  Every claim and refund is appended to the wallet stream.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Callable
from typing import Any

from ..auth import Principal
from ..clock import Clock
from ..errors import Conflict, Invalid, NotFound
from ..redisio.keyspace import FINISHED_TTL_S
from ..redisio.store import Store
from ..rooms.service import RoomService, check_int
from ..settings import Settings
from ..wire import ID_RE
from .batcher import GrabBatcher, GrabRequest
from .redpacket import split_red_packet
from .terms import Window, parse_window

__all__ = ["RedPacketService"]

MAX_TOTAL_CENTS = 10**9
MAX_COUNT = 10_000
MAX_RAIN_DROPS = 100
_FIELDS = ("id", "room", "total", "count", "claimed_count", "claimed_cents", "refunded", "starts", "expires",
           "lucky_user", "lucky_cents")


def packet_status(claimed: int, count: int, starts: int, expires: int, now: int) -> str:
    """The contract's status (pure; the same rule as ``_redpacket_lib.lua``)."""
    if claimed >= count:
        return "empty"
    if now >= expires:
        return "expired"
    if now < starts:
        return "countdown"
    return "live"


class RedPacketService:
    def __init__(self, store: Store, settings: Settings, rooms: RoomService,
                 clock: Clock, is_blocked: Callable[[str], bool], rng: random.Random | None = None) -> None:
        self._redis, self._scripts, self._keys = store
        self._rooms = rooms
        self._clock = clock
        self._is_blocked = is_blocked
        self._rng = rng or random.SystemRandom()
        self.batcher = GrabBatcher(self._run_batch, max_batch=settings.grab_batch_max)
        self.counts: dict[str, int] = {}

    # -- creating ------------------------------------------------------------------

    async def _create_one(self, room_id: str, packet_id: str, total: int, count: int, window: Window,
                          expires_ms: int, rain_cap: int) -> dict[str, Any]:
        pk, rk = self._keys.packet(packet_id), self._keys.room(room_id)
        shares = split_red_packet(total, count, self._rng)
        # bookkeeping first (estimated times): a packet never exists without its expiry scheduled
        starts_guess = window.starts_at(self._clock.now_ms())
        await self._book(rk.packets, packet_id, starts_guess, starts_guess + expires_ms)
        code, starts, expires = await self._scripts.redpacket_create(
            keys=[pk.meta, pk.shares],
            args=[packet_id, room_id, total, count, window.starts_ms, window.countdown_ms, expires_ms, rk.channel,
                  rain_cap, *shares],
        )
        existing = None if code == "ok" else await self._load(packet_id)
        await self._book(rk.packets, packet_id, int(starts), int(expires))  # the packet's own times
        if existing is not None:
            if existing["room"] != room_id:  # another room's packet id
                await self._redis.srem(rk.packets, packet_id)
                raise Conflict(f"red packet {packet_id!r} exists")
            total, count = existing["total"], existing["count"]  # a retry: the packet as it was made
        if code == "ok":  # created now (a retry marks nothing)
            marker = {"kind": "red_packet", "packet_id": packet_id, "total_cents": total, "count": count,
                      "at": int(starts)}
            pipe = self._redis.pipeline(transaction=False)
            pipe.sadd(rk.metric("packets"), packet_id)  # every packet the room ever had (its metrics)
            pipe.zadd(rk.metric("markers"), {json.dumps(marker, sort_keys=True): int(starts)})
            pipe.zremrangebyrank(rk.metric("markers"), 0, -201)
            await pipe.execute()
        return {"packet_id": packet_id, "starts_at_ms": int(starts), "expires_at_ms": int(expires),
                "total_cents": total, "count": count}

    async def _book(self, room_packets: str, packet_id: str, starts: int, expires: int) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(room_packets, packet_id)
        pipe.zadd(self._keys.schedule, {f"pstart:{packet_id}": starts, f"pexpire:{packet_id}": expires})
        await pipe.execute()

    @staticmethod
    def _client_id(body: dict[str, Any], field: str) -> str:
        """A client-chosen id makes a retried create harmless (no second packet is funded)."""
        value = body.get(field)
        if value is None:
            return secrets.token_hex(6)
        if not isinstance(value, str) or not ID_RE.match(value) or "-" in value or len(value) > 40:
            raise Invalid(field, f"'{field}' must be 1-40 of [A-Za-z0-9_.] (no '-')")
        return value

    async def create(self, room_id: str, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        room = await self._rooms.get_run(room_id, who)
        if room.status == "ended":
            raise Conflict(f"room {room_id!r} has ended")
        total = check_int(body.get("total_cents"), "total_cents", 1, MAX_TOTAL_CENTS)
        count = check_int(body.get("count"), "count", 1, MAX_COUNT)
        if total < count:
            raise Invalid("total_cents", f"{total} cents cannot make {count} shares of at least 1 cent")
        expires_s = check_int(body.get("expires_s", 600), "expires_s", 1, 24 * 3600)
        window = parse_window(body, self._clock.now_ms())
        return await self._create_one(room_id, self._client_id(body, "packet_id"), total, count, window,
                                      expires_s * 1000, 0)

    async def create_rain(self, room_id: str, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """A rain: ``drops`` packets of ``packets_per_drop`` shares each, one every ``interval_s``;
        ``per_user_cap`` caps how many of the rain's drops one user may catch (0: no cap)."""
        room = await self._rooms.get_run(room_id, who)
        if room.status == "ended":
            raise Conflict(f"room {room_id!r} has ended")
        total = check_int(body.get("total_cents"), "total_cents", 1, MAX_TOTAL_CENTS)
        drops = check_int(body.get("drops"), "drops", 1, MAX_RAIN_DROPS)
        per_drop = check_int(body.get("packets_per_drop"), "packets_per_drop", 1, MAX_COUNT)
        interval_s = check_int(body.get("interval_s", 10), "interval_s", 1, 3600)
        cap = check_int(body.get("per_user_cap", 0), "per_user_cap", 0, drops)
        expires_s = check_int(body.get("expires_s", interval_s), "expires_s", 1, 24 * 3600)
        if total < drops * per_drop:
            raise Invalid("total_cents", f"{total} cents cannot make {drops * per_drop} shares of at least 1 cent")
        now = self._clock.now_ms()
        starts_ms = parse_window(body, now).starts_at(now)
        rain_id = self._client_id(body, "rain_id")
        base, extra = divmod(total, drops)
        packets = []
        for k in range(drops):
            packets.append(await self._create_one(
                room_id, f"{rain_id}-{k + 1}", base + (1 if k < extra else 0), per_drop,
                Window(starts_ms + k * interval_s * 1000, 0), expires_s * 1000, cap,
            ))
        return {"rain_id": rain_id, "per_user_cap": cap, "packets": packets}

    # -- reading ---------------------------------------------------------------------

    async def _load(self, packet_id: str) -> dict[str, Any] | None:
        if not ID_RE.match(packet_id):
            return None
        return self._parse(await self._redis.hmget(self._keys.packet(packet_id).meta, _FIELDS))

    @staticmethod
    def _parse(values: list[str | None]) -> dict[str, Any] | None:
        if values[0] is None:
            return None
        h = dict(zip(_FIELDS, values, strict=True))
        return {k: (v if k in ("id", "room", "lucky_user") else int(float(v))) for k, v in h.items()}

    def _status(self, h: dict[str, Any]) -> str:
        return packet_status(h["claimed_count"], h["count"], h["starts"], h["expires"], self._clock.now_ms())

    def message(self, h: dict[str, Any]) -> dict[str, Any]:
        return {"type": "red_packet", "packet_id": h["id"], "status": self._status(h), "starts_at_ms": h["starts"],
                "expires_at_ms": h["expires"], "count": h["count"], "claimed_count": h["claimed_count"]}

    async def get(self, room_id: str, packet_id: str, who: Principal) -> dict[str, Any]:
        h = await self._load(packet_id)
        if h is None or h["room"] != room_id:
            raise NotFound(f"red packet {packet_id!r} not found in room {room_id!r}")
        body: dict[str, Any] = {
            "packet_id": packet_id, "status": self._status(h), "total_cents": h["total"], "count": h["count"],
            "claimed_count": h["claimed_count"], "claimed_cents": h["claimed_cents"],
            "refunded_cents": max(0, h["refunded"]), "starts_at_ms": h["starts"], "expires_at_ms": h["expires"],
        }
        pk = self._keys.packet(packet_id)
        room = await self._rooms.find(room_id)
        if room is not None and who.may_run(room.host):
            claims, times = await asyncio.gather(self._redis.hgetall(pk.claims), self._redis.hgetall(pk.claim_times))
            body["claims"] = sorted(
                ({"user": u, "amount_cents": int(c), "at_ms": int(times.get(u, 0))} for u, c in claims.items()),
                key=lambda c: (c["at_ms"], c["user"]),
            )
            if h["lucky_user"]:
                body["luckiest"] = {"user": h["lucky_user"], "amount_cents": h["lucky_cents"]}
        else:
            mine = await self._redis.hget(pk.claims, who.user)
            if mine is not None:
                body["mine"] = {"amount_cents": int(mine)}
        return body

    async def claimed(self, room_id: str) -> tuple[int, int, list[dict[str, Any]]]:
        """Shares claimed and cents paid out over every packet the room ever had, and each
        packet's figures, newest last (the room's metrics and the host's drops table)."""
        ids = sorted(await self._redis.smembers(self._keys.room(room_id).metric("packets")))
        if not ids:
            return 0, 0, []
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self._keys.packet(i).meta, _FIELDS)
        rows = [h for h in (self._parse(v) for v in await pipe.execute()) if h is not None and h["room"] == room_id]
        rows.sort(key=lambda h: h["starts"])
        packets = []
        for h in rows:
            body: dict[str, Any] = {
                "packet_id": h["id"], "status": self._status(h), "total_cents": h["total"], "count": h["count"],
                "claimed_count": h["claimed_count"], "claimed_cents": h["claimed_cents"],
                "left_cents": h["total"] - h["claimed_cents"] - max(0, h["refunded"]),
                "refunded_cents": max(0, h["refunded"]), "starts_at_ms": h["starts"], "expires_at_ms": h["expires"],
            }
            if h["lucky_user"]:
                body["luckiest"] = {"user": h["lucky_user"], "amount_cents": h["lucky_cents"]}
            packets.append(body)
        return sum(h["claimed_count"] for h in rows), sum(h["claimed_cents"] for h in rows), packets

    async def room_packets(self, room_id: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
        """The ``red_packet`` bodies of the room's packets that have not expired (for ``welcome``);
        ``ids``: the room's packet set, if the caller read it already."""
        if ids is None:
            ids = sorted(await self._redis.smembers(self._keys.room(room_id).packets))
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self._keys.packet(i).meta, _FIELDS)
        parsed = (self._parse(values) for values in await pipe.execute())
        loaded = [h for h in parsed if h is not None and h["room"] == room_id]
        return [self.message(h) for h in sorted(loaded, key=lambda h: h["starts"]) if self._status(h) != "expired"]

    # -- claiming ----------------------------------------------------------------------

    async def claim(self, who: Principal, packet_id: str) -> dict[str, Any]:
        answer, amount, duplicate = ("not_found", 0, 0)
        if ID_RE.match(packet_id):
            refusal = "blocked" if self._is_blocked(who.user) else ""
            answer, amount, duplicate = await self.batcher.submit(packet_id, GrabRequest(who.user, "", "", refusal))
        self.counts[answer] = self.counts.get(answer, 0) + 1
        result: dict[str, Any] = {"type": "claim_result", "ok": answer == "ok", "packet_id": packet_id}
        if answer == "ok":
            result["amount_cents"] = amount
            if duplicate:
                result["duplicate"] = True
        else:
            result["reason"] = answer
        return result

    async def _run_batch(self, packet_id: str, batch: list[GrabRequest]) -> list[tuple[str, int, int]]:
        pk = self._keys.packet(packet_id)
        res = await self._scripts.redpacket_claim(
            keys=[pk.meta, pk.shares, pk.claims, pk.claim_times, pk.rain_claims, self._keys.wallet_stream],
            args=[x for g in batch for x in (g.user, g.refusal)],
        )
        return [(r[0], int(r[1]), int(r[2])) for r in res]

    # -- lifecycle ------------------------------------------------------------------------

    async def fire(self, packet_id: str, action: str) -> tuple[str, int]:
        """The scheduler: ``announce`` at the start, ``expire`` at the expiry (refund, once);
        ``end`` when the room ends.  Returns (status, refunded_cents or -1)."""
        pk = self._keys.packet(packet_id)
        status, refunded = await self._scripts.redpacket_expire(
            keys=[pk.meta, pk.shares, self._keys.wallet_stream], args=[action]
        )
        if action != "announce" and int(refunded) >= 0:
            room = await self._redis.hget(pk.meta, "room")
            if room:
                await self._redis.srem(self._keys.room(room).packets, packet_id)
            pipe = self._redis.pipeline(transaction=False)  # kept a week for the host's view, then gone
            for key in (pk.meta, pk.shares, pk.claims, pk.claim_times):
                pipe.expire(key, FINISHED_TTL_S)
            await pipe.execute()
        return status, int(refunded)

    async def end_room(self, room_id: str) -> None:
        """The room ended: its red packets expire now and refund what is left."""
        for packet_id in await self._redis.smembers(self._keys.room(room_id).packets):
            await self.fire(packet_id, "end")
