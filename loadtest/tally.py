"""What the clients saw, added up over every Locust process and written as JSON at exit.

The invariant check compares it with the server's own books: every order a
viewer was told it won exists, the orders viewers paid or cancelled are
paid or cancelled, and the red-packet amounts viewers were told add up to
what the packet says was claimed.

Each worker sends what it gathered since its last report with Locust's own
stats report (``report_to_master``); the master (or the single process of a
local run) adds it up and writes ``--summary-file`` on ``quit``, after the
workers' final reports came in.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from . import options

__all__ = ["TALLY", "Tally"]

_KEY = "liveserver_tally"


class Tally:
    """Outcome counts (``grab sold_out``), orders by the state a client last put them in, claims."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.orders: dict[str, str] = {}  # order_id -> won | paid | cancelled
        self.claims: dict[str, int] = {}  # "<packet_id> <user>" -> amount_cents

    def count(self, key: str) -> None:
        self.counts[key] += 1

    def order(self, order_id: str, state: str) -> None:
        self.orders[order_id] = state

    def claim(self, packet: str, user: str, amount_cents: int) -> None:
        self.claims[f"{packet} {user}"] = amount_cents

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "orders": self.orders, "claims": self.claims}

    def take(self) -> dict[str, Any]:
        """What was gathered since the last call (a worker's report), and start afresh."""
        data = self.as_dict()
        self.counts, self.orders, self.claims = Counter(), {}, {}
        return data

    def merge(self, data: dict[str, Any]) -> None:
        self.counts.update(data.get("counts", {}))
        self.orders.update(data.get("orders", {}))
        self.claims.update(data.get("claims", {}))


#: This process's tally (on a master: everything the workers reported).
TALLY = Tally()


@events.init.add_listener
def _wire(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        environment.events.report_to_master.add_listener(
            lambda client_id, data: data.__setitem__(_KEY, TALLY.take())
        )
        return
    if isinstance(runner, MasterRunner):
        environment.events.worker_report.add_listener(lambda client_id, data: TALLY.merge(data.get(_KEY, {})))

    def write(exit_code: int, **_: Any) -> None:
        path = options.summary_file(environment)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(TALLY.as_dict(), indent=1, sort_keys=True))

    environment.events.quit.add_listener(write)
