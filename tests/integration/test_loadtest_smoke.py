"""The Locust load test as a user runs it: the one command's short version (CI: a small spike, no
failures, the books balance), its usage errors, what it says without the load extra (and the
benchmarks without theirs), plain Locust's own -u/-r/-t, and the client's stop race.

Locust patches the standard library with gevent when it is imported, so it
runs only in subprocesses here, never in the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_cli import dev_server  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]
_PIP = Path(sys.executable).with_name("pip")
#: the pip the messages name: ``.venv/bin/pip`` in a checkout with its own venv (as the READMEs show),
#: its full path where the venv is elsewhere (a git worktree using its main checkout's venv)
PIP = str(_PIP.relative_to(ROOT)) if _PIP.is_relative_to(ROOT) else str(_PIP)


def python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` from the repository root, as the README's commands run."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def without(modules: list[str], code: str) -> list[str]:
    """``-c`` arguments that run ``code`` as if ``modules`` were not installed (no import finds them)."""
    hide = "".join(f"sys.modules[{m!r}] = None; " for m in modules)
    return ["-c", f"import sys, runpy; {hide}{code}"]


# -- the extras, said up front ---------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "named"), [(["locust"], "locust"), (["websocket"], "websocket-client")])
def test_loadtest_without_the_load_extra(tmp_path: Path, hidden: list[str], named: str) -> None:
    """One line saying what to install, exit 2, before any server, report or Locust."""
    reports = tmp_path / "reports"
    proc = python(*without(hidden, f"sys.argv = ['loadtest.run', '--reports', {str(reports)!r}]; "
                                   "runpy.run_module('loadtest.run', run_name='__main__')"))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"loadtest: needs the load extra ({named} missing): {PIP} install -e '.[load]'"], proc.stderr
    assert not reports.exists()


@pytest.mark.parametrize(("hidden", "line"), [
    (["socketio"], f"bench: needs the bench extra (python-socketio missing): {PIP} install -e '.[bench]'"),
    (["socketio", "psutil"], "bench: needs the bench extra (python-socketio, psutil missing): "
                             f"{PIP} install -e '.[bench]'"),
])
def test_bench_without_the_bench_extra(hidden: list[str], line: str) -> None:
    proc = python(*without(hidden, "sys.argv = ['bench/run_all.py', '--quick']; "
                                   "runpy.run_path('bench/run_all.py', run_name='__main__')"))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [line], proc.stderr


# -- usage errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--duration", "5"], ["--duration", "-1"], ["--viewers", "0"], ["--rooms", "two"], ["--stock", "-3"],
    ["--workers", "-1"], ["--max-failure-ratio", "2"], ["-u", "100"], ["--run-time=20s"],
])
def test_bad_values_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    """argparse's usage and one error line, exit 2: no traceback, nothing started."""
    reports = tmp_path / "reports"
    proc = python("-m", "loadtest.run", "--reports", str(reports), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("usage: python -m loadtest.run") and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("python -m loadtest.run: error: ")
    assert not reports.exists()


def test_plain_locust_checks_the_load_test_options() -> None:
    proc = python("-m", "locust", "-f", "loadtest/locustfile.py", "--headless", "--duration", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "argument --duration: a show lasts at least 10 seconds" in proc.stderr.strip().splitlines()[-1]


# -- plain Locust ----------------------------------------------------------------------------------------


def test_plain_locust_follows_u_r_t(dev_server: str) -> None:
    """Without --shape, -u users at -r a second for -t (hosts included in -u), as in any Locust run;
    the host still plays a programme (a sale, a red packet) and nothing fails."""
    started = time.monotonic()
    proc = python("-m", "locust", "-f", "loadtest/locustfile.py", "--host", dev_server, "--headless",
                  "-u", "6", "-r", "6", "-t", "10s", "--only-summary", "--json", timeout=90)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert elapsed < 40, f"a -t 10s run took {elapsed:.0f} s"
    assert '{"Host": 1, "Viewer": 5} (6 total users)' in proc.stderr, proc.stderr[-3000:]
    stats = {(e["method"], e["name"]): e for e in json.loads(proc.stdout)}
    assert sum(e["num_failures"] for e in stats.values()) == 0, proc.stdout
    assert stats[("WS", "hello → welcome")]["num_requests"] == 6
    assert stats[("POST", "/api/v1/rooms/[room]/flash-sales")]["num_requests"] >= 1
    assert stats[("POST", "/api/v1/rooms/[room]/red-packets")]["num_requests"] >= 1


def test_a_shaped_run_says_it_ignores_u(dev_server: str) -> None:
    proc = python("-m", "locust", "-f", "loadtest/locustfile.py", "--host", dev_server, "--headless",
                  "--shape", "spike", "--viewers", "4", "--duration", "10", "-u", "100", "--only-summary", timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--shape spike plays its own crowd: -u ignored" in proc.stderr
    assert "(101 total users)" not in proc.stderr and "(5 total users)" in proc.stderr


# -- the client's stop race ----------------------------------------------------------------------------------

_STOP_RACE = """
import json, sys, urllib.request
import gevent
from locust.env import Environment
from loadtest.wsclient import Closed, LiveSocket, Refused

base = sys.argv[1]
req = urllib.request.Request(base + "/api/v1/dev/tokens", data=b'{"sub": "racer"}', method="POST")
token = json.load(urllib.request.urlopen(req))["token"]
env, failures = Environment(), []
env.events.request.add_listener(
    lambda name, exception=None, **_: exception is not None and failures.append(f"{name}: {exception!r}"))
sock = LiveSocket(env, base.replace("http", "ws", 1) + "/ws", lambda msg, size: None, reply_timeout_s=2)
sock.join(token, "demo")
try:  # a real failure is still one: a reply of the wrong type
    sock.request({"type": "ping", "t": 1}, "ping as ack", expect="ack")
except Refused:
    pass
# a command waiting for a reply when the user closes (a like has none: it would wait for the timeout)
waiting = gevent.spawn(sock.request, {"type": "like", "count": 1}, "like → ack", expect="ack")
gevent.sleep(0.3)
sock.close()
waiting.join(5)
outcomes = [type(waiting.exception).__name__]
for send in (lambda: sock.send({"type": "like", "count": 1}, "like"),
             lambda: sock.request({"type": "ping", "t": 2}, "ping → pong", expect="pong")):
    try:  # a reaction that still sends after the close
        send()
    except Closed as exc:
        outcomes.append(str(exc))
gevent.sleep(2.5)  # past the reply timeout
print(json.dumps({"failures": failures, "outcomes": outcomes}))
"""


def test_no_failure_for_what_the_close_cut_off(dev_server: str) -> None:
    """After the user closed its socket (Locust stopping it), a reply cut off by the close and a send
    that comes too late (``closed: not connected``) are raised, not reported as failures."""
    proc = python("-c", _STOP_RACE, dev_server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["outcomes"] == ["Closed", "closed: not connected", "closed: not connected"], result
    assert result["failures"] == ["ping as ack: Refused(\"expected ack, got 'pong'\")"], result


# -- the one command ------------------------------------------------------------------------------------------


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
    assert f"HTML report {reports / 'report.html'}" in out, out
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
