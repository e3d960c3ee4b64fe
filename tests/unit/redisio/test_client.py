"""What counts as "Redis did not do it": one tuple, used by every module (read from the source)."""

from __future__ import annotations

from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError

import liveserver
from liveserver.redisio.client import REDIS_DOWN


def test_a_cluster_failure_is_a_redis_failure_too() -> None:
    for exc in (RedisClusterException("CROSSSLOT"), RedisConnectionError("gone"), ResponseError("BUSY"),
                TimeoutError(), ConnectionResetError()):
        assert isinstance(exc, REDIS_DOWN), exc
    assert not isinstance(ValueError(), REDIS_DOWN)


def test_no_module_keeps_a_narrower_list_of_its_own() -> None:
    """A hand-written ``except (RedisError, OSError)`` misses the cluster client's exceptions,
    which then surface as 500s (issue: every grab on a cluster answered 500)."""
    narrow = []
    for path in Path(liveserver.__file__).parent.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "except (RedisError" in text or "_REDIS_DOWN = " in text or "suppress(RedisError" in text:
            narrow.append(path.name)
    assert narrow == []
