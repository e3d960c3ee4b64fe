"""Typed application keys (``web.AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .gateway import Gateway
    from .services import Services
    from .settings import Settings

__all__ = ["GATEWAY", "SERVICES", "SETTINGS"]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
#: the node's services (services.py), set while the app runs (``cleanup_ctx``)
SERVICES: web.AppKey[Services] = web.AppKey("services")
#: the ``/ws`` endpoint: its sessions, commands and drain (gateway.py)
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
