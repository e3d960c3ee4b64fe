"""Redis client set-up.

A standalone Redis gets a ``BlockingConnectionPool``: past its size a command
waits for a free connection instead of raising ``MaxConnectionsError``.  The
client retries a command on a dropped connection or a timeout, so every
script the server runs is safe to run twice.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["REDIS_DOWN", "WHOLE_REDIS_DOWN", "RedisClient", "check_reachable", "connect", "connect_pubsub", "describe_url", "json_object"]

RedisClient = Redis | RedisCluster

#: Everything that means "Redis did not do it": the caller answers 503 / ``unavailable`` / close
#: 1013 and counts it.  redis-py's cluster client raises ``RedisClusterException``, which is not a
#: ``RedisError`` (CROSSSLOT, a slot with no node, a cluster that is down).
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
#: The part of those that means Redis itself is unreachable (not one key or one command refused):
#: a loop over many items stops its round at once instead of failing every item in turn.
WHOLE_REDIS_DOWN: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError,
                                                      asyncio.TimeoutError)

def json_object(raw: str | bytes | None) -> dict[str, Any] | None:
    """A JSON object another node kept in a Redis string, or None: absent, not JSON, or not an
    object (a value written by a newer or a broken node never fails the reader)."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _common(decode: bool) -> dict[str, Any]:
    return {
        "decode_responses": decode,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=3),
    }

def connect(url: str, *, cluster: bool = False, max_connections: int = 64, decode: bool = True) -> RedisClient:
    """The client for commands and scripts (responses decoded to ``str``; ``decode=False``:
    bytes, for binary values such as video segments)."""
    if cluster:
        return RedisCluster.from_url(url, **_common(decode))
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=10, **_common(decode)
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections

def connect_pubsub(url: str) -> Redis:
    """A client for the broker's pub/sub connection (bytes, not decoded).

    On a cluster, classic PUBLISH reaches every node, so one connection to
    the given node sees every room channel.
    """
    common = _common(False)
    common["socket_timeout"] = None  # the subscriber waits for messages indefinitely
    return Redis.from_url(url, **common)

async def check_reachable(client: RedisClient, timeout_s: float = 3.0) -> None:
    """PING once; raise ``ConnectionError`` with a one-line reason if Redis does not answer."""
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
    except (TimeoutError, RedisError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ConnectionError(reason) from None

def describe_url(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
