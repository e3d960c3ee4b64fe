"""The show a load test plays: how many people watch when, and what the host does when.

Both sides of a run read the same :class:`Scenario`: the load shape (how many
viewers Locust keeps connected at each second) and the host user (when it
pins, opens a flash sale or drops a red packet).  So the grab storm lands
when the crowd is there, on every Locust worker, without the processes
talking to each other: a worker computes the same plan from the same options.

Ids are deterministic (``<run>_r<k>``, ``<run>_r<k>_s<n>``, ``<run>_r<k>_p<n>``)
so that the invariant check after the run finds every room, sale and red packet
the hosts created, from the options alone.  They use only ``[A-Za-z0-9_]``:
drop ids may not hold ``.`` and packet ids may not hold ``-``.

This module imports neither Locust nor gevent: ``loadtest.run`` and the
invariant check use it outside Locust.  Its argument types (``positive_int``,
``show_duration``, ...) serve both command lines, so a bad value is a usage
error in ``loadtest.run`` and in plain Locust alike.
"""

from __future__ import annotations

import argparse
import math
import secrets
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DURATION_S",
    "MIN_DURATION_S",
    "PRODUCTS",
    "SHAPES",
    "Packet",
    "Sale",
    "Scenario",
    "new_run_id",
    "non_negative_int",
    "packet_id",
    "positive_int",
    "positive_seconds",
    "room_id",
    "sale_id",
    "share",
    "show_duration",
]

SHAPES = ("evening", "spike")
DEFAULT_DURATION_S = {"evening": 360.0, "spike": 60.0}
MIN_DURATION_S = 10.0  # the shortest show whose programme still fits (countdowns, payment windows)

#: (product_id, title, price_cents) that every host puts in its room.
PRODUCTS = [
    ("p1", "Silk scarf", 12900),
    ("p2", "Longjing tea 250 g", 8800),
    ("p3", "Bluetooth earbuds", 19900),
    ("p4", "Ceramic teapot", 15800),
]

#: Red packets hold this much per share on average (cents), plus a remainder so the split is uneven.
_CENTS_PER_SHARE = 88


# -- argument types (argparse and Locust's configargparse) ------------------------------------


def _number(text: str, kind: type[float]) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """A count of at least 1 (viewers, rooms)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def non_negative_int(text: str) -> int:
    """A count that may be 0 (``--stock 0``: automatic; ``--workers 0``: not distributed)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def show_duration(text: str) -> float:
    """The show's length in seconds: 0 (the shape's default) or at least :data:`MIN_DURATION_S`."""
    value = _number(text, float)
    if value != 0 and value < MIN_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"a show lasts at least {MIN_DURATION_S:g} seconds (0: the shape's default), not {text}")
    return value


def share(text: str) -> float:
    """A ratio from 0 to 1 (``--grab-ratio``, ``--max-failure-ratio``)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text}")
    return value


def positive_seconds(text: str) -> float:
    """A time in seconds above 0 (``--reply-timeout``)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


# -- ids ---------------------------------------------------------------------------------------


def new_run_id() -> str:
    """A fresh prefix for one run's ids, so runs against the same server never collide."""
    return "lt" + secrets.token_hex(3)


def room_id(run_id: str, k: int) -> str:
    return f"{run_id}_r{k}"


def sale_id(room: str, n: int) -> str:
    return f"{room}_s{n}"


def packet_id(room: str, n: int) -> str:
    return f"{room}_p{n}"


@dataclass(frozen=True)
class Sale:
    """A flash sale of the programme; times are seconds from the start of the show."""

    n: int
    announce_s: float  # the host creates it (viewers see the countdown)
    start_s: float  # it opens: the grab storm
    duration_s: int
    stock: int
    product_id: str
    price_cents: int
    pay_timeout_s: int  # short, so unpaid orders expire and their stock comes back during the run


@dataclass(frozen=True)
class Packet:
    """A red packet of the programme; times are seconds from the start of the show."""

    n: int
    announce_s: float
    start_s: float
    count: int
    total_cents: int
    expires_s: int


@dataclass(frozen=True)
class Scenario:
    """One run's show, from the Locust options (``--shape``, ``--viewers``, ``--duration``, ...)."""

    shape: str
    viewers: int  # at the crest, over all rooms
    duration_s: float
    rooms: int = 1
    stock: int = 0  # units per regular sale; 0: a tenth of a room's crest audience

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}: pick one of {', '.join(SHAPES)}")
        if self.viewers < 1 or self.rooms < 1 or self.duration_s < MIN_DURATION_S:
            raise ValueError(f"a show needs at least 1 viewer, 1 room and {MIN_DURATION_S:g} seconds")

    @property
    def per_room(self) -> int:
        """Viewers of one room at the crest."""
        return max(1, self.viewers // self.rooms)

    @property
    def units(self) -> int:
        return self.stock or max(5, self.per_room // 10)

    # -- the crowd ---------------------------------------------------------------

    def audience(self, t: float) -> int:
        """Viewers (all rooms) that should be watching ``t`` seconds into the show."""
        x = min(max(t / self.duration_s, 0.0), 1.0)
        share = _evening(x) if self.shape == "evening" else _spike(x)
        return max(1, round(self.viewers * share))

    # -- the host's programme ----------------------------------------------------

    def sales(self) -> list[Sale]:
        d = self.duration_s
        if self.shape == "spike":
            return [self._sale(1, announce_s=0.2 * d, start_s=0.45 * d, duration_s=0.4 * d, stock=self.units)]
        countdown = max(2.0, d / 36)  # ten minutes of the evening
        sales = []
        for n, hour in enumerate((19, 20, 21, 22, 23), start=1):
            start = self.at_hour(hour)
            stock = self.units * (3 if hour == 21 else 1)  # the big one at the crest
            sales.append(self._sale(n, announce_s=start - countdown, start_s=start, duration_s=d / 12, stock=stock))
        return sales

    def packets(self) -> list[Packet]:
        d = self.duration_s
        # Some packets have fewer shares than claimers (they run empty), some more (the rest is
        # refunded when they expire): the two ways a packet's sums must come out exact.
        if self.shape == "spike":
            return [
                self._packet(1, announce_s=0.6 * d, start_s=0.62 * d, count=max(5, self.per_room // 4)),
                self._packet(2, announce_s=0.7 * d, start_s=0.72 * d, count=self.per_room),
            ]
        countdown = max(1.0, d / 72)
        return [
            self._packet(n, announce_s=self.at_hour(hour) - countdown, start_s=self.at_hour(hour),
                         count=max(5, round(self.per_room * share)))
            for n, (hour, share) in enumerate(((19.5, 0.3), (21.25, 0.3), (22.5, 1.0)), start=1)
        ]

    def pins(self) -> list[tuple[float, str]]:
        """When the host pins which product: a new one every quarter of an hour, except while a
        sale runs, whose product is pinned from its announcement to its end."""
        step = self.duration_s / 24 if self.shape == "evening" else self.duration_s / 4
        windows = [(s.announce_s, s.start_s + s.duration_s) for s in self.sales()]
        rotation = [(i * step, PRODUCTS[i % len(PRODUCTS)][0]) for i in range(math.ceil(self.duration_s / step))]
        rotation = [(t, p) for t, p in rotation if not any(start <= t < end for start, end in windows)]
        return sorted(rotation + [(s.announce_s, s.product_id) for s in self.sales()])

    def at_hour(self, hour: float) -> float:
        """Seconds into the show for a clock time of the evening (18:00 is 0, 24:00 the end)."""
        return (hour - 18) / 6 * self.duration_s

    def _sale(self, n: int, *, announce_s: float, start_s: float, duration_s: float, stock: int) -> Sale:
        product, _, price = PRODUCTS[(n - 1) % len(PRODUCTS)]
        return Sale(
            n=n, announce_s=announce_s, start_s=start_s, duration_s=max(3, round(duration_s)), stock=stock,
            product_id=product, price_cents=price // 2, pay_timeout_s=max(5, round(self.duration_s / 6)),
        )

    def _packet(self, n: int, *, announce_s: float, start_s: float, count: int) -> Packet:
        return Packet(
            n=n, announce_s=announce_s, start_s=start_s, count=count,
            total_cents=count * _CENTS_PER_SHARE + 7 * n, expires_s=max(3, round(self.duration_s / 4)),
        )


def _evening(x: float) -> float:
    """18:00-24:00 as 0..1: a thin after-work crowd, a climb to the 21:00 crest, a faster fall
    after it (people go to bed), a tenth of the crest left at midnight."""
    hour = 18 + 6 * x
    width = 1.1 if hour < 21 else 0.9
    return 0.1 + 0.9 * math.exp(-0.5 * ((hour - 21) / width) ** 2)


def _spike(x: float) -> float:
    """A fifth of the crowd early; the rest rushes in once the sale is announced (0.2), all
    there before it opens (0.45); a third still there at the end."""
    if x < 0.2:
        return 0.2 * x / 0.2
    if x < 0.4:
        return 0.2 + 0.8 * (x - 0.2) / 0.2
    if x < 0.8:
        return 1.0
    return 1.0 - 0.7 * (x - 0.8) / 0.2
