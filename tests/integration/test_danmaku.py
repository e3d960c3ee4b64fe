"""Danmaku against a real Redis: order across nodes, coalescing, resume, every rejection, moderation."""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

import pytest
from redis.asyncio import Redis

from liveserver.sdk import MSGPACK, ApiError, HostClient, ReplyError, ViewerClient

from ..conftest import RedisProcess
from .conftest import RunningNode, StartNode, join, token

FAST = {"danmaku_user_rate": 1000.0, "danmaku_user_burst": 1000, "client_msg_rate": 1000.0, "client_msg_burst": 1000}


async def say(v: ViewerClient, text: str) -> dict[str, Any]:
    return await v.request({"type": "danmaku", "text": text})


async def collect(v: ViewerClient, n: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    """The next ``n`` danmaku items this viewer receives, in order."""
    items: list[dict[str, Any]] = []
    while len(items) < n:
        frame = await v.wait_for("danmaku", timeout_s=timeout_s)
        items.extend(frame["items"])
        assert frame["seq"] == frame["items"][-1]["id"]
    return items


async def test_send_and_receive(server: RunningNode, live_room: str) -> None:
    alice = await join(server, "alice", live_room)
    bob = await join(server, "bob", live_room, protocol=MSGPACK)
    ack = await say(alice, "hello 大家好 👋")
    assert ack["type"] == "ack" and ack["ok"] is True and ack["id"] == 1
    for v in (alice, bob):
        (item,) = await collect(v, 1)
        assert item["id"] == 1 and item["user"] == "alice" and item["name"] == "alice"
        assert item["text"] == "hello 大家好 👋" and isinstance(item["ts_ms"], int)
    later = await join(server, "carol", live_room)
    assert later.welcome["seq"] == 1
    for v in (alice, bob, later):
        await v.close()


async def test_one_order_across_nodes_many_senders(start_node: StartNode, live_room: str) -> None:
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    viewers = [await join(node, f"w{i}-{j}", live_room) for i, node in enumerate((a, b)) for j in range(8)]
    senders = [await join(node, f"s{i}-{j}", live_room) for i, node in enumerate((a, b)) for j in range(10)]
    per_sender = 15

    async def send_all(s: ViewerClient) -> list[int]:
        acks = [await say(s, f"{s.welcome['user']} #{k}") for k in range(per_sender)]
        assert all(x["ok"] for x in acks)
        return [x["id"] for x in acks]

    ids = list(itertools.chain.from_iterable(await asyncio.gather(*(send_all(s) for s in senders))))
    total = per_sender * len(senders)
    assert sorted(ids) == list(range(1, total + 1))
    received = await asyncio.gather(*(collect(v, total) for v in viewers))
    reference = [(i["id"], i["user"], i["text"]) for i in received[0]]
    assert [r[0] for r in reference] == list(range(1, total + 1))  # contiguous, each once
    for got in received[1:]:
        assert [(i["id"], i["user"], i["text"]) for i in got] == reference  # the same order everywhere
    # per sender, in the order it sent
    for s in senders:
        user = s.welcome["user"]
        numbers = [int(t.split("#")[1]) for _, u, t in reference if u == user]
        assert numbers == list(range(per_sender))
    for v in viewers + senders:
        await v.close()


async def test_coalesced_frames(start_node: StartNode, live_room: str) -> None:
    node = await start_node(danmaku_tick_s=0.2, **FAST)
    viewer = await join(node, "reader", live_room)
    sender = await join(node, "writer", live_room)
    await asyncio.gather(*(say(sender, f"m{i}") for i in range(60)))
    frames = []
    n = 0
    while n < 60:
        f = await viewer.wait_for("danmaku")
        frames.append(f)
        n += len(f["items"])
    assert len(frames) < 20 and max(len(f["items"]) for f in frames) > 5
    assert [i["text"] for f in frames for i in f["items"]] == [f"m{i}" for i in range(60)] or \
        sorted(i["id"] for f in frames for i in f["items"]) == list(range(1, 61))
    await viewer.close()
    await sender.close()


async def test_resume_on_another_node(start_node: StartNode, live_room: str) -> None:
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    sender = await join(a, "sender", live_room)
    v = await join(a, "mobile", live_room)
    for i in range(5):
        await say(sender, f"before {i}")
    seen = await collect(v, 5)
    last = seen[-1]["id"]
    await v.close()  # the phone goes through a tunnel
    for i in range(7):
        await say(sender, f"missed {i}")
    back = await ViewerClient.connect(b.ws_url, token("mobile"), live_room, last_seq=last)
    assert back.welcome["recovered"] is True and back.welcome["seq"] == last + 7
    missed = await collect(back, 7)
    assert [i["text"] for i in missed] == [f"missed {i}" for i in range(7)]
    await say(sender, "live again")
    (live,) = await collect(back, 1)
    assert live["text"] == "live again" and live["id"] == last + 8
    await sender.close()
    await back.close()


async def test_resume_past_the_end_of_history(start_node: StartNode, live_room: str) -> None:
    node = await start_node(danmaku_history=10, **FAST)
    sender = await join(node, "sender", live_room)
    for i in range(30):
        await say(sender, f"m{i + 1}")
    v = await ViewerClient.connect(node.ws_url, token("late"), live_room, last_seq=5)
    assert v.welcome["recovered"] is False
    got = await collect(v, 10)
    assert [i["id"] for i in got] == list(range(21, 31))
    fresh = await ViewerClient.connect(node.ws_url, token("fresh"), live_room, last_seq=30)
    assert fresh.welcome["recovered"] is True
    future = await ViewerClient.connect(node.ws_url, token("time-traveller"), live_room, last_seq=999)
    assert future.welcome["recovered"] is False  # history of another epoch: start over
    for c in (sender, v, fresh, future):
        await c.close()


async def test_no_doubles_at_the_seam_while_sending(start_node: StartNode, live_room: str) -> None:
    """Viewers keep reconnecting with last_seq while danmaku flow: each id exactly once, in order."""
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    sender = await join(a, "firehose", live_room)
    stop = asyncio.Event()

    async def pump() -> int:
        n = 0
        while not stop.is_set():
            await say(sender, f"x{n}")
            n += 1
            await asyncio.sleep(0.002)
        return n

    pumping = asyncio.create_task(pump())
    ids: list[int] = []
    last = 0
    for hop in range(6):
        node = (a, b)[hop % 2]
        v = await ViewerClient.connect(node.ws_url, token("hopper"), live_room, last_seq=last)
        deadline = asyncio.get_running_loop().time() + 0.3
        while asyncio.get_running_loop().time() < deadline:
            try:
                f = await v.wait_for("danmaku", timeout_s=0.3)
            except TimeoutError:
                break
            ids.extend(i["id"] for i in f["items"])
        last = ids[-1] if ids else last
        await v.close()
    stop.set()
    sent = await pumping
    assert sent > 50
    assert ids == list(range(1, len(ids) + 1)), "each id exactly once and in order across reconnects"
    await sender.close()


async def test_every_rejection_reason(start_node: StartNode) -> None:
    node = await start_node(danmaku_user_rate=1.0, danmaku_user_burst=2)
    async with HostClient(node.base_url, token("host1", "host")) as h:
        scheduled = (await h.create_room("soon", room_id="rej-scheduled"))["room_id"]
        room = (await h.create_room("now", room_id="rej-live"))["room_id"]
        await h.start_room(room)
        await h.request("PUT", f"/api/v1/rooms/{room}/banned-words", {"words": ["Scam", "壞人"]})

        v = await join(node, "viewer", room)
        assert (await say(v, "x" * 201))["reason"] == "too_long"
        assert (await say(v, "x" * 200))["ok"] is True
        for text in ("total SCAM here", "ｓｃａｍ", "s c a m", "這是壞人", "这是坏人"):
            ack = await say(v, text)
            assert ack == {"type": "ack", "ok": False, "reason": "blocked", "req_id": ack["req_id"]}, text
        assert (await say(v, "second"))["ok"] is True
        limited = await say(v, "third")
        assert limited["reason"] == "rate_limited" and limited["retry_after_ms"] > 0

        await h.request("POST", f"/api/v1/rooms/{room}/mutes", {"user": "loud", "seconds": 60})
        loud = await join(node, "loud", room)
        muted = await say(loud, "hi")
        assert muted["reason"] == "muted" and muted["retry_after_ms"] > 50_000
        await h.request("DELETE", f"/api/v1/rooms/{room}/mutes/loud")
        assert (await say(loud, "hi again"))["ok"] is True

        await h.request("PUT", f"/api/v1/rooms/{room}/slow-mode", {"seconds": 30})
        slow = await join(node, "slowpoke", room)
        assert (await say(slow, "one"))["ok"] is True
        waiting = await say(slow, "two")
        assert waiting["reason"] == "slow_mode" and 25_000 < waiting["retry_after_ms"] <= 30_000

        # the host is exempt from limits and the filter
        host_ws = await ViewerClient.connect(node.ws_url, token("host1", "host"), room)
        for _ in range(4):
            assert (await say(host_ws, "scam alert from the host"))["ok"] is True

        early = await join(node, "early", scheduled)
        assert (await say(early, "anyone?"))["reason"] == "room_not_live"
        await h.end_room(room)
        assert (await say(v, "bye"))["reason"] == "room_not_live"
        with pytest.raises(ReplyError) as e:
            await say(v, "   ")
        assert e.value.code == "invalid"
        for c in (v, loud, slow, host_ws, early):
            await c.close()


async def test_retry_with_same_req_id_is_not_doubled(server: RunningNode, live_room: str) -> None:
    v = await join(server, "retrier", live_room)
    first = await v.request({"type": "danmaku", "text": "once", "req_id": "dm-1"})
    again = await v.request({"type": "danmaku", "text": "once", "req_id": "dm-1"})
    assert first["id"] == again["id"] and first["ok"] and again["ok"]
    await say(v, "next")
    items = await collect(v, 2)
    assert [i["text"] for i in items] == ["once", "next"]
    await v.close()


async def test_delete(server: RunningNode, host: HostClient, live_room: str) -> None:
    v = await join(server, "reader", live_room)
    w = await join(server, "writer", live_room)
    ack = await say(w, "regrettable")
    await say(w, "fine")
    await collect(v, 2)
    await host.request("DELETE", f"/api/v1/rooms/{live_room}/danmaku/{ack['id']}")
    assert (await v.wait_for("danmaku_deleted"))["id"] == ack["id"]
    replayed = await ViewerClient.connect(server.ws_url, token("reader2"), live_room, last_seq=0)
    assert [i["text"] for i in await collect(replayed, 1)] == ["fine"]
    for bad in ("999", "abc", "0"):
        with pytest.raises(ApiError) as e:
            await host.request("DELETE", f"/api/v1/rooms/{live_room}/danmaku/{bad}")
        assert e.value.status == 404
    async with HostClient(server.base_url, token("someone")) as viewer_http:
        with pytest.raises(ApiError) as e:
            await viewer_http.request("DELETE", f"/api/v1/rooms/{live_room}/danmaku/2")
        assert e.value.status == 403
    for c in (v, w, replayed):
        await c.close()


async def test_banned_words_endpoints_across_nodes(start_node: StartNode, live_room: str) -> None:
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    on_b = await join(b, "talker", live_room)
    assert (await say(on_b, "buy fakes here"))["ok"] is True
    async with HostClient(a.base_url, token("host1", "host")) as h:
        words = await h.request("PATCH", f"/api/v1/rooms/{live_room}/banned-words", {"add": ["fakes", "刷单"]})
        assert words == {"words": ["fakes", "刷单"]}
        await asyncio.sleep(0.1)  # the change reaches node B through the room channel
        assert (await say(on_b, "buy FAKES here"))["reason"] == "blocked"
        await h.request("PATCH", f"/api/v1/rooms/{live_room}/banned-words", {"remove": ["fakes"]})
        await asyncio.sleep(0.1)
        assert (await say(on_b, "buy fakes here"))["ok"] is True
        with pytest.raises(ApiError) as e:
            await h.request("PUT", f"/api/v1/rooms/{live_room}/banned-words", {"words": [""]})
        assert e.value.status == 422
        with pytest.raises(ApiError) as e:
            await h.request("PUT", "/api/v1/banned-words", {"words": ["x"]})
        assert e.value.status == 403
    async with HostClient(a.base_url, token("ops", "admin")) as admin:
        assert (await admin.request("PUT", "/api/v1/banned-words", {"words": ["globalbad"]}))["words"] == ["globalbad"]
        await asyncio.sleep(0.1)
        assert (await say(on_b, "GlobalBad!"))["reason"] == "blocked"
        await admin.request("PUT", "/api/v1/banned-words", {"words": []})
    await on_b.close()


async def test_flood_thins_a_lagging_viewer_not_control(start_node: StartNode, live_room: str) -> None:
    node = await start_node(ws_sndbuf_bytes=4096, danmaku_lag_frames=2, danmaku_lag_items_per_tick=2,
                            send_queue_frames=100_000, droppable_queue_frames=20, slow_consumer_timeout_s=60,
                            danmaku_tick_s=0.02, **FAST)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", node.port))
    lagging = await ViewerClient.connect(node.ws_url, token("lagging"), live_room, sock=sock, max_queue=2)
    healthy = await join(node, "healthy", live_room)
    lagging.pause_reading()
    senders = [await join(node, f"s{i}", live_room) for i in range(6)]
    pad = "y" * 190
    for burst in range(100):
        await asyncio.gather(*(say(s, f"{pad} {burst}") for s in senders for _ in range(5)))
        await node.services.broker.publish(live_room, {"type": "room", "status": "live", "n": burst})
        await asyncio.sleep(0.01)
    assert len(await collect(healthy, 3000, timeout_s=30)) == 3000  # the healthy viewer misses nothing
    await asyncio.sleep(1.2)  # let likes/thinned flush to Redis
    assert node.services.fanout.items_thinned > 0
    thinned = int(await node.services.redis.get(node.services.keys.room(live_room).thinned) or 0)
    assert thinned == node.services.fanout.items_thinned
    lagging.resume_reading()
    controls = [(await lagging.wait_for("room", timeout_s=10))["n"] for _ in range(100)]
    assert controls == list(range(100))  # control messages all arrive, in order
    for c in (lagging, healthy, *senders):
        await c.close()


async def test_likes(start_node: StartNode, live_room: str) -> None:
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    va = await join(a, "fan-a", live_room)
    vb = await join(b, "fan-b", live_room)
    for _ in range(10):
        await va.send({"type": "like", "count": 3})
        await vb.send({"type": "like", "count": 2})
    for v in (va, vb):
        msg = await v.wait_for("likes", timeout_s=5, predicate=lambda m: m["total"] == 50)
        assert msg["total"] == 50
    later = await join(a, "late-fan", live_room)
    assert later.welcome["room"]["likes"] == 50
    with pytest.raises(ReplyError):
        await va.request({"type": "like", "count": 101})
    for c in (va, vb, later):
        await c.close()


async def test_word_list_fresh_after_the_node_resubscribes(start_node: StartNode, live_room: str) -> None:
    """A word added while a node held no viewer of the room is enforced when viewers come back."""
    a = await start_node(**FAST)
    b = await start_node(**FAST)
    a.services.broker._unsubscribe_delay_s = 0.05  # noqa: SLF001
    v = await join(a, "chatter", live_room)
    assert (await say(v, "counterfeit goods"))["ok"] is True  # node A caches the room's (empty) list
    await v.close()
    await asyncio.sleep(0.3)  # node A unsubscribed
    async with HostClient(b.base_url, token("host1", "host")) as h:
        await h.request("PATCH", f"/api/v1/rooms/{live_room}/banned-words", {"add": ["counterfeit"]})
    back = await join(a, "chatter", live_room)
    assert (await say(back, "counterfeit goods"))["reason"] == "blocked"
    await back.close()


async def test_after_a_new_redis_instance_ids_jump_and_deletes_and_counts_still_work(
    start_node: StartNode, live_room: str, key_prefix: str, redis_server: RedisProcess
) -> None:
    """A restart or failover (simulated: the recorded Redis instance is another one) makes the
    next id jump to the µs clock; deleting such an id and the room's danmaku count still work."""
    node = await start_node(**FAST)
    sender = await join(node, "sender", live_room)
    before = await say(sender, "before")
    r = Redis.from_url(redis_server.url, decode_responses=True)
    await r.hset(f"{key_prefix}{{r:{live_room}}}:meta", "dm_rid", "an-instance-that-is-gone")
    after = await say(sender, "after")
    assert after["id"] > 10**15 > before["id"]
    again = await say(sender, "again")
    assert again["id"] == after["id"] + 1  # dense again from there
    async with HostClient(node.base_url, token("host1", "host")) as h:
        await h.request("DELETE", f"/api/v1/rooms/{live_room}/danmaku/{after['id']}")
        await asyncio.sleep(1.2)
        m = await h.request("GET", f"/api/v1/rooms/{live_room}/metrics")
    assert m["danmaku"] == 3
    watcher = await join(node, "late", live_room, last_seq=before["id"])
    assert watcher.welcome["recovered"] is True and watcher.welcome["seq"] == again["id"]
    got = await collect(watcher, 1)
    assert [i["text"] for i in got] == ["again"]  # the deleted one is not replayed
    await r.aclose()
    for c in (sender, watcher):
        await c.close()


async def test_a_danmaku_id_that_is_a_unicode_digit_is_not_found(server: RunningNode, live_room: str) -> None:
    async with HostClient(server.base_url, token("host1", "host")) as h:
        for bad in ("%C2%B2", "%D9%A3", "1e5"):  # "²", Arabic-Indic 3: str.isdigit says yes, int() says no
            with pytest.raises(ApiError) as e:
                await h.request("DELETE", f"/api/v1/rooms/{live_room}/danmaku/{bad}")
            assert e.value.status == 404
