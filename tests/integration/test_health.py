"""/healthz says more than PING: the scripts, the subscriber and the background loops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from liveserver.sdk import HostClient, ViewerClient

from ..conftest import RedisProcess, start_redis
from .conftest import RunningNode, StartNode, token


async def _health(node: RunningNode) -> tuple[int, dict]:
    async with HostClient(node.base_url) as anon, anon._session.get(f"{node.base_url}/healthz?verbose=1") as r:  # noqa: SLF001
        return r.status, await r.json()


async def _until(node: RunningNode, status: int, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        got, body = await _health(node)
        if got == status or time.monotonic() > deadline:
            assert got == status, body
            return body
        await asyncio.sleep(0.05)


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    r = start_redis()
    yield r
    r.stop()


async def test_healthy_node_answers_the_contract_body(server: RunningNode) -> None:
    async with HostClient(server.base_url) as anon:
        assert await anon.healthz() == {"status": "ok"}
    status, body = await _health(server)
    assert status == 200 and body["checks"] == {"redis": "ok", "scripts": "ok", "subscriber": "ok", "loops": "ok"}


async def test_a_dead_loop_fails_healthz_until_it_runs_again(server: RunningNode) -> None:
    likes = server.services.likes
    real_flush = likes.flush

    async def broken() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    likes.flush = broken  # type: ignore[method-assign]
    body = await _until(server, 503)
    assert body["status"] == "unavailable" and "likes" in body["checks"]["loops"]
    assert body["checks"]["redis"] == "ok"
    likes.flush = real_flush  # type: ignore[method-assign]
    await _until(server, 200, timeout_s=10)  # restarted by the supervisor after its backoff
    assert server.services.loops.failures()["likes"] >= 1


async def test_scripts_that_cannot_run_fail_healthz_while_ping_answers(start_node: StartNode, own_redis: RedisProcess) -> None:
    """CLIENT PAUSE WRITE blocks every script but not PING: the pitfall of a PING-only check."""
    node = await start_node(redis_url=own_redis.url)
    await _until(node, 200)
    admin = redis.Redis.from_url(own_redis.url)
    try:
        admin.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
        body = await _until(node, 503)
        assert body["checks"]["redis"] == "ok" and body["checks"]["scripts"] != "ok"
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    await _until(node, 200)


async def test_a_dead_subscriber_fails_healthz(server: RunningNode, live_room: str) -> None:
    viewer = await ViewerClient.connect(server.ws_url, token("v"), live_room)
    reader = server.services.broker._reader  # noqa: SLF001
    assert reader is not None
    reader.cancel()
    body = await _until(server, 503)
    assert "subscriber" in body["checks"]["subscriber"] or "reader" in body["checks"]["subscriber"]
    await viewer.close()
