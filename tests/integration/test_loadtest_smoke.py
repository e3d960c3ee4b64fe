"""The Locust load test's short version (CI): one command, a small spike, no failures, the books balance.

Locust patches the standard library with gevent when it is imported, so it
runs only in the subprocess here, never in the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_spike_smoke(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--shape", "spike", "--viewers", "80", "--duration", "15",
         "--reports", str(reports)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "loadtest PASS" in out and "invariant FAIL" not in out, out
    assert "invariant PASS  locust: 0 failures of" in out, out
    for check in ("stock", "orders", "clients"):
        assert f"_s1 {check}:" in out, out
    assert "_p1 sums:" in out and "_p2 sums:" in out, out

    stats = {(e["method"], e["name"]): e for e in json.loads((reports / "locust_stats.json").read_text())}
    assert sum(e["num_failures"] for e in stats.values()) == 0
    for name in ("hello → welcome", "grab at open → grab_result", "claim → claim_result", "danmaku → ack",
                 "ping → pong"):
        assert stats[("WS", name)]["num_requests"] > 0, name
    assert stats[("PUSH", "danmaku")]["num_requests"] > 0
    assert (reports / "report.html").stat().st_size > 0
    assert (reports / "locust_stats.csv").exists()
    tally = json.loads((reports / "summary.json").read_text())
    assert tally["counts"].get("grab won", 0) > 0 and tally["claims"]
