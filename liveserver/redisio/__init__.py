"""Redis I/O: client set-up, the keyspace and the Lua scripts."""

from __future__ import annotations

from .client import REDIS_DOWN, RedisClient, check_reachable, connect, connect_pubsub, describe_url
from .keyspace import Keyspace, RoomKeys
from .scripts import Scripts
from .store import Store

__all__ = [
    "REDIS_DOWN",
    "Keyspace",
    "RedisClient",
    "RoomKeys",
    "Scripts",
    "Store",
    "check_reachable",
    "connect",
    "connect_pubsub",
    "describe_url",
]
