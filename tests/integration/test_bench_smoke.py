"""The danmaku benchmark's short version (CI): it runs end to end and loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_danmaku_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "danmaku.py"), "--quick", "--peer", "none", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = json.loads(out.read_text())
    assert result["target"] == "liveserver"
    assert result["accepted"] > 100 and result["lost"] == 0
    assert result["delivered"] == result["accepted"] * result["viewers"]
    assert result["server_cpu_s"] > 0 and result["p99_ms"] is not None


@pytest.mark.slow
def test_seckill_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "seckill.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    raw, ws = json.loads(out.read_text())
    assert raw["grabs"] > 0 and ws["grabs"] > 0 and ws["not_ok"] == 0
    assert ws["server_cpu_us_per_grab"] > 0 and ws["p99_ms"] is not None


@pytest.mark.slow
def test_redpacket_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "redpacket.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    raw, ws = json.loads(out.read_text())
    assert raw["cents"] == ws["cents"] == 300 * 100  # every share claimed, sums exact
    assert ws["claims"] == 300 and ws["not_ok"] == 0
