"""The HTTP API against a real Redis: rooms, products, and every error status of the contract."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from liveserver.sdk import ApiError, HostClient

from .conftest import RunningNode, StartNode, join, token


def rid() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


async def raw(node: RunningNode, method: str, path: str, *, tok: str | None = None, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict]:
    h = dict(headers or {})
    if tok:
        h["Authorization"] = f"Bearer {tok}"
    async with aiohttp.ClientSession() as s, s.request(method, node.base_url + path, data=data, headers=h) as r:
        body = await r.json(content_type=None)
        return r.status, body


async def test_room_lifecycle(server: RunningNode, host: HostClient) -> None:
    room_id = rid()
    created = await host.create_room("Autumn sale", room_id=room_id)
    assert created["room_id"] == room_id and created["status"] == "scheduled" and created["host"] == "host1"
    assert created["title"] == "Autumn sale"
    assert (await host.start_room(room_id))["status"] == "live"
    assert (await host.start_room(room_id))["status"] == "live"  # a retried start is harmless
    viewer = HostClient(server.base_url, token("v1"))
    got = await viewer.get_room(room_id)
    assert got["status"] == "live" and got["online"] == 0 and got["host"] == "host1"
    assert (await host.end_room(room_id))["status"] == "ended"
    assert (await host.end_room(room_id))["status"] == "ended"
    assert (await viewer.get_room(room_id))["status"] == "ended"
    await viewer.close()


async def test_generated_room_id_and_idempotent_create(host: HostClient) -> None:
    a = await host.create_room("No id given")
    assert len(a["room_id"]) == 12
    room_id = rid()
    first = await host.create_room("Same", room_id=room_id)
    again = await host.create_room("Same", room_id=room_id)  # a retry of the same create
    assert again["room_id"] == first["room_id"]


async def test_products_and_pin(server: RunningNode, host: HostClient) -> None:
    room_id = rid()
    await host.create_room("Pins", room_id=room_id)
    await host.start_room(room_id)
    product = await host.put_product(room_id, "sku-1", "茶具 Tea set", 12900)
    assert product == {"product_id": "sku-1", "title": "茶具 Tea set", "price_cents": 12900}
    viewer = await join(server, "viewer-1", room_id)
    pinned = await host.pin_product(room_id, "sku-1")
    assert pinned["pinned"] is True
    msg = await viewer.wait_for("product_pinned")
    assert msg == {"type": "product_pinned", "product_id": "sku-1", "title": "茶具 Tea set", "price_cents": 12900}
    late = await join(server, "viewer-2", room_id)
    assert late.welcome["pinned"]["product_id"] == "sku-1"
    await viewer.close()
    await late.close()


async def test_end_tells_viewers(server: RunningNode, host: HostClient, live_room: str) -> None:
    viewer = await join(server, "v-end", live_room)
    await host.end_room(live_room)
    assert (await viewer.wait_for("room"))["status"] == "ended"
    await viewer.close()


# ---------------------------------------------------------------------------- errors


async def test_400_bad_json(server: RunningNode) -> None:
    for data in (b"{not json", b"[1, 2]", b"", b"\xff\xfe"):
        status, body = await raw(server, "POST", "/api/v1/rooms", tok=token("h", "host"), data=data)
        assert status == 400, data
        assert body["error"]["code"] == "bad_request"


async def test_401_missing_and_bad_tokens(server: RunningNode) -> None:
    for tok, hdr in ((None, None), ("garbage", None), (token("h", "host", ttl_s=-10), None),
                     (None, {"Authorization": "Basic abc"})):
        status, body = await raw(server, "GET", "/api/v1/rooms/x", tok=tok, headers=hdr)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"


async def test_403_roles(server: RunningNode, host: HostClient, live_room: str) -> None:
    viewer = HostClient(server.base_url, token("v", "viewer"))
    other = HostClient(server.base_url, token("host2", "host"))
    admin = HostClient(server.base_url, token("ops", "admin"))
    with pytest.raises(ApiError) as e:
        await viewer.create_room("mine")
    assert e.value.status == 403 and e.value.code == "forbidden"
    for call in (other.start_room(live_room), other.end_room(live_room), other.pin_product(live_room, "x"),
                 other.put_product(live_room, "x", "t", 1), viewer.ban(live_room, "v2", 10)):
        with pytest.raises(ApiError) as e:
            await call
        assert e.value.status == 403
    assert (await admin.end_room(live_room))["status"] == "ended"  # an admin may run every room
    for c in (viewer, other, admin):
        await c.close()


async def test_404s(server: RunningNode, host: HostClient, live_room: str) -> None:
    for call in (host.get_room("nope"), host.start_room("nope"), host.pin_product(live_room, "missing"),
                 host.get_room("bad id!")):
        with pytest.raises(ApiError) as e:
            await call
        assert e.value.status == 404 and e.value.code == "not_found"
    status, body = await raw(server, "GET", "/api/v1/no/such/route")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_405_and_413(server: RunningNode) -> None:
    status, body = await raw(server, "DELETE", "/api/v1/time")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    status, body = await raw(server, "POST", "/api/v1/rooms", tok=token("h", "host"), data=b"{" + b" " * 70000 + b"}")
    assert status == 413 and body["error"]["code"] == "too_large"


async def test_409_conflicts(host: HostClient) -> None:
    room_id = rid()
    await host.create_room("One", room_id=room_id)
    with pytest.raises(ApiError) as e:
        await host.create_room("Another title", room_id=room_id)
    assert e.value.status == 409 and e.value.code == "conflict"
    await host.end_room(room_id)
    for call in (host.start_room(room_id), host.put_product(room_id, "p", "t", 1)):
        with pytest.raises(ApiError) as e:
            await call
        assert e.value.status == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": 5}, "title"),
        ({"title": "x" * 101}, "title"),
        ({}, "title"),
        ({"title": "ok", "room_id": "has space"}, "room_id"),
        ({"title": "ok", "room_id": "x" * 65}, "room_id"),
    ],
)
async def test_422_room_fields(host: HostClient, body: dict, field: str) -> None:
    with pytest.raises(ApiError) as e:
        await host.request("POST", "/api/v1/rooms", body)
    assert e.value.status == 422 and e.value.code == "invalid" and e.value.field == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "t", "price_cents": -1}, "price_cents"),
        ({"title": "t", "price_cents": 1.5}, "price_cents"),
        ({"title": "t", "price_cents": True}, "price_cents"),
        ({"title": "t", "price_cents": "100"}, "price_cents"),
        ({"price_cents": 100}, "title"),
    ],
)
async def test_422_product_fields(host: HostClient, live_room: str, body: dict, field: str) -> None:
    with pytest.raises(ApiError) as e:
        await host.request("PUT", f"/api/v1/rooms/{live_room}/products/p1", body)
    assert e.value.status == 422 and e.value.field == field


async def test_422_product_id(host: HostClient, live_room: str) -> None:
    with pytest.raises(ApiError) as e:
        await host.request("PUT", f"/api/v1/rooms/{live_room}/products/bad%20id", {"title": "t", "price_cents": 1})
    assert e.value.status == 422 and e.value.field == "product_id"


async def test_429_rate_limit_with_retry_after(start_node: StartNode) -> None:
    node = await start_node(http_write_rate=2.0, http_write_burst=3)
    async with HostClient(node.base_url, token("busy-host", "host")) as h:
        statuses = []
        for _ in range(8):
            try:
                await h.create_room("spam")
                statuses.append(201)
            except ApiError as e:
                statuses.append(e.status)
                assert e.code == "rate_limited"
        assert statuses[:3] == [201, 201, 201]
        assert 429 in statuses
    async with aiohttp.ClientSession() as s, s.post(
        node.base_url + "/api/v1/rooms", json={"title": "x"}, headers={"Authorization": f"Bearer {token('busy-host', 'host')}"}
    ) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    # admins (the platform's services) are not limited
    async with HostClient(node.base_url, token("ops", "admin")) as admin:
        for _ in range(6):
            await admin.create_room("ops room")


async def test_ban_closes_and_refuses(server: RunningNode, host: HostClient, live_room: str) -> None:
    from liveserver.sdk import ConnectionClosed

    viewer = await join(server, "troll", live_room)
    assert (await host.ban(live_room, "troll", 60))["banned_until_ms"] > 0
    assert await viewer.wait_closed() == 4003
    with pytest.raises(ConnectionClosed) as e:
        await join(server, "troll", live_room)
    assert e.value.code == 4003
    with pytest.raises(ApiError) as e2:
        await host.ban(live_room, "troll", 0)
    assert e2.value.status == 422 and e2.value.field == "seconds"


async def test_time_healthz_metrics(server: RunningNode) -> None:
    async with HostClient(server.base_url) as anon:
        t = await anon.server_time_ms()
        assert abs(t - server.services.clock.now_ms()) < 5000
        assert await anon.healthz() == {"status": "ok"}
    async with aiohttp.ClientSession() as s, s.get(server.base_url + "/metrics") as r:
        text = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert "liveserver_connections" in text and "liveserver_http_requests_total" in text


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_metrics_time_lua_calls_count_redis_errors_and_watch_the_loop(
    server: RunningNode, host: HostClient, live_room: str
) -> None:
    await host.put_product(live_room, "p1", "Tea", 100)
    await host.pin_product(live_room, "p1")
    # a key of the wrong type makes Redis refuse the pin script: a Redis error, not a 500
    other = await host.create_room("Broken", room_id=f"broken-{live_room}")
    await host.put_product(other["room_id"], "p1", "Tea", 100)
    await server.services.redis.delete(server.services.keys.room(other["room_id"]).products)
    await server.services.redis.set(server.services.keys.room(other["room_id"]).products, "not a hash")
    with pytest.raises(ApiError) as e:
        await host.pin_product(other["room_id"], "p1")
    assert e.value.status == 503
    await asyncio.sleep(0.6)  # two loop-lag samples at least
    async with aiohttp.ClientSession() as s, s.get(server.base_url + "/metrics") as r:
        m = _samples(await r.text())
    assert m[("liveserver_lua_call_seconds_count", frozenset({("script", "room_pin")}))] == 2
    assert m[("liveserver_lua_call_seconds_sum", frozenset({("script", "room_pin")}))] > 0
    assert m[("liveserver_lua_call_seconds_count", frozenset({("script", "room_create")}))] >= 2
    assert m[("liveserver_redis_errors_total", frozenset({("where", "lua")}))] == 1
    assert m[("liveserver_redis_errors_total", frozenset({("where", "http")}))] == 1
    assert m[("liveserver_event_loop_lag_seconds_count", frozenset())] >= 2
    assert 0 <= m[("liveserver_event_loop_lag_last_seconds", frozenset())] < 1


async def test_pages_are_served_only_when_turned_on(start_node: StartNode) -> None:
    off = await start_node()
    status, body = await raw(off, "GET", "/app/viewer.html")
    assert status == 404 and body["error"]["code"] == "not_found"
    on = await start_node(serve_pages=True)
    async with aiohttp.ClientSession() as s:
        async with s.get(on.base_url + "/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/app/"
        async with s.get(on.base_url + "/app/viewer.html") as r:
            assert r.status == 200 and "data-testid=\"grab\"" in await r.text()
        async with s.get(on.base_url + "/app/../../pyproject.toml") as r:
            assert r.status in (403, 404)


async def test_dev_tokens_only_in_dev(start_node: StartNode) -> None:
    prod = await start_node()
    status, body = await raw(prod, "POST", "/api/v1/dev/tokens", data=b'{"sub": "a"}')
    assert status == 403
    dev = await start_node(dev=True)
    status, body = await raw(dev, "POST", "/api/v1/dev/tokens", data=b'{"sub": "alice", "role": "host", "name": "Alice"}')
    assert status == 201 and body["role"] == "host"
    async with HostClient(dev.base_url, body["token"]) as alice:
        assert (await alice.create_room("Alice's room"))["host"] == "alice"
    status, body = await raw(dev, "POST", "/api/v1/dev/tokens", data=b'{"sub": "a", "role": "king"}')
    assert status == 422 and body["error"]["field"] == "role"


async def test_no_500_on_garbage_requests(server: RunningNode, live_room: str) -> None:
    """A spread of hostile requests: every answer is a 4xx JSON error, never a 5xx."""
    tok = token("host1", "host")
    cases = [
        ("POST", "/api/v1/rooms", b'{"title": {"a": 1}}'),
        ("POST", "/api/v1/rooms", b'{"title": "t", "room_id": 12}'),
        ("POST", "/api/v1/rooms", b"1e999999"),
        ("POST", "/api/v1/rooms", b'"string"'),
        ("PUT", f"/api/v1/rooms/{live_room}/products/p", b'{"title": "t", "price_cents": 1e400}'),
        ("PUT", f"/api/v1/rooms/{live_room}/products/p", b'{"title": "t", "price_cents": 99999999999999999999999}'),
        ("POST", f"/api/v1/rooms/{live_room}/bans", b'{"user": ["x"], "seconds": 1}'),
        ("POST", "/api/v1/rooms/%00/start", b""),
        ("GET", "/api/v1/rooms/" + "x" * 5000, b""),
        ("GET", "/ws", b""),
        ("PUT", f"/api/v1/rooms/{live_room}/products/p", b"[" * 50000),
        ("POST", "/api/v1/rooms", b'{"a":' * 20000),
    ]
    results = await asyncio.gather(*(raw(server, m, p, tok=tok, data=d) for m, p, d in cases))
    for (m, p, _), (status, body) in zip(cases, results, strict=True):
        assert 400 <= status < 500, (m, p, status, body)
        assert "code" in body["error"], (m, p)
