"""What the benchmarks share: a Redis and a liveserver on pinned cores, a client role in a
subprocess whose READY/DONE lines bracket the server's CPU measurement, and a table.

Server on core 0; Redis and the load client on core 1.  Loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuv"

__all__ = ["ROOT", "SECRET", "free_port", "liveserver", "pct", "pin", "print_table", "run_role", "start_redis",
           "wait_port"]


def pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


def start_redis() -> tuple[subprocess.Popen, str]:
    from liveserver.embedded import find_redis_server

    port = free_port()
    proc = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: pin(1),
    )
    wait_port(port, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def liveserver(redis_url: str, prefix: str, **settings: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """One liveserver process on core 0; ``settings`` become ``LIVESERVER_<NAME>`` variables."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": prefix,
           "LIVESERVER_LOG_LEVEL": "WARNING", **{f"LIVESERVER_{k.upper()}": str(v) for k, v in settings.items()}}
    server = subprocess.Popen([sys.executable, "-m", "liveserver", "serve", "--port", str(port), "--redis-url", redis_url],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, preexec_fn=lambda: pin(0))
    try:
        wait_port(port, server)
        yield port, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_role(script: str, role_args: list[str], watch_pid: int | None, profile: str | None = None) -> dict:
    """Run ``script`` in its client role on core 1; the CPU of ``watch_pid`` between the role's
    READY and DONE lines is ``cpu_s``; its ``RESULT {json}`` line is the rest."""
    client = subprocess.Popen([sys.executable, script, *role_args], stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: pin(1))
    proc = psutil.Process(watch_pid) if watch_pid else None
    result: dict = {}
    cpu0 = 0.0
    assert client.stdout is not None
    for line in client.stdout:
        if line.startswith("READY") and proc:
            t = proc.cpu_times()
            cpu0 = t.user + t.system
            if profile:
                subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-d", "8", "-p",
                                  str(watch_pid), "-f", "speedscope", "-o", profile, "--nonblocking"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif line.startswith("DONE") and proc:
            t = proc.cpu_times()
            result["cpu_s"] = t.user + t.system - cpu0
        elif line.startswith("RESULT "):
            result.update(json.loads(line[7:]))
    if client.wait(120) != 0 or "target" not in result:
        raise RuntimeError(f"the {role_args[:2]} client failed (exit {client.returncode})")
    return result


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 2)


def print_table(cols: list[str], results: list[dict]) -> None:
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in cols))
