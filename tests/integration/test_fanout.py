"""Fan-out across nodes through Redis pub/sub, and the slow-consumer policy."""

from __future__ import annotations

import asyncio
import socket

from liveserver.sdk import JSON, MSGPACK, HostClient, ViewerClient

from .conftest import StartNode, join, token


async def test_two_nodes_share_a_room(start_node: StartNode, live_room: str) -> None:
    a = await start_node()
    b = await start_node()
    on_a = await join(a, "ann", live_room)
    on_b = await join(b, "ben", live_room, protocol=MSGPACK)
    async with HostClient(a.base_url, token("host1", "host")) as h:
        await h.put_product(live_room, "sku", "Shared product", 500)
        await h.pin_product(live_room, "sku")  # through node A
        for v in (on_a, on_b):
            assert (await v.wait_for("product_pinned"))["product_id"] == "sku"
        await h.end_room(live_room)
        for v in (on_a, on_b):
            assert (await v.wait_for("room"))["status"] == "ended"
    # presence counts the users of both nodes, on both nodes
    for node in (a, b):
        async with HostClient(node.base_url, token("x")) as c:
            assert (await c.get_room(live_room))["online"] == 2
    await on_a.close()
    await on_b.close()


async def test_slow_consumer_closed_others_get_everything(start_node: StartNode, live_room: str) -> None:
    """One viewer stops reading; it is closed with 4008 while 200 others receive every message in order."""
    node = await start_node(ws_sndbuf_bytes=4096, send_queue_frames=64, droppable_queue_frames=32)
    viewers = await asyncio.gather(*(join(node, f"v{i}", live_room) for i in range(200)))

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", node.port))
    slow = await ViewerClient.connect(node.ws_url, token("slow"), live_room, protocol=JSON, sock=sock, max_queue=4)
    slow.pause_reading()

    n_messages = 150
    title = "x" * 4000  # large control messages fill the slow socket's buffers quickly
    for i in range(n_messages):
        await node.services.broker.publish(live_room, {"type": "product_pinned", "product_id": f"p{i}", "title": title, "price_cents": i})

    async def collect(v: ViewerClient) -> list[int]:
        got = []
        while len(got) < n_messages:
            m = await v.wait_for("product_pinned", timeout_s=20)
            got.append(m["price_cents"])
        return got

    results = await asyncio.gather(*(collect(v) for v in viewers))
    assert all(r == list(range(n_messages)) for r in results)
    assert node.services.hub.stats.slow_closed == 1
    slow.resume_reading()
    assert await slow.wait_closed(timeout_s=10) == 4008
    for v in viewers:
        await v.close()


async def test_droppable_frames_are_thinned_not_control(start_node: StartNode, live_room: str) -> None:
    """A viewer that cannot keep up loses presence/likes frames (counted), never control frames."""
    node = await start_node(ws_sndbuf_bytes=4096, send_queue_frames=10_000, droppable_queue_frames=8,
                            slow_consumer_timeout_s=60)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", node.port))
    lagging = await ViewerClient.connect(node.ws_url, token("lag"), live_room, sock=sock, max_queue=4)
    lagging.pause_reading()
    pad = "y" * 2000
    for i in range(200):
        await node.services.broker.publish(live_room, {"type": "likes", "total": i, "pad": pad})
        if i % 20 == 0:
            await node.services.broker.publish(live_room, {"type": "room", "status": "live", "n": i})
    await asyncio.sleep(0.3)
    assert node.services.hub.stats.frames_dropped > 0
    lagging.resume_reading()
    controls = [(await lagging.wait_for("room", timeout_s=10))["n"] for _ in range(10)]
    assert controls == list(range(0, 200, 20))
    await lagging.close()
