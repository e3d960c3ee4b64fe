"""Presence: distinct users across nodes, pushes, and a node that dies without goodbye."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from liveserver.sdk import HostClient, ViewerClient

from ..conftest import SECRET, RedisProcess, free_port
from .conftest import RunningNode, StartNode, join, token


async def online(node: RunningNode, room: str) -> int:
    async with HostClient(node.base_url, token("reader")) as c:
        return (await c.get_room(room))["online"]


async def test_hosts_and_admins_are_not_audience(start_node: StartNode, live_room: str) -> None:
    """The host's dashboard and an admin's console are connections of the room, not viewers: they
    are not in ``online``, UV, PV or watch time, on any node."""
    a = await start_node()
    b = await start_node()
    dashboard = await ViewerClient.connect(a.ws_url, token("host1", "host"), live_room)
    console = await ViewerClient.connect(b.ws_url, token("ops", "admin"), live_room)
    other_host = await ViewerClient.connect(b.ws_url, token("host2", "host"), live_room)  # another room's host watching
    await asyncio.sleep(0.2)
    assert dashboard.welcome["room"]["online"] == 0
    assert await online(a, live_room) == 1 and await online(b, live_room) == 1  # only host2, as a viewer
    viewer = await join(b, "fan", live_room)
    assert viewer.welcome["room"]["online"] == 2
    await asyncio.sleep(1.3)  # the metrics tally is written once a second
    async with HostClient(a.base_url, token("host1", "host")) as h:
        m = await h.request("GET", f"/api/v1/rooms/{live_room}/metrics")
    assert m["online"] == 2 and m["uv"] == 2 and m["pv"] == 2
    for c in (dashboard, console, other_host, viewer):
        await c.close()


async def test_distinct_users_and_leaves(start_node: StartNode, live_room: str) -> None:
    a = await start_node()
    b = await start_node()
    alice_a = await join(a, "alice", live_room)
    alice_b = await join(b, "alice", live_room)  # the same user on two nodes counts once
    alice_a2 = await join(a, "alice", live_room)  # and twice on one node, once
    bob = await join(b, "bob", live_room)
    assert await online(a, live_room) == 2
    await alice_a.close()
    await alice_b.close()
    await asyncio.sleep(0.1)
    assert await online(b, live_room) == 2  # alice still holds a connection on node A
    await alice_a2.close()
    await asyncio.sleep(0.1)
    assert await online(a, live_room) == 1
    await bob.close()
    await asyncio.sleep(0.1)
    assert await online(b, live_room) == 0


async def test_presence_pushed_at_most_once_a_second(server: RunningNode, live_room: str) -> None:
    watcher = await join(server, "watcher", live_room)
    others = [await join(server, f"o{i}", live_room) for i in range(5)]
    first = await watcher.wait_for("presence", timeout_s=3, predicate=lambda m: m["online"] == 6)
    assert first["online"] == 6
    t0 = time.monotonic()
    for o in others[:3]:
        await o.close()
    second = await watcher.wait_for("presence", timeout_s=3, predicate=lambda m: m["online"] == 3)
    assert second["online"] == 3 and time.monotonic() - t0 < 2.0
    # no presence frame while nothing changes
    await asyncio.sleep(1.2)
    pending = [m for m in list(watcher.events._queue) if isinstance(m, dict) and m.get("type") == "presence"]  # noqa: SLF001
    assert all(m["online"] == 3 for m in pending)
    for o in others[3:]:
        await o.close()
    await watcher.close()


async def test_paused_node_revives_its_members(start_node: StartNode, live_room: str) -> None:
    """A node reaped while paused (its heartbeat late) counts its viewers again on its next beat."""
    a = await start_node()
    b = await start_node()
    v = await join(a, "patient", live_room)
    await join(b, "other", live_room)
    node_a = a.services
    keys = node_a.keys.room(live_room)
    # simulate a pause: a's heartbeat expired long ago, and b reaps it
    await node_a.redis.zadd(keys.nodes, {node_a.node_id: 0})
    assert await online(b, live_room) == 1
    await node_a.presence.beat([live_room])
    assert await online(b, live_room) == 2
    await v.close()


async def test_killed_node_leaves_within_2s(start_node: StartNode, redis_server: RedisProcess,
                                            key_prefix: str, live_room: str) -> None:
    survivor = await start_node()
    port = free_port()
    env = {**os.environ, "LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": key_prefix}
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveserver", "serve", "--port", str(port), "--redis-url", redis_server.url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        for _ in range(100):
            try:
                doomed = [await ViewerClient.connect(url, token(f"d{i}"), live_room) for i in range(3)]
                break
            except OSError:
                await asyncio.sleep(0.1)
        watcher = await join(survivor, "watcher", live_room)
        await watcher.wait_for("presence", timeout_s=3, predicate=lambda m: m["online"] == 4)
        assert await online(survivor, live_room) == 4
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        pushed = await watcher.wait_for("presence", timeout_s=5, predicate=lambda m: m["online"] == 1)
        elapsed = time.monotonic() - killed
        assert pushed["online"] == 1
        assert elapsed <= 2.0, f"presence took {elapsed:.2f} s to drop the dead node"
        assert await online(survivor, live_room) == 1
        for d in doomed:
            await d.close()
        await watcher.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_leave_and_rejoin_keeps_the_subscription(start_node: StartNode, live_room: str) -> None:
    """The only viewer on a node refreshes the page: the room stays subscribed for the new socket."""
    node = await start_node()
    node.services.broker._unsubscribe_delay_s = 0.05  # noqa: SLF001 - make the release timer fire during the test
    first = await join(node, "refresher", live_room)
    await first.close()
    second = await join(node, "refresher", live_room)
    await asyncio.sleep(0.3)  # past the release timer
    async with HostClient(node.base_url, token("host1", "host")) as h:
        await h.put_product(live_room, "p", "P", 1)
        await h.pin_product(live_room, "p")
    assert (await second.wait_for("product_pinned", timeout_s=3))["product_id"] == "p"
    assert await online(node, live_room) == 1
    await second.close()


async def test_leave_overtaking_a_rejoin_keeps_the_count(start_node: StartNode, live_room: str) -> None:
    """A user closes and reopens at once, many times: online ends at 1, never 0."""
    node = await start_node()
    conns = [await join(node, "flapper", live_room)]
    for _ in range(10):
        closing = asyncio.create_task(conns[-1].close())
        conns.append(await join(node, "flapper", live_room))
        await closing
    await asyncio.sleep(0.2)
    assert await online(node, live_room) == 1
    await conns[-1].close()
    await asyncio.sleep(0.2)
    assert await online(node, live_room) == 0
