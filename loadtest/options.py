"""The load test's own Locust options (each also read from a ``LOADTEST_*`` environment variable).

Locust hands custom options from the master to its workers with every spawn
message, so a worker's host user plans the same show as the master's shape.

``--shape evening|spike`` plays a show: the crowd follows its curve, sized by
``--viewers`` and ``--duration``.  Without ``--shape``, Locust's own ``-u``,
``-r`` and ``-t`` set the crowd as in any Locust run, and each host plays the
evening's programme (pins, five sales, three red packets) over ``-t`` (or
``--duration``, default 360 s), with the sales and packets sized for ``-u``.
"""

from __future__ import annotations

from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from .scenario import (
    DEFAULT_DURATION_S,
    MIN_DURATION_S,
    SHAPES,
    Scenario,
    new_run_id,
    non_negative_int,
    positive_int,
    positive_seconds,
    share,
    show_duration,
)

__all__ = ["claim_ratio", "grab_ratio", "reply_timeout_s", "run_id", "scenario", "shape", "summary_file"]

#: The programme a host plays when no ``--shape`` was given (the crowd is Locust's -u/-r).
UNSHAPED_PROGRAMME = "evening"


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--shape", choices=SHAPES, default="", env_var="LOADTEST_SHAPE",
                        help="play a show: evening (18:00-24:00 compressed, crest at 21:00) or spike (a crowd "
                             "grabs one flash sale), sized by --viewers and --duration; without it, -u/-r/-t "
                             "set the crowd and the host plays the evening's programme")
    parser.add_argument("--viewers", type=positive_int, default=200, env_var="LOADTEST_VIEWERS",
                        help="with --shape: viewers at the crest, over all rooms (the hosts come on top)")
    parser.add_argument("--duration", type=show_duration, default=0.0, env_var="LOADTEST_DURATION",
                        help="length of the show in seconds, at least 10 (default: evening 360, spike 60; "
                             "without --shape: -t, else 360)")
    parser.add_argument("--rooms", type=positive_int, default=1, env_var="LOADTEST_ROOMS",
                        help="live rooms, one host user each; viewers pick one at random")
    parser.add_argument("--stock", type=non_negative_int, default=0, env_var="LOADTEST_STOCK",
                        help="units per flash sale (default: a tenth of a room's crest audience)")
    parser.add_argument("--grab-ratio", type=share, default=0.6, env_var="LOADTEST_GRAB_RATIO",
                        help="share of viewers who grab when a sale opens")
    parser.add_argument("--claim-ratio", type=share, default=0.8, env_var="LOADTEST_CLAIM_RATIO",
                        help="share of viewers who claim a red packet")
    parser.add_argument("--reply-timeout", type=positive_seconds, default=10.0, env_var="LOADTEST_REPLY_TIMEOUT",
                        help="seconds to wait for a WebSocket reply before it counts as a failure")
    parser.add_argument("--run-id", default=new_run_id(), env_var="LOADTEST_RUN_ID",
                        help="prefix of the run's room, sale and packet ids (default: random)")
    parser.add_argument("--summary-file", default="", env_var="LOADTEST_SUMMARY_FILE", include_in_web_ui=False,
                        help="write what the clients saw (grab and claim outcomes, orders) here as JSON at exit")


def _options(environment: Environment) -> Any:
    if environment.parsed_options is None:
        raise RuntimeError("the liveserver load test runs from the locust command line (its options are missing)")
    return environment.parsed_options


def shape(environment: Environment) -> str | None:
    """The show the crowd follows (``--shape``), or None: Locust's -u/-r/-t set the crowd."""
    return str(_options(environment).shape or "") or None


def scenario(environment: Environment) -> Scenario:
    """The show of this run (the same on the master and on every worker)."""
    opts = _options(environment)
    name = shape(environment)
    if name is None:
        return _unshaped(opts)
    return Scenario(
        shape=name,
        viewers=int(opts.viewers),
        duration_s=float(opts.duration) or DEFAULT_DURATION_S[name],
        rooms=int(opts.rooms),
        stock=int(opts.stock),
    )


def _unshaped(opts: Any) -> Scenario:
    """The hosts' programme of a run without ``--shape``: the evening's, over ``-t`` (at least
    10 s) or ``--duration``, with its sales and packets sized for the ``-u`` viewers."""
    rooms = int(opts.rooms)
    users = getattr(opts, _CROWD_USERS, None) or getattr(opts, "num_users", None)
    run_time = getattr(opts, _CROWD_RUN_TIME, None) or getattr(opts, "run_time", None)
    duration = float(opts.duration) or (max(MIN_DURATION_S, float(run_time)) if run_time else 0.0)
    return Scenario(
        shape=UNSHAPED_PROGRAMME,
        viewers=max(1, int(users) - rooms) if users else int(opts.viewers),
        duration_s=duration or DEFAULT_DURATION_S[UNSHAPED_PROGRAMME],
        rooms=rooms,
        stock=int(opts.stock),
    )


#: Locust sends a worker only the options it does not know itself, so the master copies -u and
#: -t (as they are when the test starts: the web UI may have changed them) under these names.
_CROWD_USERS, _CROWD_RUN_TIME = "loadtest_crowd_users", "loadtest_crowd_run_time"


@events.test_start.add_listener
def _share_crowd(environment: Environment, **_: Any) -> None:
    """On the master (or a local run): hand -u and -t to the workers' hosts, for their programme."""
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    opts = environment.parsed_options
    setattr(opts, _CROWD_USERS, getattr(opts, "num_users", None))
    setattr(opts, _CROWD_RUN_TIME, getattr(opts, "run_time", None))


def run_id(environment: Environment) -> str:
    return str(_options(environment).run_id)


def reply_timeout_s(environment: Environment) -> float:
    return float(_options(environment).reply_timeout)


def summary_file(environment: Environment) -> str:
    return str(_options(environment).summary_file)


def grab_ratio(environment: Environment) -> float:
    return float(_options(environment).grab_ratio)


def claim_ratio(environment: Environment) -> float:
    return float(_options(environment).claim_ratio)
