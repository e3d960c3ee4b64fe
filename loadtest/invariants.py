"""After a run: the server's books must balance, and agree with what the clients were told.

For every flash sale the hosts created:

- **stock**: ``pending + paid ≤ stock`` and ``stock_left = stock − pending − paid``
  (nothing oversold, nothing lost);
- **orders**: the orders ``<sale>.1, <sale>.2, …`` (read one by one) hold
  exactly the sale's ``pending`` and ``paid`` counts, and no user holds more
  than ``per_user_limit`` of them;
- **clients**: every order a viewer was told it won exists, and the ones it
  paid or cancelled are in that state.

For every red packet: each claim is at least a cent, one per user, the
claims add up to ``claimed_cents`` and ``claimed_count``; once the packet is
over (``expired`` or ``empty``) ``claimed_cents + refunded_cents = total_cents``,
while it is live ``claimed_cents ≤ total_cents``; and every amount a viewer
was told is the amount the packet recorded for it.

The client checks need every reply to have arrived: after a run with Locust
failures (a timeout may hide a won grab) they are reported as skipped.  The
reverse direction (the server has an order no viewer heard of) is only
counted: Locust kills users mid-grab on ramp-downs.

Plain ``urllib``: this runs in ``loadtest.run``, outside Locust and gevent.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .scenario import Scenario, packet_id, room_id, sale_id

__all__ = ["Api", "Check", "check_run"]

_OVER = ("expired", "empty")


@dataclass(frozen=True)
class Check:
    """One invariant, held or not, with the figures that show it."""

    name: str
    ok: bool
    detail: str
    skipped: bool = False

    def line(self) -> str:
        verdict = "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"
        return f"invariant {verdict}  {self.name}: {self.detail}"


class Api:
    """Read-only HTTP calls with one (admin) token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> dict[str, Any] | None:
        """The JSON body, or None on 404; any other error raises."""
        request = urllib.request.Request(self.base_url + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


def check_run(api: Api, show: Scenario, run_id: str, tally: dict[str, Any], *, trust_clients: bool) -> list[Check]:
    """Every invariant of every sale and red packet the run's hosts created."""
    checks: list[Check] = []
    sales = packets = 0
    for k in range(show.rooms):
        room = room_id(run_id, k)
        for sale in show.sales():
            found = _check_sale(api, room, sale_id(room, sale.n), tally.get("orders", {}), trust_clients)
            sales += bool(found)
            checks += found
        for packet in show.packets():
            found = _check_packet(api, room, packet_id(room, packet.n), tally.get("claims", {}), trust_clients)
            packets += bool(found)
            checks += found
    planned_sales, planned_packets = show.rooms * len(show.sales()), show.rooms * len(show.packets())
    checks.append(Check("programme", sales > 0 and packets > 0,
                        f"{sales} of {planned_sales} planned flash sales and {packets} of {planned_packets} "
                        "red packets were created and checked"))
    return checks


# -- flash sales ---------------------------------------------------------------------------


def _check_sale(api: Api, room: str, sid: str, client_orders: dict[str, str], trust_clients: bool) -> list[Check]:
    snapshot = _sale_snapshot(api, room, sid)
    if snapshot is None:
        return []
    sale, orders = snapshot
    stock, left, pending, paid = sale["stock"], sale["stock_left"], sale["pending"], sale["paid"]
    checks = [Check(
        f"sale {sid} stock",
        pending + paid <= stock and left == stock - pending - paid and left >= 0,
        f"pending {pending} + paid {paid} = {pending + paid} <= stock {stock}; "
        f"stock_left {left} = {stock} - {pending} - {paid}",
    )]
    states = Counter(o["status"] for o in orders)
    held = Counter(o["user"] for o in orders if o["status"] in ("pending", "paid"))
    over = sum(1 for n in held.values() if n > sale["per_user_limit"])
    checks.append(Check(
        f"sale {sid} orders",
        states["pending"] == pending and states["paid"] == paid and over == 0,
        f"{len(orders)} orders (" + ", ".join(f"{s} {n}" for s, n in sorted(states.items())) + ") match "
        f"pending {pending}, paid {paid}; users over the limit of {sale['per_user_limit']}: {over}",
    ))
    checks.append(_clients_vs_orders(sid, client_orders, {o["order_id"]: o["status"] for o in orders},
                                      trust_clients))
    return checks


def _sale_snapshot(api: Api, room: str, sid: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The sale and all its orders, read while nothing changed (the sweeper may still expire
    orders after the run: the counters read before and after the orders must agree)."""
    path = f"/api/v1/rooms/{room}/flash-sales/{sid}"
    for _ in range(10):
        before = api.get(path)
        if before is None:
            return None
        orders = []
        while (order := api.get(f"/api/v1/orders/{sid}.{len(orders) + 1}")) is not None:
            orders.append(order)
        after = api.get(path)
        if after is not None and _counters(before) == _counters(after):
            return after, orders
    raise RuntimeError(f"sale {sid} kept changing while it was read")


def _counters(sale: dict[str, Any]) -> tuple[int, int, int]:
    return sale["stock_left"], sale["pending"], sale["paid"]


def _clients_vs_orders(sid: str, client_orders: dict[str, str], server: dict[str, str], trust_clients: bool) -> Check:
    mine = {o: s for o, s in client_orders.items() if o.rpartition(".")[0] == sid}
    name = f"sale {sid} clients"
    if not trust_clients:
        return Check(name, True, "not compared: the run had failures, so some replies may not have arrived",
                     skipped=True)
    missing = [o for o in mine if o not in server]
    wrong = [o for o, s in mine.items() if s in ("paid", "cancelled") and server.get(o) != s]
    unheard = len(set(server) - set(mine))
    return Check(
        name, not missing and not wrong,
        f"viewers won {len(mine)} orders (paid {sum(s == 'paid' for s in mine.values())}, cancelled "
        f"{sum(s == 'cancelled' for s in mine.values())}): missing on the server {len(missing)}, in another "
        f"state {len(wrong)}; orders no viewer heard of (stopped mid-grab) {unheard}",
    )


# -- red packets ---------------------------------------------------------------------------


def _check_packet(api: Api, room: str, pid: str, client_claims: dict[str, int], trust_clients: bool) -> list[Check]:
    packet = api.get(f"/api/v1/rooms/{room}/red-packets/{pid}")
    if packet is None:
        return []
    claims = packet.get("claims", [])
    total, claimed, refunded = packet["total_cents"], packet["claimed_cents"], packet["refunded_cents"]
    amounts = [c["amount_cents"] for c in claims]
    users = {c["user"] for c in claims}
    ledger_ok = (sum(amounts) == claimed and len(claims) == packet["claimed_count"] == len(users)
                 and all(a >= 1 for a in amounts))
    if packet["status"] in _OVER:
        sums_ok, sums = claimed + refunded == total, f"claimed {claimed} + refunded {refunded} = {claimed + refunded}"
    else:
        sums_ok, sums = claimed <= total and refunded == 0, f"claimed {claimed} <= {total}, refunded {refunded}"
    checks = [Check(
        f"red packet {pid} sums", ledger_ok and sums_ok,
        f"{packet['status']}: {sums} (total {total}); {len(claims)} claims by {len(users)} users add up to "
        f"{sum(amounts)}, smallest {min(amounts, default=0)}",
    )]
    name = f"red packet {pid} clients"
    if not trust_clients:
        checks.append(Check(name, True, "not compared: the run had failures", skipped=True))
        return checks
    recorded = {c["user"]: c["amount_cents"] for c in claims}
    told = {key.split(" ", 1)[1]: amount for key, amount in client_claims.items() if key.split(" ", 1)[0] == pid}
    wrong = [u for u, amount in told.items() if recorded.get(u) != amount]
    checks.append(Check(
        name, not wrong,
        f"viewers were told {len(told)} amounts ({sum(told.values())} cents); differing from the packet's "
        f"record {len(wrong)}; claims no viewer heard of {len(set(recorded) - set(told))}",
    ))
    return checks
