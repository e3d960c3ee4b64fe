"""Cross-node delivery: Redis pub/sub, one channel per room.

Every node publishes a room's events to the room's channel and delivers what
it receives from the channels of the rooms it holds to its local hub.  A
single node uses the same path; there is no special case.

Payloads are msgpack maps: the receiving hub reuses the payload as the
binary frame for msgpack connections and encodes JSON once.

Guarantees: per channel, messages arrive in publish order (one subscriber
connection per node).  :meth:`Broker.subscribe` returns once Redis confirmed
the subscription, so that a viewer registered after it misses nothing
published later.  A dropped subscriber connection is re-established and its
channels resubscribed; what was published meanwhile is lost to this node
(the danmaku history lets clients recover it by ``seq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgpack
from redis.asyncio import Redis

from .redisio.client import REDIS_DOWN, RedisClient
from .redisio.keyspace import Keyspace
from .tasks import reraise_if_cancelling
from .wire import encode_msgpack

__all__ = ["Broker"]

log = logging.getLogger(__name__)

Deliver = Callable[[str, dict[str, Any], bytes], None]


def _not_started(room: str, msg: dict[str, Any], payload: bytes) -> None:
    raise RuntimeError("the broker delivers only once started")


class Broker:
    """Room pub/sub for one node: :meth:`start` names who receives each message."""

    def __init__(
        self,
        publisher: RedisClient,
        subscriber: Redis,
        keyspace: Keyspace,
        *,
        is_wanted: Callable[[str], bool],
        unsubscribe_delay_s: float = 5.0,
    ) -> None:
        self._publisher = publisher
        self._subscriber = subscriber
        self._keys = keyspace
        self._deliver: Deliver = _not_started
        self._is_wanted = is_wanted
        self._on_subscribed: Callable[[str], None] | None = None
        self._pubsub = subscriber.pubsub()
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._release_timers: dict[str, asyncio.TimerHandle] = {}
        self._unsubscribe_delay_s = unsubscribe_delay_s
        self._reader: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.received = 0
        self.errors = 0
        #: the subscriber connection read without error since its last failure (``/healthz``)
        self.connected = True
        self.last_error = ""
        self.confirm_timeout_s = 5.0

    async def start(self, deliver: Deliver, on_subscribed: Callable[[str], None] | None = None) -> None:
        """Subscribe the node-wide channel and start reading: ``deliver(room, msg, payload)``
        gets every message (``room`` is ``""`` on the node-wide channel); ``on_subscribed(room)``
        runs whenever a room's channel is (re)subscribed."""
        self._deliver = deliver
        self._on_subscribed = on_subscribed
        await self.subscribe_channel(self._keys.nodes_channel, start_reader=True)

    async def close(self) -> None:
        for timer in self._release_timers.values():
            timer.cancel()
        self._release_timers.clear()
        for task in list(self._background):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(*REDIS_DOWN):
            await self._pubsub.aclose()
        await self._subscriber.aclose()

    # -- publish ---------------------------------------------------------------

    async def publish(self, room: str, msg: dict[str, Any]) -> None:
        """Send ``msg`` to every node holding viewers of ``room`` (this one too)."""
        await self._publisher.publish(self._keys.room(room).channel, encode_msgpack(msg))

    # -- subscriptions ---------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        """Make sure this node receives ``room``'s events; return once Redis confirmed."""
        timer = self._release_timers.pop(room, None)
        if timer is not None:
            timer.cancel()
        await self.subscribe_channel(self._keys.room(room).channel)

    async def subscribe_channel(self, channel: str, *, start_reader: bool = False) -> None:
        fut = self._confirmed.get(channel)
        if fut is None:
            fut = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            try:
                await self._pubsub.subscribe(channel)
            except BaseException:
                self._confirmed.pop(channel, None)
                raise
            if start_reader and self._reader is None:
                self._reader = asyncio.create_task(self._read_loop(), name="broker-reader")
        await asyncio.wait_for(asyncio.shield(fut), self.confirm_timeout_s)

    def release(self, room: str) -> None:
        """The last local viewer of ``room`` left: unsubscribe after a short delay
        (a viewer that reconnects at once finds the subscription still there)."""
        if room in self._release_timers:
            return
        loop = asyncio.get_running_loop()
        def fire() -> None:
            task = loop.create_task(self._unsubscribe(room))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        self._release_timers[room] = loop.call_later(self._unsubscribe_delay_s, fire)

    async def _unsubscribe(self, room: str) -> None:
        self._release_timers.pop(room, None)
        if self._is_wanted(room):  # a viewer came back (or joins right now): keep it
            return
        channel = self._keys.room(room).channel
        if self._confirmed.pop(channel, None) is None:
            return
        try:
            await self._pubsub.unsubscribe(channel)
        except REDIS_DOWN as exc:  # the reconnect will not resubscribe it either
            log.warning("unsubscribe %s failed: %s", channel, exc)

    def health(self) -> str | None:
        """None while the subscriber reads; else what is wrong (``/healthz``)."""
        if self._reader is None or self._reader.done():
            return "the subscriber's reader is not running"
        if not self.connected:
            return f"the subscriber lost Redis: {self.last_error}"
        return None

    def is_subscribed(self, room: str) -> bool:
        fut = self._confirmed.get(self._keys.room(room).channel)
        return fut is not None and fut.done()

    # -- reader ----------------------------------------------------------------

    async def _read_loop(self) -> None:
        pubsub = self._pubsub
        backoff = 0.05
        while True:
            reraise_if_cancelling()
            try:
                msg = await pubsub.get_message(timeout=1.0)
                backoff = 0.05
                self.connected = True
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as exc:
                reraise_if_cancelling()
                self.errors += 1
                self.connected = False
                self.last_error = str(exc) or type(exc).__name__
                log.warning("broker connection lost (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if msg is None:
                continue
            kind = msg["type"]
            channel = msg["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if kind == "message":
                self._on_message(channel, msg["data"])
            elif kind == "subscribe":
                # (Re)subscribed: what the node cached from this room's notices may have missed
                # some while it was not listening; forget it before the next message.
                room = self._keys.room_of_channel(channel)
                if channel == self._keys.nodes_channel:
                    room = ""  # the node-wide notices: global word list, blocklist
                if room is not None and self._on_subscribed is not None:
                    self._on_subscribed(room)
                fut = self._confirmed.get(channel)
                if fut is not None and not fut.done():
                    fut.set_result(None)

    def _on_message(self, channel: str, data: bytes) -> None:
        self.received += 1
        room = self._keys.room_of_channel(channel)
        if room is None:
            if channel == self._keys.nodes_channel:
                room = ""
            else:
                return
        try:
            msg = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException):
            log.warning("undecodable message on %s dropped", channel)
            return
        try:
            self._deliver(room, msg, data)
        except Exception:  # a bug in one delivery must not stop the node's reader
            log.exception("delivering a message of room %s failed", room)
