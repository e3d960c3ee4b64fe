"""What a service needs of Redis, in one value: the client, its scripts and the keyspace.

The three always travel together; a service unpacks them once
(``self._redis, self._scripts, self._keys = store``)."""

from __future__ import annotations

from typing import NamedTuple

from .client import RedisClient
from .keyspace import Keyspace
from .scripts import Scripts

__all__ = ["Store"]


class Store(NamedTuple):
    redis: RedisClient
    scripts: Scripts
    keys: Keyspace
