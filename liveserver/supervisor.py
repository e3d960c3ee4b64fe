"""The node's background loops, supervised.

Each loop guards its own items (one bad room, viewer or entry is logged and
skipped).  Should a loop die all the same (a bug outside those guards), the
supervisor logs the traceback at once, marks the loop down (``/healthz``
answers 503 and names it), and starts it again after a backoff; the deaths
are counted for ``/metrics``.  A loop that has run for ``stable_s`` since its
last start resets its backoff.

Cancellation is the only way a loop ends quietly: :meth:`Loops.stop` cancels
every loop and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoopState", "Loops"]

log = logging.getLogger(__name__)

LoopFactory = Callable[[], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class LoopState:
    name: str
    failures: int = 0
    running: bool = False
    last_error: str = ""
    started_at: float = field(default=0.0)


class Loops:
    def __init__(self, *, backoff_s: float = 1.0, max_backoff_s: float = 30.0, stable_s: float = 60.0) -> None:
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._stable_s = stable_s
        self.states: dict[str, LoopState] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, name: str, factory: LoopFactory) -> None:
        """Run ``factory()`` as a supervised loop called ``name``."""
        state = self.states[name] = LoopState(name)
        self.tasks.append(asyncio.get_running_loop().create_task(self._supervise(state, factory), name=name))

    async def _supervise(self, state: LoopState, factory: LoopFactory) -> None:
        backoff = self._backoff_s
        while True:
            state.running, state.started_at = True, time.monotonic()
            try:
                await factory()
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                state.running = False
                state.failures += 1
                state.last_error = f"{type(exc).__name__}: {exc}"[:200]
                log.exception("background loop %s died (failure %d); restarting in %.1f s", state.name, state.failures, backoff)
            else:
                state.running = False
                state.last_error = "returned"
                log.error("background loop %s returned; restarting in %.1f s", state.name, backoff)
            if time.monotonic() - state.started_at >= self._stable_s:
                backoff = self._backoff_s
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def down(self) -> dict[str, str]:
        """The loops not running now, with their last error (empty: all healthy)."""
        return {s.name: s.last_error or "not running" for s in self.states.values() if not s.running}

    def failures(self) -> dict[str, int]:
        return {s.name: s.failures for s in self.states.values()}

    async def stop(self) -> None:
        """Cancel every loop and wait for it (a loop stuck in a bug is logged, not waited on twice)."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # pragma: no cover - _supervise only ends by cancellation
                log.exception("background loop %s failed at shutdown", task.get_name())
