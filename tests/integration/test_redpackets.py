"""Red packets and rain against a real Redis: exact sums, one claim per user, refunds once."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from liveserver.sdk import ApiError, HostClient, ViewerClient

from .conftest import RunningNode, StartNode, join, token

FAST = {"client_msg_rate": 1000.0, "client_msg_burst": 1000, "http_write_rate": 1000.0, "http_write_burst": 1000}


async def setup_room(node: RunningNode) -> tuple[HostClient, str]:
    h = HostClient(node.base_url, token("host1", "host"))
    room = (await h.create_room("Red packets", room_id=f"rp-{uuid.uuid4().hex[:8]}"))["room_id"]
    await h.start_room(room)
    return h, room


async def test_create_validation(start_node: StartNode) -> None:
    node = await start_node(**FAST)
    h, room = await setup_room(node)
    for body, field in [({"total_cents": 9, "count": 10}, "total_cents"), ({"total_cents": 100, "count": 0}, "count"),
                        ({"total_cents": 100, "count": 2, "expires_s": 0}, "expires_s"),
                        ({"total_cents": 1.5, "count": 1}, "total_cents")]:
        with pytest.raises(ApiError) as e:
            await h.request("POST", f"/api/v1/rooms/{room}/red-packets", body)
        assert e.value.status == 422 and e.value.field == field
    async with HostClient(node.base_url, token("v")) as v:
        with pytest.raises(ApiError) as e:
            await v.create_red_packet(room, 100, 2)
        assert e.value.status == 403
    await h.close()


async def test_claims_over_two_nodes_sum_exactly(start_node: StartNode) -> None:
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    h, room = await setup_room(a)
    packet = await h.create_red_packet(room, 100_00, 300)
    pid = packet["packet_id"]
    viewers = [await join((a, b)[i % 2], f"c{i}", room) for i in range(400)]

    async def claim_twice(v: ViewerClient) -> tuple[dict, dict]:
        first, again = await asyncio.gather(v.claim(pid), v.claim(pid))
        return first, again

    results = await asyncio.gather(*(claim_twice(v) for v in viewers))
    won = {}
    for v, (first, again) in zip(viewers, results, strict=True):
        oks = [r for r in (first, again) if r["ok"]]
        if oks:
            assert len({r["amount_cents"] for r in oks}) == 1  # a repeat is the same amount
            assert sum(1 for r in oks if not r.get("duplicate")) == 1
            won[v.welcome["user"]] = oks[0]["amount_cents"]
        else:
            assert first["reason"] == again["reason"] == "empty"
    assert len(won) == 300 and sum(won.values()) == 100_00 and min(won.values()) >= 1
    got = await h.get_red_packet(room, pid)
    assert got["status"] == "empty" and got["claimed_count"] == 300 and got["claimed_cents"] == 100_00
    assert len(got["claims"]) == 300 and {c["user"]: c["amount_cents"] for c in got["claims"]} == won
    luckiest = max(got["claims"], key=lambda c: (c["amount_cents"], -c["at_ms"]))
    assert got["luckiest"]["amount_cents"] == luckiest["amount_cents"]
    wallet = await a.services.redis.xrange(a.services.keys.wallet_stream)
    assert sum(int(f["amount_cents"]) for _, f in wallet if f["packet_id"] == pid and f["kind"] == "claim") == 100_00
    for v in viewers:
        await v.close()
    await h.close()


async def test_lifecycle_broadcasts_and_expiry_refund(start_node: StartNode) -> None:
    node = await start_node(**FAST)
    h, room = await setup_room(node)
    v = await join(node, "catcher", room)
    packet = await h.create_red_packet(room, 1000, 5, countdown_s=1, expires_s=1)
    pid = packet["packet_id"]
    created = await v.wait_for("red_packet")
    assert created == {"type": "red_packet", "packet_id": pid, "status": "countdown", "count": 5, "claimed_count": 0,
                       "starts_at_ms": packet["starts_at_ms"], "expires_at_ms": packet["expires_at_ms"]}
    assert (await v.claim(pid))["reason"] == "not_started"
    assert (await v.wait_for("red_packet", timeout_s=3))["status"] == "live"
    won = await v.claim(pid)
    assert won["ok"] and won["amount_cents"] >= 1
    assert (await v.wait_for("red_packet", timeout_s=3))["status"] == "expired"
    assert (await v.claim(pid))["ok"] is True  # a repeat after expiry: the first amount again
    other = await join(node, "late", room)
    assert (await other.claim(pid))["reason"] == "expired"
    got = await h.get_red_packet(room, pid)
    assert got["claimed_cents"] + got["refunded_cents"] == 1000 and got["refunded_cents"] == 1000 - won["amount_cents"]
    async with HostClient(node.base_url, token("catcher")) as me:
        mine = await me.get_red_packet(room, pid)
        assert mine["mine"] == {"amount_cents": won["amount_cents"]} and "claims" not in mine
    # the refund happened once, even when the expiry is fired again
    assert (await node.services.packets.fire(pid, "expire")) == ("expired", 1000 - won["amount_cents"])
    wallet = await node.services.redis.xrange(node.services.keys.wallet_stream)
    assert sum(1 for _, f in wallet if f["packet_id"] == pid and f["kind"] == "refund") == 1
    assert (await other.claim("nope"))["reason"] == "not_found"
    for c in (v, other):
        await c.close()
    await h.close()


async def test_expiry_racing_the_last_claims(start_node: StartNode) -> None:
    node = await start_node(**FAST, schedule_interval_s=0.01)
    h, room = await setup_room(node)
    packet = await h.create_red_packet(room, 5000, 100, expires_s=1)
    pid = packet["packet_id"]
    viewers = [await join(node, f"r{i}", room) for i in range(100)]
    delay = (packet["expires_at_ms"] - node.services.clock.now_ms()) / 1000

    async def late_claim(v: ViewerClient, i: int) -> dict:
        await asyncio.sleep(max(0.0, delay - 0.05 + 0.001 * i))
        return await v.claim(pid)

    results = await asyncio.gather(*(late_claim(v, i) for i, v in enumerate(viewers)))
    assert {r.get("reason") for r in results if not r["ok"]} <= {"expired"}
    await asyncio.sleep(0.3)
    got = await h.get_red_packet(room, pid)
    claimed = sum(r["amount_cents"] for r in results if r["ok"])
    assert got["claimed_cents"] == claimed
    assert got["claimed_cents"] + got["refunded_cents"] == 5000
    for v in viewers:
        await v.close()
    await h.close()


async def test_rain_schedule_and_per_user_cap(start_node: StartNode) -> None:
    node = await start_node(**FAST, schedule_interval_s=0.02)
    h, room = await setup_room(node)
    v = await join(node, "greedy", room)  # before the rain: its first packet opens at once
    rain = await h.create_rain(room, total_cents=3000, drops=3, packets_per_drop=5, interval_s=1, per_user_cap=2)
    packets = rain["packets"]
    assert [p["total_cents"] for p in packets] == [1000, 1000, 1000]
    starts = [p["starts_at_ms"] for p in packets]
    assert [b - a for a, b in itertools.pairwise(starts)] == [1000, 1000]
    got = []
    for p in packets:
        live = await v.wait_for("red_packet", timeout_s=4,
                                predicate=lambda m, pid=p["packet_id"]: m["packet_id"] == pid and m["status"] == "live")
        assert node.services.clock.now_ms() >= live["starts_at_ms"]  # opened on schedule, not before
        got.append(await v.claim(p["packet_id"]))
    assert [r["ok"] for r in got] == [True, True, False] and got[2]["reason"] == "limit"
    with pytest.raises(ApiError) as e:
        await h.create_rain(room, total_cents=10, drops=3, packets_per_drop=5)
    assert e.value.status == 422
    await v.close()
    await h.close()


async def test_an_action_not_yet_due_is_kept_and_runs_later(start_node: StartNode) -> None:
    """A schedule entry that comes up early (a node's clock ahead, an estimate) is not lost:
    it stays in the schedule until its action is done, and the refund happens once, on time."""
    node = await start_node(**FAST, schedule_interval_s=0.02)
    h, room = await setup_room(node)
    packet = await h.create_red_packet(room, 1000, 4, expires_s=1)
    pid = packet["packet_id"]
    sched = node.services.keys.schedule
    await node.services.redis.zadd(sched, {f"pexpire:{pid}": 0})  # due at once, long before the expiry
    await asyncio.sleep(0.3)
    assert await node.services.redis.zscore(sched, f"pexpire:{pid}") is not None  # kept, pushed a lease ahead
    assert (await h.get_red_packet(room, pid))["refunded_cents"] == 0 and \
        (await h.get_red_packet(room, pid))["status"] == "live"
    await asyncio.sleep(2.2)
    got = await h.get_red_packet(room, pid)
    assert got["status"] == "expired" and got["refunded_cents"] == 1000
    assert await node.services.redis.zscore(sched, f"pexpire:{pid}") is None
    await h.close()


async def test_big_packets_blocked_users_and_room_end(start_node: StartNode) -> None:
    node = await start_node(**FAST)
    h, room = await setup_room(node)
    big = await h.create_red_packet(room, 1_000_000, 10_000)
    assert big["count"] == 10_000
    fixed = await h.create_red_packet(room, 500, 5, packet_id="hostchosen1")
    again = await h.create_red_packet(room, 500, 5, packet_id="hostchosen1")  # a retried create: no second packet
    assert again["starts_at_ms"] == fixed["starts_at_ms"]
    async with HostClient(node.base_url, token("ops", "admin")) as admin:
        await admin.request("PATCH", "/api/v1/blocklist", {"add": ["cheat"]})
    await asyncio.sleep(0.1)
    cheat = await join(node, "cheat", room)
    assert (await cheat.claim(big["packet_id"]))["reason"] == "blocked"
    honest = await join(node, "honest", room)
    won = await honest.claim(big["packet_id"])
    await h.end_room(room)  # open packets expire with the room and refund the rest
    got = await h.get_red_packet(room, big["packet_id"])
    assert got["status"] == "expired" and got["refunded_cents"] == 1_000_000 - won["amount_cents"]
    for c in (cheat, honest):
        await c.close()
    await h.close()
