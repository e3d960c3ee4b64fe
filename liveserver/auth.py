"""Token checks (JWT, HS256, PyJWT) and roles.

The platform's backend mints tokens; the server only checks them.  Claims:
``sub`` (1-64 of ``[A-Za-z0-9_.-]``), ``role`` (``viewer``, ``host`` or
``admin``), ``exp`` (required) and ``name`` (optional, at most 32 characters).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import jwt

from .errors import Unauthorized
from .wire import ID_RE

__all__ = ["Principal", "Role", "TokenError", "bearer_token", "mint_token", "verify_token"]

ALGORITHM = "HS256"
MAX_NAME = 32


class Role(enum.StrEnum):
    VIEWER = "viewer"
    HOST = "host"
    ADMIN = "admin"


class TokenError(Unauthorized):
    """The token is missing, malformed, badly signed, expired or has wrong claims."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the checked claims of a token."""

    user: str
    role: Role
    name: str
    exp: int

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_run(self, host: str) -> bool:
        """A host may run the rooms it created; an admin may run every room."""
        return self.role is Role.ADMIN or (self.role is Role.HOST and self.user == host)


def verify_token(token: str, secret: str) -> Principal:
    """Check a token's signature, expiry and claims.  Raises :class:`TokenError`."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    except (ValueError, TypeError) as exc:  # what PyJWT does not wrap (an unencodable token, say)
        raise TokenError(f"invalid token: {type(exc).__name__}") from None
    for claim in ("exp", "iat", "nbf"):  # PyJWT takes "123" for a NumericDate; RFC 7519 4.1.4 says a number
        value = claims.get(claim)
        if claim in claims and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TokenError(f"invalid token: '{claim}' must be a number (NumericDate)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not ID_RE.match(sub):
        raise TokenError("invalid token: 'sub' must be 1-64 of [A-Za-z0-9_.-]")
    try:
        role = Role(claims.get("role"))
    except ValueError:
        raise TokenError("invalid token: 'role' must be viewer, host or admin") from None
    name = claims.get("name")
    if name is None:
        name = sub  # no display name: show the user id
    elif not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise TokenError(f"invalid token: 'name' must be a string of 1-{MAX_NAME} characters")
    exp = claims["exp"]
    return Principal(user=sub, role=role, name=name, exp=int(exp))


def mint_token(
    secret: str,
    sub: str,
    role: Role | str = Role.VIEWER,
    *,
    name: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    """Mint a token as the platform's backend would (used by --dev, the SDK's tests, Locust)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": sub, "role": str(Role(role)), "iat": issued, "exp": issued + ttl_s}
    if name is not None:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.  Raises :class:`TokenError`."""
    if not header:
        raise TokenError("missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("Authorization must be 'Bearer <token>'")
    return token.strip()
