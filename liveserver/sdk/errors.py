"""Errors raised by the SDK clients."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "ConnectionClosed", "ReplyError"]


class ApiError(Exception):
    """An HTTP error answer: ``status``, ``code``, ``message`` and ``field`` from the body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class ReplyError(Exception):
    """The server answered a WebSocket command with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame
        self.code: str = frame.get("code", "")


class ConnectionClosed(Exception):
    """The WebSocket closed; ``code`` and ``reason`` are the server's close frame."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason
