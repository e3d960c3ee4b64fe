"""The Lua scripts, loaded from ``lua/*.lua`` and registered once per client.

redis-py's registered scripts run by EVALSHA and reload themselves on
NOSCRIPT, so a restarted or flushed script cache costs one extra round trip,
never an error.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any, Protocol

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

__all__ = ["ScriptObserver", "Scripts", "load_source"]


class ScriptObserver(Protocol):
    """Told how long each script call took and whether Redis failed it (``/metrics``)."""

    def script_called(self, name: str, seconds: float, failed: bool) -> None: ...


class _Observed:
    """A registered script whose direct calls are timed (calls queued on a pipeline are not)."""

    __slots__ = ("_name", "_observer", "_script")

    def __init__(self, name: str, script: AsyncScript, observer: ScriptObserver) -> None:
        self._name = name
        self._script = script
        self._observer = observer

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if client is not None:
            return await self._script(keys=keys, args=args, client=client)
        started = time.perf_counter()
        try:
            result = await self._script(keys=keys, args=args)
        except RedisError:
            self._observer.script_called(self._name, time.perf_counter() - started, True)
            raise
        self._observer.script_called(self._name, time.perf_counter() - started, False)
        return result


#: The shared helpers (``lua/_<lib>_lib.lua``) each script needs, prepended in this order.
_LIBS: dict[str, tuple[str, ...]] = {
    "room_create": ("ids",),
    "danmaku_send": ("ids", "gcra"),
    "ratelimit_take": ("gcra",),
    "seckill_grab": ("gcra",),
}


def load_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` with its helpers in front: ``<domain>_*`` scripts get
    ``_<domain>_lib.lua``, and ``_LIBS`` names the others (Redis Lua has no ``require``:
    shared helpers are prepended at load time)."""
    lua = resources.files(__package__).joinpath("lua")
    libs = list(_LIBS.get(name, ()))
    if name in ("presence_beat", "presence_join"):
        libs.append("presence")
    if name.startswith("seckill_"):
        libs += ["ids", "seckill"]
    elif name.startswith("redpacket_"):
        libs.append("redpacket")
    parts = [lua.joinpath(f"_{lib}_lib.lua").read_text("utf-8") for lib in libs]
    return "\n".join([*parts, lua.joinpath(f"{name}.lua").read_text("utf-8")])


class Scripts:
    """Every script, as an attribute named after its file."""

    room_create: AsyncScript
    room_transition: AsyncScript
    room_pin: AsyncScript
    room_sanction: AsyncScript
    danmaku_send: AsyncScript
    danmaku_delete: AsyncScript
    presence_join: AsyncScript
    presence_leave: AsyncScript
    presence_beat: AsyncScript
    presence_read: AsyncScript
    presence_reap: AsyncScript
    ratelimit_take: AsyncScript
    seckill_create: AsyncScript
    seckill_grab: AsyncScript
    seckill_pay: AsyncScript
    seckill_cancel: AsyncScript
    seckill_expire: AsyncScript
    seckill_announce: AsyncScript
    redpacket_create: AsyncScript
    redpacket_claim: AsyncScript
    redpacket_expire: AsyncScript
    schedule_claim: AsyncScript
    health_check: AsyncScript

    def __init__(self, client: object, observer: ScriptObserver | None = None) -> None:
        for name in self.__annotations__:
            script = client.register_script(load_source(name))  # type: ignore[attr-defined]
            setattr(self, name, script if observer is None else _Observed(name, script, observer))
