"""Operator metrics in the Prometheus text format (prometheus-client).

Each node has its own registry, so that several nodes in one process (the
tests) do not collide.  Counters the hub, the fan-out, the drops and the broker
keep as plain ints on their hot paths are read at scrape time, through the
narrow :class:`CounterSource`, instead of being incremented there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..tasks import reraise_if_cancelling

__all__ = ["CONTENT_TYPE", "CounterSource", "Counters", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Counters:
    """What the node counts outside prometheus-client (on its hot paths, as plain ints),
    read once per scrape."""

    connections: int
    rooms: int
    frames_sent: int
    frames_dropped: int
    slow_closed: int
    messages_delivered: int
    delivery_errors: int
    danmaku_delivered: int
    danmaku_thinned: int
    rollbacks: int
    grabs: Mapping[tuple[str, str], int]  # (kind, answer) -> grabs
    grabs_refused: Mapping[str, int]  # anti-fraud rule -> grabs
    grabs_answered_locally: int
    claims: Mapping[str, int]  # answer -> claims
    drop_script_calls: int
    broker_received: int
    broker_errors: int
    http_header_timeouts: int
    http_malformed: int
    loop_failures: Mapping[str, int]
    loops_down: int
    video_cameras: int = 0
    video_frames_out: int = 0
    video_encode_seconds: float = 0.0
    whep_viewers: int = 0


class CounterSource(Protocol):
    """Gives the collector the node's plain counters at scrape time."""

    def counters(self) -> Counters: ...


#: Each counter the collector yields, in order: (gauge?, metric name, help, ``Counters`` field, labels).
#: A labelled one reads a mapping from label values to counts.
_FAMILIES: tuple[tuple[bool, str, str, str, tuple[str, ...]], ...] = (
    (True, "liveserver_connections", "Open WebSocket connections", "connections", ()),
    (True, "liveserver_rooms", "Rooms with viewers on this node", "rooms", ()),
    (False, "liveserver_frames_sent", "WebSocket frames written to clients", "frames_sent", ()),
    (False, "liveserver_frames_dropped",
     "Droppable frames (danmaku, likes, presence) not sent to viewers that could not keep up", "frames_dropped", ()),
    (False, "liveserver_slow_consumers_closed", "Connections closed with 4008 as slow consumers", "slow_closed", ()),
    (False, "liveserver_room_messages_delivered", "Room messages fanned out by the hub", "messages_delivered", ()),
    (False, "liveserver_danmaku_items_delivered", "Danmaku items handed to viewers' sockets (items x viewers)",
     "danmaku_delivered", ()),
    (False, "liveserver_danmaku_items_thinned",
     "Danmaku items not delivered to viewers that could not keep up (items x viewers)", "danmaku_thinned", ()),
    (False, "liveserver_grabs", "Grabs answered, by kind and answer", "grabs", ("kind", "answer")),
    (False, "liveserver_grabs_refused", "Grabs refused by an anti-fraud rule", "grabs_refused", ("rule",)),
    (False, "liveserver_grabs_answered_locally", "Hopeless grabs answered by the node without Redis",
     "grabs_answered_locally", ()),
    (False, "liveserver_claims", "Red-packet claims answered, by answer", "claims", ("answer",)),
    (False, "liveserver_drop_script_calls", "Grab and claim script calls (each carries a batch)", "drop_script_calls", ()),
    (False, "liveserver_broker_messages_received", "Pub/sub messages received from Redis", "broker_received", ()),
    (False, "liveserver_broker_errors", "Pub/sub connection errors", "broker_errors", ()),
    (False, "liveserver_delivery_errors",
     "Deliveries to one viewer that failed (a bug): logged, that viewer closed, the others served", "delivery_errors", ()),
    (False, "liveserver_http_header_timeouts", "Connections closed for an incomplete request head (slowloris)",
     "http_header_timeouts", ()),
    (False, "liveserver_http_malformed_requests", "Requests answered 4xx before routing (bad framing, headers, method)",
     "http_malformed", ()),
    (False, "liveserver_redis_rollbacks_detected",
     "Danmaku ids this node had seen that Redis no longer had (it lost its last writes in a crash or failover)",
     "rollbacks", ()),
    (False, "liveserver_background_loop_failures", "Background loops that died and were restarted", "loop_failures",
     ("loop",)),
    (True, "liveserver_background_loops_down", "Background loops not running now (/healthz fails)", "loops_down", ()),
    (True, "liveserver_video_cameras", "Cameras publishing to this node (WHIP)", "video_cameras", ()),
    (False, "liveserver_video_frames_out", "Program frames composed and encoded (once per room)", "video_frames_out", ()),
    (False, "liveserver_video_encode_seconds", "Time spent composing and encoding program frames",
     "video_encode_seconds", ()),
    (True, "liveserver_whep_viewers", "WHEP viewers watching a program from this node", "whep_viewers", ()),
)


class _Collector(Collector):
    def __init__(self, source: CounterSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counters = self._source.counters()
        for gauge, name, doc, field, labels in _FAMILIES:
            value = getattr(counters, field)
            if gauge:
                yield GaugeMetricFamily(name, doc, value=value)
            elif not labels:
                yield CounterMetricFamily(name, doc, value=value)
            else:
                family = CounterMetricFamily(name, doc, labels=list(labels))
                for key, n in sorted(value.items()):
                    family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
                yield family


class Metrics:
    def __init__(self) -> None:
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

    def observe(self, source: CounterSource) -> None:
        """Read ``source``'s counters at every scrape."""
        self.registry.register(_Collector(source))

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
