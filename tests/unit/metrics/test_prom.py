"""The Prometheus text the collector renders from a Counters snapshot (no server, no Redis)."""

from __future__ import annotations

import dataclasses

from liveserver.metrics.prom import Counters, Metrics


class _Source:
    def __init__(self, counters: Counters) -> None:
        self.snapshot = counters

    def counters(self) -> Counters:
        return self.snapshot


def _counters(**values: object) -> Counters:
    zero: dict[str, object] = {f.name: ({} if f.type.startswith("Mapping") else 0) for f in dataclasses.fields(Counters)}
    return Counters(**{**zero, **values})  # type: ignore[arg-type]


def test_every_counter_is_rendered_with_its_labels() -> None:
    metrics = Metrics()
    source = _Source(_counters(
        connections=3, frames_dropped=7, grabs={("sale", "ok"): 5, ("coupon", "sold_out"): 2},
        grabs_refused={"too_soon": 1}, claims={"ok": 4}, loop_failures={"likes": 2}, loops_down=1,
    ))
    metrics.observe(source)
    text = metrics.render().decode()
    for line in (
        "liveserver_connections 3.0",
        "liveserver_frames_dropped_total 7.0",
        'liveserver_grabs_total{answer="ok",kind="sale"} 5.0',
        'liveserver_grabs_total{answer="sold_out",kind="coupon"} 2.0',
        'liveserver_grabs_refused_total{rule="too_soon"} 1.0',
        'liveserver_claims_total{answer="ok"} 4.0',
        'liveserver_background_loop_failures_total{loop="likes"} 2.0',
        "liveserver_background_loops_down 1.0",
    ):
        assert line in text, line
    source.snapshot = _counters(connections=9)  # read afresh at every scrape
    assert "liveserver_connections 9.0" in metrics.render().decode()
