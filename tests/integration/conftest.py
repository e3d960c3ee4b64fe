"""Fixtures that run liveserver nodes in-process against the session's real Redis."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from liveserver.app import create_app
from liveserver.auth import mint_token
from liveserver.gateway import Gateway
from liveserver.keys import GATEWAY, SERVICES
from liveserver.sdk import JSON, HostClient, ViewerClient
from liveserver.services import Services
from liveserver.serving import start_site
from liveserver.settings import Settings

from ..conftest import SECRET, RedisProcess


class LoopbackUrls:
    """The HTTP and WebSocket URLs of a server on 127.0.0.1 at ``self.port``."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@dataclass
class RunningNode(LoopbackUrls):
    """One server node on 127.0.0.1 with a free port."""

    runner: web.AppRunner
    port: int
    settings: Settings

    @property
    def services(self) -> Services:
        return self.runner.app[SERVICES]

    @property
    def gateway(self) -> Gateway:
        return self.runner.app[GATEWAY]

    async def stop(self) -> None:
        await self.runner.cleanup()


StartNode = Callable[..., Awaitable[RunningNode]]


def _await_chain(coro: Any) -> list[str]:
    """Where a suspended coroutine waits, innermost last (Task.print_stack shows only the top)."""
    chain = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return chain


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def base_settings(redis_server: RedisProcess, key_prefix: str) -> Settings:
    return Settings(secret=SECRET, redis_url=redis_server.url, key_prefix=key_prefix)


@pytest.fixture
async def start_node(base_settings: Settings) -> AsyncIterator[StartNode]:
    """``await start_node(**settings_overrides)``: a node sharing the test's Redis and key prefix."""
    running: list[RunningNode] = []

    async def start(**overrides: Any) -> RunningNode:
        settings = base_settings.replace(**overrides) if overrides else base_settings
        runner = web.AppRunner(create_app(settings), shutdown_timeout=5, handle_signals=False,
                               keepalive_timeout=settings.http_keepalive_s)
        await runner.setup()
        sock = socket.create_server(("127.0.0.1", 0), backlog=4096)
        await start_site(runner, sock, settings, runner.app[SERVICES].guard)  # the CLI's site: guard, TLS
        port = sock.getsockname()[1]
        runner.app[SERVICES].video.advertise(f"http://127.0.0.1:{port}")  # as the CLI does once it listens
        node = RunningNode(runner, port, settings)
        running.append(node)
        return node

    yield start
    for node in reversed(running):
        stopping = asyncio.ensure_future(node.stop())
        done, _ = await asyncio.wait({stopping}, timeout=15)
        if not done:  # dump every task where it waits, then give up on this node
            stacks = []
            for task in asyncio.all_tasks():
                stacks.append(f"{task.get_name()}: {' <- '.join(_await_chain(task.get_coro()))}")
            own = [f"{t.get_name()} done={t.done()} cancelling={t.cancelling()}: "
                   f"{' <- '.join(_await_chain(t.get_coro()))}" for t in node.services.loops.tasks]
            stacks.append("the stuck node's tasks:\n" + "\n".join(own))
            stopping.cancel()
            pytest.fail("a node did not stop within 15 s; tasks:\n" + "\n".join(stacks))
        stopping.result()


@pytest.fixture
async def server(start_node: StartNode) -> RunningNode:
    return await start_node()


def token(sub: str, role: str = "viewer", **kw: Any) -> str:
    return mint_token(SECRET, sub, role, **kw)


@pytest.fixture
async def host(server: RunningNode) -> AsyncIterator[HostClient]:
    async with HostClient(server.base_url, token("host1", "host")) as client:
        yield client


@pytest.fixture
async def live_room(host: HostClient) -> str:
    room = await host.create_room("Evening sale", room_id=f"room-{uuid.uuid4().hex[:8]}")
    await host.start_room(room["room_id"])
    return room["room_id"]


async def join(node: RunningNode, user: str, room: str, protocol: str = JSON, **kw: Any) -> ViewerClient:
    return await ViewerClient.connect(node.ws_url, token(user), room, protocol=protocol, **kw)
