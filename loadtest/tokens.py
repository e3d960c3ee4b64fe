"""Tokens as the platform's backend mints them (HS256 JWT: ``sub``, ``role``, ``exp``, ``name``).

A load tester holds the platform's secret (``LIVESERVER_SECRET``) and mints
its own tokens, so a run against a real deployment needs no token endpoint.
Without the secret, tokens come from a ``--dev`` server's
``POST /api/v1/dev/tokens`` (the callers do that request, each with its own
HTTP client).
"""

from __future__ import annotations

import os
import time

import jwt

__all__ = ["TOKEN_TTL_S", "mint", "platform_secret"]

TOKEN_TTL_S = 6 * 3600  # longer than any show; the server checks a token only at hello


def platform_secret() -> str | None:
    return os.environ.get("LIVESERVER_SECRET") or None


def mint(secret: str, sub: str, role: str, *, name: str | None = None, ttl_s: int = TOKEN_TTL_S) -> str:
    claims: dict[str, object] = {"sub": sub, "role": role, "exp": int(time.time()) + ttl_s}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")
