"""What one read of a room's metrics found in Redis, parsed and typed (pure: no Redis here).

:class:`.room.RoomMetrics` fills a :class:`RoomReadings` from its pipelines, and
:func:`.body.build_body` turns it into the contract's ``metrics`` body.  Every
field is the value as read, parsed (counts as ``int``, JSON as dicts), with
nothing derived from it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ROOM_SERIES", "ProductFunnel", "RoomReadings"]

ROOM_SERIES = ("online", "enter", "leave", "danmaku")  # kept per room; the others are summed over the drops


@dataclass(frozen=True, slots=True)
class ProductFunnel:
    """One product's distinct viewers who saw it and who clicked it (HyperLogLogs)."""

    exposure_uv: int
    click_uv: int


@dataclass(frozen=True, slots=True)
class RoomReadings:
    """A room's metric keys as read in one go, and its red packets' figures."""

    room_id: str
    uv: int
    exposure_uv: int
    click_uv: int
    cart_uv: int
    order_uv: int  # distinct over all the room's sales (a union of their logs)
    buyer_uv: int
    peak_online: int  # the highest online count recorded (0: none yet)
    pv: int
    watch_ms: int
    likes: int
    danmaku: int
    danmaku_thinned: int
    started_ms: int | None  # the room's start (None: not started)
    room_status: str | None
    catalog: dict[str, dict[str, Any]]  # the room's products, by id, as the host put them
    #: every product in the funnel or the catalog, sorted by id
    products: dict[str, ProductFunnel]
    logged_markers: list[dict[str, Any]]  # pins and red packets as logged, ``at`` in ms, oldest first
    room_series: dict[str, dict[int, int]]  # each of ``ROOM_SERIES``: epoch minute -> value
    sale_stats: dict[str, dict[str, int]]  # each sale's ``o:<minute>``, ``g:<minute>``, ``last_paid``
    red_packet_claims: int
    red_packet_cents: int
    red_packets: list[dict[str, Any]]  # each packet's figures, newest last
    video: dict[str, Any] | None = None  # the media node's status: cameras, program, whep_viewers
    hls_viewers: int = 0  # clients that fetched the room's HLS playlist in the last 10 s, on every node
