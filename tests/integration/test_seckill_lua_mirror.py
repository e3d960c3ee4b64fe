"""The node's Python copies of Lua decisions agree with the Lua, on a real Redis.

The node answers reads and hopeless grabs with ``drop_status`` and builds the
``welcome``'s drop bodies with ``Drop.message``; the scripts decide with
``status`` and publish with ``announce`` (``_seckill_lib.lua``).  The lib has no
script of its own, so each test runs it by EVAL with a one-line body after it,
as ``load_source`` prepends it to the ``seckill_*`` scripts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import msgpack
import pytest

from liveserver.redisio import connect, connect_pubsub
from liveserver.redisio.client import RedisClient
from liveserver.seckill.drop import Drop, drop_status

from ..conftest import RedisProcess

LIB = resources.files("liveserver.redisio").joinpath("lua", "_seckill_lib.lua").read_text("utf-8")
STATUS_LUA = LIB + "\nreturn status(load(KEYS[1]), tonumber(ARGV[1]))\n"
ANNOUNCE_LUA = LIB + "\nannounce(load(KEYS[1]), tonumber(ARGV[1]))\nreturn 1\n"

STARTS = 1_700_000_000_000  # real times: the Lua reads them as doubles
ENDS = STARTS + 300_000
NOWS = (STARTS - 1, STARTS, STARTS + 1, ENDS - 1, ENDS, ENDS + 1)


@pytest.fixture
async def redis(redis_server: RedisProcess, key_prefix: str) -> AsyncIterator[RedisClient]:
    client = connect(redis_server.url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _meta(channel: str, kind: str = "sale", *, left: int = 5, ended: bool = False, starts: Any = STARTS,
          ends: Any = ENDS, product: dict[str, Any] | None = None) -> dict[str, Any]:
    """A meta hash as ``seckill_create.lua`` writes it (``product``: title and list_price, if any)."""
    return {"kind": kind, "id": f"{kind}-1", "room": "room-1", "product": "tea", "price": 9900,
            "discount": 500 if kind == "coupon" else 0, "stock": 5, "left": left, "pending": 5 - left, "paid": 0,
            "per_user": 2, "starts": starts, "ends": ends, "pay_ms": 900_000 if kind == "sale" else 0,
            "channel": channel, "ended": 1 if ended else 0, "seq": 0, "orders": 5 - left, "created": STARTS - 10,
            **(product or {})}


async def _write(redis: RedisClient, key: str, meta: dict[str, Any]) -> Drop:
    """Write the hash afresh; the Python side reads it back as the node does."""
    await redis.delete(key)
    await redis.hset(key, mapping=meta)
    return Drop.from_hash(await redis.hgetall(key))


async def test_status_rule_agrees_with_the_lua(redis: RedisClient, key_prefix: str) -> None:
    key = f"{key_prefix}{{d:mirror}}:meta"
    table = []
    for ended, left, now in itertools.product((False, True), (0, 1), NOWS):
        drop = await _write(redis, key, _meta("unused", left=left, ended=ended))
        lua = await redis.eval(STATUS_LUA, 1, key, now)
        table.append(((ended, left, now - STARTS), lua, drop_status(ended, STARTS, ENDS, left, now), drop.status(now)))
    disagreeing = [row for row in table if not row[1] == row[2] == row[3]]
    assert disagreeing == [], "(ended, left, now - starts), lua, drop_status, Drop.status"
    assert {row[1] for row in table} == {"countdown", "live", "sold_out", "ended"}  # the table reaches every status


@pytest.mark.parametrize("kind", ["sale", "coupon"])
@pytest.mark.parametrize(
    "product", [None, {"title": "Green tea", "list_price": 12_000}, {"title": "Free sample", "list_price": 0}],
    ids=["no product", "product", "free product"],
)
async def test_broadcast_body_agrees_with_announce(
    redis: RedisClient, redis_server: RedisProcess, key_prefix: str, kind: str, product: dict[str, Any] | None,
) -> None:
    key = f"{key_prefix}{{d:mirror}}:meta"
    channel = f"{key_prefix}mirror:{kind}"
    sub = connect_pubsub(redis_server.url)
    pubsub = sub.pubsub()
    await pubsub.subscribe(channel)
    try:
        cases = [dict(now=now, left=left, ended=ended)
                 for ended, left, now in itertools.product((False, True), (0, 1), (STARTS - 1, STARTS, ENDS))]
        cases.append(dict(now=STARTS, left=1, ended=False, starts=f"{STARTS}.0", ends=f"{ENDS}.0"))  # as %.17g writes
        for case in cases:
            now = case.pop("now")
            drop = await _write(redis, key, _meta(channel, kind, product=product, **case))
            await redis.eval(ANNOUNCE_LUA, 1, key, now)
            published = await _next_message(pubsub)
            assert published == drop.message(now), (case, now - STARTS)
    finally:
        await pubsub.aclose()
        await sub.aclose()


async def _next_message(pubsub: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if m is not None:
                return msgpack.unpackb(m["data"], raw=False)  # as the broker decodes it
