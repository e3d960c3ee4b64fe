"""One command for a whole load test: server, Locust headless, reports, figures, invariants.

    .venv/bin/python -m loadtest.run --shape spike --viewers 2000

1. Without ``--host`` it starts ``liveserver serve --dev`` on a free loopback
   port, with its embedded Redis in a temporary directory (stopped and
   removed afterwards).
2. It runs Locust headless on ``loadtest/locustfile.py`` (with ``--workers N``:
   a master and N local workers) and writes the HTML report, the CSV files
   and the logs to ``--reports`` (default ``loadtest/reports/<shape>-<time>/``).
3. It prints the figures per request type, what the clients saw (grab and
   claim outcomes), and every invariant (``loadtest/invariants.py``), then
   ``loadtest PASS`` or ``loadtest FAIL``.  The exit status is 1 when an
   invariant fails or Locust counted more failures than ``--max-failure-ratio``
   allows (default: none at all).

Options this command does not know are passed to Locust (``--reply-timeout 5``,
``--grab-ratio 0.9``, ``--loglevel INFO``, ...), except Locust's ``-u``, ``-r``
and ``-t``: the show sets the crowd (``--viewers``) and its length (``--duration``).

It needs the ``load`` extra (Locust, websocket-client); without it, it says
what to install in one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveserver.embedded import terminate

from .invariants import Api, Check, check_run
from .scenario import (
    DEFAULT_DURATION_S,
    SHAPES,
    Scenario,
    new_run_id,
    non_negative_int,
    positive_int,
    share,
    show_duration,
)
from .tokens import mint, platform_secret

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"

#: What the load test imports beyond liveserver's own dependencies (module: distribution), all in
#: the ``load`` extra of pyproject.toml.
LOAD_EXTRA = {"locust": "locust", "websocket": "websocket-client"}

#: Locust's options that a shaped run does not use: the show sets the crowd and the length.
_LOCUST_SIZE_OPTIONS = ("-u", "-r", "-t", "--spawn-rate", "--run-time")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default="spike")
    parser.add_argument("--viewers", "--users", dest="viewers", type=positive_int, default=200,
                        help="viewers at the crest, over all rooms (default 200)")
    parser.add_argument("--duration", type=show_duration, default=0.0,
                        help="seconds, at least 10 (default: evening 360, spike 60)")
    parser.add_argument("--rooms", type=positive_int, default=1)
    parser.add_argument("--stock", type=non_negative_int, default=0,
                        help="units per flash sale (default: a tenth of a room)")
    parser.add_argument("--host", default="", help="a running server (default: start one on loopback)")
    parser.add_argument("--reports", type=Path, help="directory for the reports (default loadtest/reports/...)")
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="run Locust distributed: a master and N workers")
    parser.add_argument("--max-failure-ratio", type=share, default=0.0,
                        help="share of failed requests still accepted (default 0: any failure fails the run)")
    args, extra = parser.parse_known_args(argv)
    if sized := [arg for arg in extra if _is_size_option(arg)]:
        parser.error(f"{sized[0]} does not apply: the show sets the crowd (--viewers) and the length (--duration)")
    return args, extra


def _is_size_option(arg: str) -> bool:
    """``-u 100``, ``-u100``, ``--run-time=20s``: Locust's options for an unshaped run."""
    name = arg.split("=", 1)[0]
    return name in _LOCUST_SIZE_OPTIONS or (not arg.startswith("--") and arg[:2] in _LOCUST_SIZE_OPTIONS)


def missing_extra() -> str | None:
    """The one line to print when the ``load`` extra is not installed, else None."""
    missing = [dist for module, dist in LOAD_EXTRA.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return f"loadtest: needs the load extra ({', '.join(missing)} missing): {pip_install('load')}"


def pip_install(extra: str) -> str:
    """The command that installs ``extra`` of this checkout into the running interpreter's environment."""
    pip = Path(sys.executable).with_name("pip")
    command = shlex.quote(_shown(pip)) if pip.exists() else f"{shlex.quote(sys.executable)} -m pip"
    return f"{command} install -e {shlex.quote(f'{_shown(ROOT)}[{extra}]')}"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (``.venv/bin/pip``, ``.``)."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def main(argv: list[str] | None = None) -> int:
    args, locust_extra = parse_args(argv)
    if problem := missing_extra():
        print(problem, file=sys.stderr)
        return 2
    show = Scenario(args.shape, args.viewers, args.duration or DEFAULT_DURATION_S[args.shape], args.rooms, args.stock)
    reports = args.reports or ROOT / "loadtest" / "reports" / f"{args.shape}-{time.strftime('%Y%m%d-%H%M%S')}"
    reports.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    with ExitStack() as stack:
        server = None if args.host else stack.enter_context(local_server(reports / "server.log"))
        base_url = server.base_url if server else args.host
        print(f"loadtest: {show.shape}, {show.viewers} viewers in {show.rooms} room(s), {show.duration_s:g} s, "
              f"run {run_id}, against {base_url}; reports in {reports}", flush=True)
        locust = run_locust(show, base_url, run_id, reports, args.workers, locust_extra)
        server_cpu_s = server.cpu_s() if server else None
        stats = read_stats(reports / "locust_stats.json")
        print_figures(stats, locust, server_cpu_s, show)
        tally = _read_json(reports / "summary.json")
        print_outcomes(tally)
        checks = [locust_check(stats, locust, args.max_failure_ratio)]
        checks += check_run(Api(base_url, admin_token(base_url, run_id)), show, run_id, tally,
                            trust_clients=stats.failures == 0)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"loadtest {'FAIL' if failed else 'PASS'}: {len(checks) - len(failed)} of {len(checks)} checks hold; "
          f"{report_line(reports)}")
    return 1 if failed else 0


def report_line(reports: Path) -> str:
    """Where to look next: the HTML report, or Locust's log when Locust wrote no report."""
    html = reports / "report.html"
    if html.exists():
        return f"HTML report {html}"
    return f"no HTML report (Locust did not write one): see {reports / 'locust.log'}"


# -- the server ------------------------------------------------------------------------------


@dataclass
class LocalServer:
    base_url: str
    proc: subprocess.Popen[bytes]

    def cpu_s(self) -> float | None:
        """CPU seconds the server used so far (Linux ``/proc``; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def local_server(log_path: Path) -> Iterator[LocalServer]:
    """``liveserver serve --dev`` on a free loopback port; its embedded Redis lives in a temporary
    directory (the server's working directory too, so nothing lands in the repository)."""
    with tempfile.TemporaryDirectory(prefix="liveserver-loadtest-") as tmp, open(log_path, "wb") as log:
        port = free_port()
        cmd = [sys.executable, "-m", "liveserver", "serve", "--dev", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(Path(tmp) / "data"), "--log-level", "WARNING"]
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        try:
            server = LocalServer(f"http://127.0.0.1:{port}", proc)
            wait_healthy(server, log_path)
            yield server
        finally:
            stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(server: LocalServer, log_path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"the server exited ({server.proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(server.base_url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not become healthy in {timeout_s:g} s; see {log_path}")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (a server drains, Locust writes its reports), then kill if it hangs."""
    terminate(proc, timeout_s)


def admin_token(base_url: str, run_id: str) -> str:
    """For reading the sales, orders and packets (claims are shown to hosts and admins only)."""
    secret = platform_secret()
    if secret:
        return mint(secret, f"{run_id}_checker", "admin")
    body = json.dumps({"sub": f"{run_id}_checker", "role": "admin"}).encode()
    request = urllib.request.Request(base_url.rstrip("/") + "/api/v1/dev/tokens", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(json.loads(resp.read())["token"])
    except urllib.error.HTTPError as exc:
        raise SystemExit("no admin token for the check: set LIVESERVER_SECRET, or run the server with --dev") from exc


# -- Locust -------------------------------------------------------------------------------------


@dataclass
class LocustRun:
    returncode: int
    wall_s: float
    cpu_s: float  # the Locust processes (master and workers) together
    command: list[str]


def run_locust(show: Scenario, base_url: str, run_id: str, reports: Path, workers: int,
               extra: list[str]) -> LocustRun:
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base_url,
        "--shape", show.shape, "--viewers", str(show.viewers), "--duration", f"{show.duration_s:g}",
        "--rooms", str(show.rooms), "--stock", str(show.stock), "--run-id", run_id,
        "--summary-file", str(reports / "summary.json"), "--html", str(reports / "report.html"),
        "--csv", str(reports / "locust"), "--json-file", str(reports / "locust_stats"), "--only-summary", *extra,
    ]
    worker_cmd = []
    if workers:
        port = free_port()
        cmd += ["--master", "--expect-workers", str(workers), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(port)]
        worker_cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
                      "--master-host", "127.0.0.1", "--master-port", str(port)]
    print("locust:", shlex.join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    with ExitStack() as stack:
        log = stack.enter_context(open(reports / "locust.log", "wb"))
        master = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        procs = [master]
        for i in range(workers):
            wlog = stack.enter_context(open(reports / f"worker-{i}.log", "wb"))
            procs.append(subprocess.Popen(worker_cmd, cwd=ROOT, stdout=wlog, stderr=subprocess.STDOUT))
        try:
            master.wait(timeout=show.duration_s + 120)
        except subprocess.TimeoutExpired:
            print("locust: did not finish in time; stopping it", flush=True)
        for proc in procs:
            stop(proc)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return LocustRun(master.returncode, time.monotonic() - start, cpu, cmd)


# -- figures ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of Locust's statistics (a request type and name)."""

    type: str
    name: str
    count: int
    failures: int
    response_times: dict[int, int]  # Locust's rounded milliseconds -> how many
    max_ms: float

    def percentile(self, p: float) -> int:
        """As Locust computes it: the smallest rounded time that ``p`` of the requests did not exceed."""
        wanted, seen = p * self.count, 0
        for ms in sorted(self.response_times):
            seen += self.response_times[ms]
            if seen >= wanted:
                return ms
        return 0


@dataclass
class Stats:
    rows: list[Row]
    span_s: float  # first request to last

    @property
    def requests(self) -> int:
        return sum(r.count for r in self.rows)

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.rows)


def read_stats(path: Path) -> Stats:
    """Locust's ``--json-file``: written after the users stopped (the CSV files are written once a
    second and miss what the users did in ``on_stop``, such as ending the rooms)."""
    entries = json.loads(path.read_text()) if path.exists() else []
    rows = [Row(e["method"], e["name"], e["num_requests"], e["num_failures"],
                {int(ms): n for ms, n in e["response_times"].items()}, e["max_response_time"] or 0.0)
            for e in entries]
    span = max((e["last_request_timestamp"] or 0 for e in entries), default=0) - min(
        (e["start_time"] for e in entries), default=0)
    return Stats(rows, max(span, 1.0))


def print_figures(stats: Stats, locust: LocustRun, server_cpu_s: float | None, show: Scenario) -> None:
    print(f"\n{'type':<8}{'name':<44}{'count':>9}{'fail':>7}{'per s':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}")
    for r in sorted(stats.rows, key=lambda r: (r.type, r.name)):
        print(f"{r.type:<8}{r.name[:43]:<44}{r.count:>9}{r.failures:>7}{r.count / stats.span_s:>9.1f}"
              f"{r.percentile(0.5):>8}{r.percentile(0.99):>8}{r.max_ms:>8.0f}")
    cpu = f", server CPU {server_cpu_s:.1f} s" if server_cpu_s is not None else ""
    print(f"\n{stats.requests} requests and pushes, {stats.failures} failures in {locust.wall_s:.0f} s "
          f"(show {show.duration_s:g} s); Locust CPU {locust.cpu_s:.1f} s{cpu}")


def print_outcomes(tally: dict[str, Any]) -> None:
    """What the viewers were answered, by command: the business outcome, not the timing."""
    by_command: dict[str, list[str]] = {}
    for key, n in sorted(tally.get("counts", {}).items()):
        command, _, outcome = key.partition(" ")
        by_command.setdefault(command, []).append(f"{outcome} {n}")
    for command, outcomes in by_command.items():
        print(f"outcomes {command}: {', '.join(outcomes)}")
    orders = tally.get("orders", {}).values()
    print(f"outcomes orders (as the viewers left them): won {sum(s == 'won' for s in orders)}, "
          f"paid {sum(s == 'paid' for s in orders)}, cancelled {sum(s == 'cancelled' for s in orders)}\n")


def locust_check(stats: Stats, locust: LocustRun, max_ratio: float) -> Check:
    """Locust's own verdict: failures within the allowance and a clean exit.  Locust exits with 1
    when anything failed, so a 1 without failures means an exception inside a user."""
    allowed = int(max_ratio * stats.requests)
    clean = locust.returncode == 0 or (locust.returncode == 1 and stats.failures > 0)
    ok = stats.requests > 0 and stats.failures <= allowed and clean
    return Check("locust", ok, f"{stats.failures} failures of {stats.requests} requests (allowed {allowed}), "
                               f"exit code {locust.returncode}")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


if __name__ == "__main__":
    sys.exit(main())
