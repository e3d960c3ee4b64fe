"""The examples run as a newcomer runs them: ``examples/sdk_quickstart.py`` against a real
``liveserver serve --dev`` subprocess, and the README shows the code it runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from ..conftest import free_port
from .test_cli import dev_server  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "sdk_quickstart.py"


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(QUICKSTART), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def steps(stdout: str) -> dict[str, dict]:
    """The example's lines: a step's name, then the server's answer as JSON."""
    out = {}
    for line in stdout.splitlines():
        name, _, answer = line.partition(" {")
        out[name.strip()] = json.loads("{" + answer)
    return out


def test_sdk_quickstart_runs_against_a_dev_server(dev_server: str) -> None:
    """Tokens from the server itself, a room, a pinned product, a pong, a sale and a won grab."""
    for _ in range(2):  # and again on the same server: nothing in it is fixed that a second run trips on
        proc = run_example(dev_server)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        seen = steps(proc.stdout)
        assert seen["welcome room"]["status"] == "live" and seen["welcome room"]["online"] == 1
        assert seen["product_pinned"]["product_id"] == "tea-1"
        assert seen["pong"]["type"] == "pong"
        grab = seen["grab_result"]
        assert grab["ok"] is True and grab["order_id"].startswith(seen["flash sale"]["sale_id"])
        assert seen["room ended"]["status"] == "ended"


def test_sdk_quickstart_without_a_server_says_so() -> None:
    proc = run_example(f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and "liveserver serve --dev" in lines[0], proc.stderr


def test_readme_shows_the_example_it_runs() -> None:
    """Every line of Python the README's SDK section shows is the example's, and the section says how
    to run it (a commented-out call that does nothing when copied cannot hide there)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The SDK", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, section
    source = QUICKSTART.read_text()
    for block in blocks:
        for definition in block.split("\n\n\n"):  # functions shown one after the other
            assert definition.strip() in source, definition
    assert "python examples/sdk_quickstart.py" in section and "serve --dev" in section
