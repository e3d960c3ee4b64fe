"""Typed application keys (``web.AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .node import Node
    from .settings import Settings

__all__ = ["NODE", "SETTINGS"]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
NODE: web.AppKey[Node] = web.AppKey("node")
