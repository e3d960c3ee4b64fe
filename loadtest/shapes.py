"""The crowd over time: Locust's ``LoadTestShape`` playing the show's audience curve.

``--shape evening`` compresses 18:00-24:00 into ``--duration`` seconds
(default 360: one minute per hour) with the crest at 21:00; ``--shape
spike`` fills the room for one flash sale, thousands grabbing in the same
second.  Both come from :class:`loadtest.scenario.Scenario`, which the host
users read too, so the sales open when the crowd is there.

The user count Locust is given is the audience plus one host per room (the
hosts are ``fixed_count`` users: Locust starts them first and keeps them
through every ramp-down).  ``--viewers`` sets the size; Locust's own
``-u``/``-r``/``-t`` do not apply to a shaped run.
"""

from __future__ import annotations

from functools import cached_property

from locust import LoadTestShape

from . import options
from .scenario import Scenario

__all__ = ["LiveShape"]


class LiveShape(LoadTestShape):
    """The audience of ``--shape`` (evening or spike), ticked once a second."""

    @cached_property
    def show(self) -> Scenario:
        assert self.runner is not None, "Locust sets the runner before the first tick"
        return options.scenario(self.runner.environment)

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        show = self.show
        if t >= show.duration_s:
            return None
        target = show.audience(t) + show.rooms
        # Fast enough to follow the curve within a second (the spike's rush too), and to close any
        # gap left by the previous tick: a rate of 1 would take seconds to add the last few users.
        slope = abs(show.audience(t + 1) - show.audience(t))
        rate = max(1.0, 2.0 * slope, abs(target - self.get_current_user_count()))
        return target, rate
