"""The Lua scripts, loaded from ``lua/*.lua`` and registered once per client.

redis-py's registered scripts run by EVALSHA and reload themselves on
NOSCRIPT, so a restarted or flushed script cache costs one extra round trip,
never an error.
"""

from __future__ import annotations

from importlib import resources

from redis.commands.core import AsyncScript

__all__ = ["Scripts", "load_source"]


def load_source(name: str) -> str:
    """The text of ``lua/<name>.lua``; ``<domain>_*`` scripts get ``_<domain>_lib.lua`` in front
    (Redis Lua has no ``require``: shared helpers are prepended at load time)."""
    lua = resources.files(__package__).joinpath("lua")
    text = lua.joinpath(f"{name}.lua").read_text("utf-8")
    for domain in ("seckill", "redpacket"):
        if name.startswith(f"{domain}_"):
            text = lua.joinpath(f"_{domain}_lib.lua").read_text("utf-8") + "\n" + text
    return text


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

    def __init__(self, client: object) -> None:
        for name in self.__annotations__:
            setattr(self, name, client.register_script(load_source(name)))  # type: ignore[attr-defined]
