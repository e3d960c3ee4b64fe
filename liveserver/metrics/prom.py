"""Operator metrics in the Prometheus text format (prometheus-client).

Each node has its own registry, so that several nodes in one process (the
tests) do not collide.  Counters owned by the hub and the broker are read at
scrape time by a collector instead of being incremented on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..tasks import reraise_if_cancelling

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        hub = self._node.hub
        yield GaugeMetricFamily("liveserver_connections", "Open WebSocket connections", value=len(hub))
        yield GaugeMetricFamily("liveserver_rooms", "Rooms with viewers on this node", value=hub.room_count)
        yield CounterMetricFamily(
            "liveserver_frames_sent", "WebSocket frames written to clients", value=hub.stats.frames_sent
        )
        yield CounterMetricFamily(
            "liveserver_frames_dropped",
            "Droppable frames (danmaku, likes, presence) not sent to viewers that could not keep up",
            value=hub.stats.frames_dropped,
        )
        yield CounterMetricFamily(
            "liveserver_slow_consumers_closed", "Connections closed with 4008 as slow consumers", value=hub.stats.slow_closed
        )
        yield CounterMetricFamily(
            "liveserver_room_messages_delivered", "Room messages fanned out by the hub", value=hub.stats.messages_delivered
        )
        fanout = self._node.fanout
        yield CounterMetricFamily(
            "liveserver_danmaku_items_delivered",
            "Danmaku items handed to viewers' sockets (items x viewers)",
            value=fanout.items_delivered,
        )
        yield CounterMetricFamily(
            "liveserver_danmaku_items_thinned",
            "Danmaku items not delivered to viewers that could not keep up (items x viewers)",
            value=fanout.items_thinned,
        )
        seckill = self._node.seckill
        grabs = CounterMetricFamily("liveserver_grabs", "Grabs answered, by kind and answer", labels=["kind", "answer"])
        for (kind, answer), n in sorted(seckill.counts.items()):
            grabs.add_metric([kind, answer], n)
        yield grabs
        fraud = CounterMetricFamily("liveserver_grabs_refused", "Grabs refused by an anti-fraud rule", labels=["rule"])
        for rule, n in sorted(seckill.fraud.items()):
            fraud.add_metric([rule], n)
        yield fraud
        yield CounterMetricFamily(
            "liveserver_grabs_answered_locally", "Hopeless grabs answered by the node without Redis",
            value=seckill.local_answers,
        )
        claims = CounterMetricFamily("liveserver_claims", "Red-packet claims answered, by answer", labels=["answer"])
        for answer, n in sorted(self._node.packets.counts.items()):
            claims.add_metric([answer], n)
        yield claims
        yield CounterMetricFamily(
            "liveserver_drop_script_calls", "Grab and claim script calls (each carries a batch)",
            value=seckill.batcher.calls + self._node.packets.batcher.calls,
        )
        broker = self._node.broker
        yield CounterMetricFamily(
            "liveserver_broker_messages_received", "Pub/sub messages received from Redis", value=broker.received
        )
        yield CounterMetricFamily(
            "liveserver_broker_errors", "Pub/sub connection errors", value=broker.errors
        )
        yield CounterMetricFamily(
            "liveserver_delivery_errors",
            "Deliveries to one viewer that failed (a bug): logged, that viewer closed, the others served",
            value=hub.stats.delivery_errors + fanout.errors,
        )
        guard = self._node.guard
        yield CounterMetricFamily(
            "liveserver_http_header_timeouts", "Connections closed for an incomplete request head (slowloris)",
            value=guard.header_timeouts,
        )
        yield CounterMetricFamily(
            "liveserver_http_malformed_requests", "Requests answered 4xx before routing (bad framing, headers, method)",
            value=guard.bad_requests,
        )
        yield CounterMetricFamily(
            "liveserver_redis_rollbacks_detected",
            "Danmaku ids this node had seen that Redis no longer had (it lost its last writes in a crash or failover)",
            value=fanout.rollbacks,
        )
        loops = CounterMetricFamily(
            "liveserver_background_loop_failures", "Background loops that died and were restarted", labels=["loop"]
        )
        for name, n in sorted(self._node.loops.failures().items()):
            loops.add_metric([name], n)
        yield loops
        yield GaugeMetricFamily(
            "liveserver_background_loops_down", "Background loops not running now (/healthz fails)",
            value=len(self._node.loops.down()),
        )


class Metrics:
    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_requests = Counter(
            "liveserver_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.ws_closes = Counter(
            "liveserver_ws_closes", "WebSocket sessions ended, by close code", ["code"], registry=self.registry
        )
        self.ws_errors = Counter(
            "liveserver_ws_errors", "error frames sent, by code", ["code"], registry=self.registry
        )
        self.redis_errors = Counter(
            "liveserver_redis_errors", "Redis commands that failed", ["where"], registry=self.registry
        )
        self.lua_seconds = Histogram(
            "liveserver_lua_call_seconds", "Lua script calls to Redis, round trip included, by script",
            ["script"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.loop_lag = Histogram(
            "liveserver_event_loop_lag_seconds", "How late the event loop ran a timer (sampled every 0.25 s)",
            registry=self.registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.loop_lag_last = Gauge(
            "liveserver_event_loop_lag_last_seconds", "The latest event-loop lag sample", registry=self.registry
        )
        self.registry.register(_NodeCollector(node))

    def script_called(self, name: str, seconds: float, failed: bool) -> None:
        """The scripts' observer (redisio.scripts.ScriptObserver)."""
        self.lua_seconds.labels(script=name).observe(seconds)
        if failed:
            self.redis_errors.labels(where="lua").inc()

    async def watch_loop_lag(self, period_s: float = 0.25) -> None:
        """Sample how late a timer fires: the time callbacks wait behind others (forever)."""
        loop = asyncio.get_running_loop()
        while True:
            reraise_if_cancelling()
            due = loop.time() + period_s
            await asyncio.sleep(period_s)
            lag = max(0.0, loop.time() - due)
            self.loop_lag.observe(lag)
            self.loop_lag_last.set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)
