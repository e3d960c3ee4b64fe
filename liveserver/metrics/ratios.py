"""The metrics body's ratios, pure: each numerator and denominator as the contract defines them.

- ``ctr`` = click_uv / exposure_uv (商品曝光-点击率)
- ``click_to_pay_rate`` = buyer_uv / click_uv (点击-成交转化率)
- ``conversion_rate`` = buyer_uv / uv (观看-成交率)
- ``gpm_cents`` = gmv_cents x 1000 / pv (GPM: GMV per thousand views)
- ``uv_value_cents`` = gmv_cents / uv
- ``avg_watch_s`` = total seconds watched / uv

A ratio with a zero denominator is 0.  Rates are rounded to 4 decimals; cents
to whole cents (floor division keeps money integral).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ratios", "windows"]


def _rate(num: int, den: int) -> float:
    return round(num / den, 4) if den else 0.0


def ratios(c: dict[str, int]) -> dict[str, Any]:
    """The derived fields of the metrics body from its counts (``uv``, ``pv``, ``watch_ms``,
    ``exposure_uv``, ``click_uv``, ``buyer_uv``, ``gmv_cents``)."""
    uv, pv = c["uv"], c["pv"]
    return {
        "avg_watch_s": round(c["watch_ms"] / 1000 / uv, 1) if uv else 0.0,
        "ctr": _rate(c["click_uv"], c["exposure_uv"]),
        "click_to_pay_rate": _rate(c["buyer_uv"], c["click_uv"]),
        "conversion_rate": _rate(c["buyer_uv"], uv),
        "gpm_cents": c["gmv_cents"] * 1000 // pv if pv else 0,
        "uv_value_cents": c["gmv_cents"] // uv if uv else 0,
    }


#: Series summed over a window; ``online`` is a level, so its window value is the mean of its minutes.
_LEVELS = ("online",)


def windows(series: dict[str, list[int]], minutes: int = 5) -> dict[str, Any]:
    """The last ``minutes`` complete minutes of each per-minute series (the current minute,
    still counting, is left out) against the ``minutes`` before them, with the relative change.
    ``change`` is ``None`` until both windows are complete (a room younger than 2 x ``minutes``
    + 1 minutes), and where the earlier window is 0."""

    def value(name: str, values: list[int]) -> int | float:
        if name in _LEVELS:
            return round(sum(values) / len(values), 1) if values else 0
        return sum(values)

    last = {name: value(name, v[-minutes - 1:-1]) for name, v in series.items()}
    prev = {name: value(name, v[-2 * minutes - 1:-minutes - 1]) for name, v in series.items()}
    complete = {name: len(v) >= 2 * minutes + 1 for name, v in series.items()}
    change = {name: round((last[name] - prev[name]) / prev[name], 4) if complete[name] and prev[name] else None
              for name in series}
    return {"minutes": minutes, "last": last, "previous": prev, "change": change}
