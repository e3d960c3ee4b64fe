"""The /ws gateway: handshake, both protocols, ping, close codes, malformed input."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import connect

from liveserver.sdk import JSON, MSGPACK, ConnectionClosed, ReplyError, ViewerClient

from .conftest import RunningNode, StartNode, join, token


@pytest.mark.parametrize("protocol", [JSON, MSGPACK])
async def test_hello_welcome_ping(server: RunningNode, live_room: str, protocol: str) -> None:
    v = await ViewerClient.connect(server.ws_url, token("alice", name="Alice 爱丽丝"), live_room, protocol=protocol)
    w = v.welcome
    assert w["type"] == "welcome" and w["user"] == "alice" and w["role"] == "viewer" and w["name"] == "Alice 爱丽丝"
    assert w["room"] == {"room_id": live_room, "title": "Evening sale", "host": "host1", "status": "live", "online": 1,
                         "likes": 0}
    assert isinstance(w["server_time_ms"], int) and w["seq"] == 0 and w["drops"] == []
    pong = await v.request({"type": "ping", "t": 42})
    assert pong["t"] == 42 and pong["req_id"] and abs(pong["server_time_ms"] - w["server_time_ms"]) < 5000
    await v.close()


async def test_no_subprotocol_means_json(server: RunningNode, live_room: str) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token("x"), "room": live_room, "req_id": "h"}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["req_id"] == "h"


async def test_hello_timeout_4001(start_node: StartNode, live_room: str) -> None:
    node = await start_node(hello_timeout_s=0.3)
    async with connect(node.ws_url) as ws:
        err = json.loads(await ws.recv())
        assert err["code"] == "unauthorized"
        with pytest.raises(Exception):
            await ws.recv()
        assert ws.close_code == 4001


@pytest.mark.parametrize(
    "first",
    [
        {"type": "ping", "t": 1},
        {"type": "hello", "token": "not-a-jwt", "room": "r"},
        {"type": "hello", "room": "r"},
        "not json at all",
    ],
)
async def test_bad_first_message_4001(server: RunningNode, live_room: str, first: object) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        err = json.loads(await ws.recv())
        assert err["type"] == "error"
        with pytest.raises(Exception):
            await ws.recv()
        assert ws.close_code == 4001


async def test_expired_token_4001(server: RunningNode, live_room: str) -> None:
    with pytest.raises(ConnectionClosed) as e:
        await ViewerClient.connect(server.ws_url, token("late", ttl_s=-5), live_room)
    assert e.value.code == 4001 and "expired" in e.value.reason


async def test_unknown_room_4004(server: RunningNode) -> None:
    with pytest.raises(ConnectionClosed) as e:
        await join(server, "v", "no-such-room")
    assert e.value.code == 4004


async def test_too_many_connections_4029(start_node: StartNode, host: object, live_room: str) -> None:
    node = await start_node(max_connections_per_user=2)
    a = await join(node, "greedy", live_room)
    b = await join(node, "greedy", live_room)
    with pytest.raises(ConnectionClosed) as e:
        await join(node, "greedy", live_room)
    assert e.value.code == 4029
    other = await join(node, "modest", live_room)  # others are unaffected
    for c in (a, b, other):
        await c.close()


async def test_server_full_4029(start_node: StartNode, live_room: str) -> None:
    node = await start_node(max_connections=1)
    a = await join(node, "first", live_room)
    with pytest.raises(ConnectionClosed) as e:
        await join(node, "second", live_room)
    assert e.value.code == 4029
    await a.close()


@pytest.mark.parametrize("protocol", [JSON, MSGPACK])
async def test_malformed_frames_get_errors_then_4008(server: RunningNode, live_room: str, protocol: str) -> None:
    v = await join(server, "fuzzer", live_room, protocol=protocol)
    wrong_kind = b"\x00\x01" if protocol == JSON else "text on a binary protocol"
    bad = [wrong_kind, "{", b"\xc1", json.dumps([1, 2]), msgpack.packb([1])]
    codes = []
    for frame in bad[:3]:
        await v.send_raw(frame)
        codes.append((await v.wait_for("error"))["code"])
    assert codes[0] == "bad_frame"
    # unknown types and invalid fields answer with the req_id echoed
    with pytest.raises(ReplyError) as e:
        await v.request({"type": "teleport"})
    assert e.value.code == "unknown_type" and e.value.frame["req_id"]
    with pytest.raises(ReplyError) as e:
        await v.request({"type": "like", "count": 1000})
    assert e.value.code == "invalid" and e.value.frame["field"] == "count"
    # the connection still works between bad frames
    assert (await v.ping())["type"] == "pong"
    for _ in range(20):
        await v.send_raw(wrong_kind)
    assert await v.wait_closed() == 4008


async def test_oversized_frames(server: RunningNode, live_room: str) -> None:
    v = await join(server, "big", live_room)
    await v.send({"type": "danmaku", "text": "x" * 5000})  # over max_frame_bytes: an error frame
    assert (await v.wait_for("error"))["code"] == "frame_too_large"
    assert (await v.ping())["type"] == "pong"
    await v.send_raw("y" * 70000)  # over hard_frame_bytes: closed at once
    assert await v.wait_closed() == 4008


async def test_message_rate_limit(start_node: StartNode, live_room: str) -> None:
    node = await start_node(client_msg_rate=5.0, client_msg_burst=5, bad_frame_limit=100)
    v = await join(node, "chatty", live_room)
    for i in range(12):
        await v.send({"type": "ping", "t": i})
    replies = [await v.recv() for _ in range(12)]
    kinds = [(r["type"], r.get("code")) for r in replies]
    assert kinds[:5] == [("pong", None)] * 5
    assert ("error", "rate_limited") in kinds
    await v.close()


async def test_second_hello_and_unsupported(server: RunningNode, live_room: str) -> None:
    v = await join(server, "twice", live_room)
    with pytest.raises(ReplyError) as e:
        await v.request({"type": "hello", "token": token("twice"), "room": live_room})
    assert e.value.code == "already_joined"
    await v.close()


async def test_not_a_websocket_request(server: RunningNode) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(server.ws_url.replace("ws://", "http://")) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "bad_request"


async def test_welcome_is_first_and_order_kept(server: RunningNode, live_room: str) -> None:
    """Pins published while viewers join arrive after their welcome, in publish order."""
    from liveserver.sdk import HostClient

    async with HostClient(server.base_url, token("host1", "host")) as h:
        for i in range(5):
            await h.put_product(live_room, f"p{i}", f"Product {i}", 100 + i)

        async def pins() -> None:
            for i in range(5):
                await h.pin_product(live_room, f"p{i}")

        viewers_task = asyncio.gather(*(join(server, f"v{i}", live_room) for i in range(20)))
        await pins()
        viewers = await viewers_task
        await h.put_product(live_room, "p9", "Sentinel", 1)
        await h.pin_product(live_room, "p9")
        for v in viewers:
            got = []
            while not got or got[-1] != 9:
                m = await v.wait_for("product_pinned")
                got.append(int(m["product_id"][1:]))
            assert got == sorted(got), got  # a suffix of the publish order, never reordered
        for v in viewers:
            await v.close()


async def test_concurrent_hellos_cannot_pass_the_user_limit(start_node: StartNode, live_room: str) -> None:
    node = await start_node(max_connections_per_user=5)
    results = await asyncio.gather(*(join(node, "swarm", live_room) for _ in range(20)), return_exceptions=True)
    accepted = [r for r in results if isinstance(r, ViewerClient)]
    refused = [r for r in results if isinstance(r, ConnectionClosed)]
    assert len(accepted) == 5 and len(refused) == 15 and all(r.code == 4029 for r in refused)
    for v in accepted:
        await v.close()


async def test_drain_answers_the_command_in_hand_then_1012(server: RunningNode, live_room: str) -> None:
    """SIGTERM while a command is being handled: its reply is sent, then close 1012."""
    from liveserver.wire import Like

    gateway = server.gateway
    started = asyncio.Event()

    async def slow_command(session: Any, msg: Like) -> None:
        started.set()
        await asyncio.sleep(0.3)
        session.reply({"type": "ack", "ok": True, "slow": True}, msg.req_id)

    gateway.commands[Like] = slow_command
    v = await join(server, "patient", live_room)
    reply = asyncio.create_task(v.request({"type": "like", "count": 1}, timeout_s=5))
    await started.wait()
    await gateway.drain()
    assert (await reply)["slow"] is True
    assert await v.wait_closed() == 1012


async def test_drain_closes_sockets_that_never_said_hello(server: RunningNode) -> None:
    async with connect(server.ws_url) as ws:
        await asyncio.sleep(0.05)
        await server.gateway.drain()
        with pytest.raises(Exception):
            await ws.recv()
        assert ws.close_code == 1012


async def test_invalid_utf8_in_a_text_frame_closes_1007(server: RunningNode, live_room: str) -> None:
    """RFC 6455 section 8.1: a text frame that is not UTF-8 fails the connection with 1007."""
    import aiohttp

    async with aiohttp.ClientSession() as s, s.ws_connect(server.ws_url, protocols=[JSON]) as ws:
        await ws.send_str(json.dumps({"type": "hello", "token": token("u8"), "room": live_room}))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.send_frame(b'{"type":"danmaku","text":"\xff\xfe"}', aiohttp.WSMsgType.TEXT)
        while (await ws.receive(timeout=5)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        assert ws.close_code == 1007


@pytest.mark.parametrize(
    "hello",
    [
        '{"type":"hello","token":"abc\\ud800def","room":"ROOM"}',
        '{"type":"hello","token":"TOKEN","room":"ROOM","req_id":"\\udfff"}',
        '{"type":"ping","t":"\\ud800"}',
    ],
)
async def test_a_lone_surrogate_in_the_hello_is_4001_with_an_error_frame(
    server: RunningNode, live_room: str, hello: str
) -> None:
    import aiohttp

    text = hello.replace("ROOM", live_room).replace("TOKEN", token("s1"))
    async with aiohttp.ClientSession() as s, s.ws_connect(server.ws_url, protocols=[JSON]) as ws:
        await ws.send_str(text)
        err = await ws.receive_json(timeout=5)
        assert err["type"] == "error" and err["code"] == "invalid" and "req_id" not in err
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4001


async def test_lone_surrogates_after_the_hello_get_error_frames_and_the_session_lives(
    server: RunningNode, live_room: str
) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.ws_connect(server.ws_url, protocols=[JSON]) as ws:
        await ws.send_str(json.dumps({"type": "hello", "token": token("s2"), "room": live_room}))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        for poisoned in ('{"type":"ping","t":"\\ud800","req_id":"p1"}', '{"type":"danmaku","text":"\\udc00","req_id":"p2"}',
                         '{"type":"grab","sale_id":"s","req_id":"\\ud800"}', '{"type":"ping","req_id":"\\ud800"}'):
            await ws.send_str(poisoned)
            err = await ws.receive_json(timeout=5)
            assert err["type"] == "error" and err["code"] == "invalid", err
        await ws.send_str('{"type":"ping","t":1,"req_id":"ok"}')
        assert (await ws.receive_json(timeout=5))["type"] == "pong"


async def test_a_bug_after_the_join_is_an_error_frame_and_1011_not_a_silent_1000(
    server: RunningNode, live_room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import liveserver.gateway as gateway

    real = gateway.parse_client_message

    def buggy(obj: dict[str, Any]) -> Any:
        if obj.get("type") == "ping" and obj.get("t") == "boom":
            raise RuntimeError("a bug outside every guard")
        return real(obj)

    monkeypatch.setattr(gateway, "parse_client_message", buggy)
    v = await join(server, "bug", live_room)
    await v.send({"type": "ping", "t": "boom"})
    err = await v.wait_for("error", timeout_s=5)
    assert err["code"] == "internal"
    assert await v.wait_closed(timeout_s=5) == 1011
