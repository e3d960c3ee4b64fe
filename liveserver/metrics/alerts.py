"""Alerts for the host, judged against the room's own recent numbers (pure).

Four rules, each with thresholds in :class:`AlertRules` (settings ``alert_*``):

- ``online_drop``: while the room is live, online fell by ``online_drop_pct``
  % or more below its highest point of the last ``online_window_s`` seconds
  (rooms whose highest point is below ``online_min`` are too small to judge;
  an ended room's audience leaving is no alarm).
- ``no_paid_orders``: a flash sale is live and no order has been paid for
  ``no_paid_s`` seconds (counted from the later of the last payment and the
  start of the earliest live sale).
- ``low_stock`` (one per sale): a live sale that has sold some of its stock
  has fewer than ``low_stock`` left and at most ``low_stock_pct`` % of its
  stock (so a new 3-unit sale is not "low", and a 10,000-unit one warns at 9).
- ``unpaid_backlog``: at least ``unpaid_min`` orders of the room's sales wait
  for payment, and they are at least ``unpaid_ratio`` of the orders taken
  (pending ÷ (pending + paid)).

An alert fires when its condition starts to hold and clears once it has not
held for ``clear_after_s`` (so that a figure hovering at a threshold does not
fire and clear every second); :class:`AlertTracker` turns the conditions seen
at each push into those two events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AlertRules", "AlertTracker", "OnlineWindow", "SaleState", "evaluate"]


@dataclass(frozen=True, slots=True)
class AlertRules:
    online_drop_pct: float = 20.0
    online_window_s: float = 60.0
    online_min: int = 20
    no_paid_s: float = 300.0
    low_stock: int = 10
    low_stock_pct: float = 20.0
    unpaid_min: int = 20
    unpaid_ratio: float = 0.5
    clear_after_s: float = 10.0

    @classmethod
    def from_settings(cls, s: Any) -> AlertRules:
        return cls(
            online_drop_pct=s.alert_online_drop_pct, online_window_s=s.alert_online_window_s,
            online_min=s.alert_online_min, no_paid_s=s.alert_no_paid_s, low_stock=s.alert_low_stock, low_stock_pct=s.alert_low_stock_pct,
            unpaid_min=s.alert_unpaid_min, unpaid_ratio=s.alert_unpaid_ratio, clear_after_s=s.alert_clear_s,
        )


@dataclass(frozen=True, slots=True)
class SaleState:
    """What the rules need of one flash sale."""

    sale_id: str
    product_id: str
    status: str
    stock_left: int
    pending: int
    paid: int
    starts_at_ms: int
    stock: int = 0  # the sale's whole stock (0: unknown, judged by ``low_stock`` alone)


class OnlineWindow:
    """The room's online count, sampled at each push, over the last window."""

    def __init__(self) -> None:
        self._samples: deque[tuple[int, int]] = deque()

    def add(self, now_ms: int, online: int, window_ms: int) -> int:
        """Record ``online`` at ``now_ms``; returns the highest count within the window before it."""
        while self._samples and self._samples[0][0] < now_ms - window_ms:
            self._samples.popleft()
        peak = max((n for _, n in self._samples), default=online)
        self._samples.append((now_ms, online))
        return peak


def _alert(alert_id: str, kind: str, severity: str, message: str, value: float, threshold: float,
           **extra: Any) -> dict[str, Any]:
    return {"alert_id": alert_id, "kind": kind, "severity": severity, "message": message,
            "value": value, "threshold": threshold, **extra}


def evaluate(
    rules: AlertRules, *, now_ms: int, online: int, recent_peak: int, room_live: bool, sales: list[SaleState],
    last_paid_ms: int,
) -> dict[str, dict[str, Any]]:
    """The alerts whose condition holds now, by ``alert_id``."""
    out: dict[str, dict[str, Any]] = {}
    dropped = online <= recent_peak * (1 - rules.online_drop_pct / 100)
    if room_live and recent_peak >= rules.online_min and dropped:
        drop_pct = round(100 * (recent_peak - online) / recent_peak, 1)
        out["online_drop"] = _alert(
            "online_drop", "online_drop", "critical",
            f"online fell {drop_pct}% in {rules.online_window_s:g} s ({recent_peak} -> {online})",
            drop_pct, rules.online_drop_pct, online=online, baseline=recent_peak,
        )
    live = [s for s in sales if s.status == "live"]
    if live:
        since = max(last_paid_ms, min(s.starts_at_ms for s in live))
        quiet_s = (now_ms - since) / 1000
        if quiet_s >= rules.no_paid_s:
            out["no_paid_orders"] = _alert(
                "no_paid_orders", "no_paid_orders", "warning",
                f"no paid order for {int(quiet_s)} s while a flash sale is live",
                int(quiet_s), rules.no_paid_s, last_paid_at_ms=last_paid_ms or None,
            )
    for s in live:
        share_ok = s.stock == 0 or (s.stock_left < s.stock and s.stock_left * 100 <= s.stock * rules.low_stock_pct)
        if s.stock_left < rules.low_stock and share_ok:
            out[f"low_stock:{s.sale_id}"] = _alert(
                f"low_stock:{s.sale_id}", "low_stock", "info",
                f"flash sale {s.sale_id} ({s.product_id}) has {s.stock_left} left",
                s.stock_left, rules.low_stock, sale_id=s.sale_id, product_id=s.product_id,
            )
    pending = sum(s.pending for s in sales)
    taken = pending + sum(s.paid for s in sales)
    if pending >= rules.unpaid_min and pending >= rules.unpaid_ratio * taken:
        out["unpaid_backlog"] = _alert(
            "unpaid_backlog", "unpaid_backlog", "warning",
            f"{pending} of {taken} orders wait for payment",
            pending, rules.unpaid_min, pending=pending, orders=taken,
        )
    return out


@dataclass(slots=True)
class AlertTracker:
    """One room's firing alerts on this node: what changed since the last push."""

    active: dict[str, dict[str, Any]] = field(default_factory=dict)
    quiet_since: dict[str, int] = field(default_factory=dict)  # firing alerts whose condition stopped holding
    online: OnlineWindow = field(default_factory=OnlineWindow)
    seen: float = 0.0  # monotonic time of the last push to a host of the room

    def update(self, now_ms: int, current: dict[str, dict[str, Any]], clear_after_ms: int = 0) -> list[dict[str, Any]]:
        """The ``alert`` messages to send: ``firing`` for new alerts, ``cleared`` for alerts whose
        condition has not held for ``clear_after_ms``.  A firing alert keeps its ``since_ms``;
        its figures follow the latest evaluation that found it."""
        events: list[dict[str, Any]] = []
        for alert_id, alert in current.items():
            known = self.active.get(alert_id)
            self.quiet_since.pop(alert_id, None)
            self.active[alert_id] = {**alert, "status": "firing", "since_ms": known["since_ms"] if known else now_ms}
            if known is None:
                events.append({"type": "alert", **self.active[alert_id], "ts_ms": now_ms})
        for alert_id in [a for a in self.active if a not in current]:
            quiet = self.quiet_since.setdefault(alert_id, now_ms)
            if now_ms - quiet >= clear_after_ms:
                del self.quiet_since[alert_id]
                ended = self.active.pop(alert_id)
                events.append({"type": "alert", **ended, "status": "cleared", "ts_ms": now_ms})
        return events

    def firing(self) -> list[dict[str, Any]]:
        return sorted(self.active.values(), key=lambda a: (a["since_ms"], a["alert_id"]))
