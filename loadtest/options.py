"""The load test's own Locust options (each also read from a ``LOADTEST_*`` environment variable).

Locust hands custom options from the master to its workers with every spawn
message, so a worker's host user plans the same show as the master's shape.
"""

from __future__ import annotations

from typing import Any

from locust import events
from locust.env import Environment

from .scenario import (
    DEFAULT_DURATION_S,
    SHAPES,
    Scenario,
    new_run_id,
    non_negative_int,
    positive_int,
    positive_seconds,
    share,
    show_duration,
)

__all__ = ["claim_ratio", "grab_ratio", "reply_timeout_s", "run_id", "scenario", "summary_file"]


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--shape", choices=SHAPES, default="evening", env_var="LOADTEST_SHAPE",
                        help="evening: 18:00-24:00 compressed, crest at 21:00; spike: a crowd grabs one flash sale")
    parser.add_argument("--viewers", type=positive_int, default=200, env_var="LOADTEST_VIEWERS",
                        help="viewers at the crest, over all rooms (the hosts come on top)")
    parser.add_argument("--duration", type=show_duration, default=0.0, env_var="LOADTEST_DURATION",
                        help="length of the show in seconds, at least 10 (default: evening 360, spike 60)")
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


def scenario(environment: Environment) -> Scenario:
    """The show of this run (the same on the master and on every worker)."""
    opts = _options(environment)
    shape = str(opts.shape)
    return Scenario(
        shape=shape,
        viewers=int(opts.viewers),
        duration_s=float(opts.duration) or DEFAULT_DURATION_S[shape],
        rooms=int(opts.rooms),
        stock=int(opts.stock),
    )


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
