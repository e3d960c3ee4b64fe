"""Async clients of liveserver: :class:`HostClient` (REST) and :class:`ViewerClient` (WebSocket)."""

from __future__ import annotations

from ..auth import mint_token
from .errors import ApiError, ConnectionClosed, ReplyError
from .host import HostClient
from .viewer import JSON, MSGPACK, ViewerClient

__all__ = ["JSON", "MSGPACK", "ApiError", "ConnectionClosed", "HostClient", "ReplyError", "ViewerClient", "mint_token"]
