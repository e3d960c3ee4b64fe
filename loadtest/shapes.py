"""The crowd over time: Locust's ``LoadTestShape``, playing the show's audience curve when asked.

``--shape evening`` compresses 18:00-24:00 into ``--duration`` seconds
(default 360: one minute per hour) with the crest at 21:00; ``--shape
spike`` fills the room for one flash sale, thousands grabbing in the same
second.  Both come from :class:`loadtest.scenario.Scenario`, which the host
users read too, so the sales open when the crowd is there.

The user count Locust is given is the audience plus one host per room (the
hosts are ``fixed_count`` users: Locust starts them first and keeps them
through every ramp-down).  With ``--shape``, ``--viewers`` sets the size and
Locust's ``-u``/``-r``/``-t`` do not apply (a warning says so).  Without it
the shape steps aside: it asks for Locust's ``-u`` users at ``-r`` a second
and stops after ``-t`` (or runs until stopped), as a locustfile without a
shape would (``use_common_options``: the web UI shows those fields too).
"""

from __future__ import annotations

import logging
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment

from . import options
from .scenario import Scenario

__all__ = ["LiveShape"]

log = logging.getLogger("loadtest")

#: Locust's options for an unshaped run, as its parser names them.
COMMON_OPTIONS = {"num_users": "-u", "spawn_rate": "-r", "run_time": "-t"}


class LiveShape(LoadTestShape):
    """The audience of ``--shape`` (evening or spike), ticked once a second; Locust's -u/-r/-t without it."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None, "Locust sets the runner before the first tick"
        environment = self.runner.environment
        if options.shape(environment) is None:
            return self._common_options(environment.parsed_options)
        return self._show(options.scenario(environment))

    def _common_options(self, opts: Any) -> tuple[int, float] | None:
        """What Locust does without a shape: ``-u`` users at ``-r`` a second, until ``-t``."""
        run_time = opts.run_time
        if run_time and self.get_run_time() >= run_time:
            return None
        return int(opts.num_users or 1), float(opts.spawn_rate or 1)

    def _show(self, show: Scenario) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= show.duration_s:
            return None
        target = show.audience(t) + show.rooms
        # Fast enough to follow the curve within a second (the spike's rush too), and to close any
        # gap left by the previous tick: a rate of 1 would take seconds to add the last few users.
        slope = abs(show.audience(t + 1) - show.audience(t))
        rate = max(1.0, 2.0 * slope, abs(target - self.get_current_user_count()))
        return target, rate


@events.init.add_listener
def _warn_ignored_options(environment: Environment, **_: Any) -> None:
    """A shaped run sizes its crowd with --viewers and --duration: say so if -u, -r or -t were given."""
    opts = environment.parsed_options
    if opts is None or options.shape(environment) is None:
        return
    given = [flag for name, flag in COMMON_OPTIONS.items() if getattr(opts, name, None)]
    if given:
        log.warning("--shape %s plays its own crowd: %s ignored (size it with --viewers and --duration, "
                    "or leave out --shape)", opts.shape, "/".join(given))
