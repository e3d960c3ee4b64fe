"""The benchmarks' one command at its --quick size (CI): every benchmark runs end to end, its
summary row is printed and passes its check (nothing lost, refused or off by a cent, every
viewer held and welcomed, the online count exact)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (benchmark, figure) of every summary row, as bench/run_all.py prints them.
ROWS = [
    ("danmaku fan-out", "items delivered per server CPU-s, 100 viewers"),
    ("flash-sale grabs", "grabs/s end to end, closed loop, 200 grabbers"),
    ("red-packet claims", "claims/s end to end, one spike of 300"),
    ("idle connections", "viewers held by one process"),
    ("idle connections", "server memory per idle viewer, KiB"),
    ("join storm, 300 at once", "seconds until the last viewer is in the room"),
    ("join storm, 300 at once", "p99 join latency, ms"),
    ("live video fan-out", "WHEP viewers a core could hold (4 measured)"),
]


def _table(stdout: str) -> list[list[str]]:
    """The summary table's body rows, split into cells."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert lines and lines[0].startswith("| benchmark |"), stdout
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


@pytest.mark.slow
def test_run_all_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = _table(proc.stdout)
    assert [(cells[0], cells[1]) for cells in table] == ROWS, proc.stdout
    for cells in table:
        assert cells[6] == "ok", cells
        assert cells[2] != "–" and cells[4] != "–" and cells[5].endswith("×"), cells  # figure, baseline, ratio

    report = json.loads(out.read_text())
    assert all(not row["problems"] for row in report["rows"])
    results = report["results"]
    ls, peer = results["danmaku"]
    assert ls["lost"] == 0 and ls["accepted"] >= 90 and ls["delivered"] == ls["accepted"] * ls["viewers"]
    assert peer["target"] == "socketio" and peer["delivered"] > 0
    raw, ws = results["redpacket"]
    assert raw["cents"] == ws["cents"] == 300 * 100
    assert results["seckill"][1]["not_ok"] == 0
    for r in results["video"]:  # every viewer of both servers got the program at its rate
        assert r["fps_per_viewer"] >= 25, r
    for r in results["connections"]:
        assert r["errors"] == {}
        if r["target"] == "liveserver":
            assert r["online"] == r["asked"]
