"""What the node does with each message the broker receives.

Most room messages go to the hub as they are (encoded once per protocol,
queued to every local viewer).  A few the node handles first or instead:

- ``_dm`` (a danmaku, by id) and ``danmaku_deleted`` go to the danmaku fan-out,
  which coalesces them per tick;
- ``flash_sale`` and ``coupon`` update the node-local view of the drop (the
  grab fast path), then go to the hub;
- ``_words``, ``_blocklist`` and ``_kick`` are notices between nodes: reload
  a banned-word list or the blocklist, close a banned viewer's sockets.

Whenever the node (re)subscribes a room, the views that notices keep current
start over (:meth:`Router.on_subscribed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .danmaku.fanout import DanmakuFanout
from .danmaku.service import DanmakuService
from .hub import Hub
from .seckill.grabs import Grabs
from .seckill.service import SeckillService
from .tasks import TaskSet
from .wire import CloseCode

__all__ = ["Router"]

Handler = Callable[[str, dict[str, Any]], None]


class Router:
    """The broker's ``deliver`` and ``on_subscribed`` for one node."""

    def __init__(
        self, hub: Hub, fanout: DanmakuFanout, danmaku: DanmakuService, seckill: SeckillService, grabs: Grabs,
        tasks: TaskSet,
    ) -> None:
        self._hub = hub
        self._danmaku = danmaku
        self._seckill = seckill
        self._grabs = grabs
        self._tasks = tasks
        self._handlers: dict[str, Handler] = {
            "_dm": fanout.on_item,
            "danmaku_deleted": fanout.on_delete,
            "_words": self._on_words,
            "_kick": self._on_kick,
            "_blocklist": self._on_blocklist,
            "flash_sale": self._on_drop,
            "coupon": self._on_drop,
        }

    def deliver(self, room: str, msg: dict[str, Any], payload: bytes) -> None:
        handler = self._handlers.get(msg.get("type", ""))
        if handler is not None:
            handler(room, msg)
        elif room:
            self._hub.deliver(room, msg, payload)

    def on_subscribed(self, room: str) -> None:
        """Views kept current by notices start over whenever the node (re)subscribes."""
        if room:
            self._danmaku.invalidate(room)
            self._grabs.forget_room(room)
        else:
            self._on_words("", {})
            self._on_blocklist("", {})

    def _on_words(self, room: str, msg: dict[str, Any]) -> None:
        if room:
            self._danmaku.invalidate(room)
        else:  # the global list changed
            self._tasks.spawn(self._danmaku.load_global_words(), name="reload-words")

    def _on_drop(self, room: str, msg: dict[str, Any]) -> None:
        self._grabs.on_message(room, msg)
        self._hub.deliver(room, msg)

    def _on_blocklist(self, room: str, msg: dict[str, Any]) -> None:
        self._tasks.spawn(self._seckill.load_blocklist(), name="reload-blocklist")

    def _on_kick(self, room: str, msg: dict[str, Any]) -> None:
        user = msg.get("user")
        for conn in self._hub.connections(room):
            if conn.user == user and not conn.is_host:
                conn.close(CloseCode.FORBIDDEN, str(msg.get("reason", "banned")))
