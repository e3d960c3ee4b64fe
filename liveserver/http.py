"""HTTP plumbing shared by every route: the error middleware, auth, JSON bodies.

Every error leaves as ``{"error": {"code", "message", "field"?}}`` with its
status.  Redis trouble is 503 ``unavailable``; anything unexpected is logged
and answered 500 ``internal`` without a trace (it is a bug to fix).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .auth import Principal, Role, bearer_token, verify_token
from .errors import HTTP_CODES, ApiError, BadRequest, Forbidden, Invalid, RateLimited, error_body
from .keys import SERVICES
from .redisio.client import REDIS_DOWN
from .wire import find_surrogate

__all__ = ["error_middleware", "json_response", "principal", "read_json", "require_admin", "writer_principal"]

log = logging.getLogger(__name__)

_PRINCIPAL = web.RequestKey("principal", Principal)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _error(status: int, code: str, message: str, field: str | None = None, headers: Any = None) -> web.Response:
    return json_response(error_body(code, message, field), status=status, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ApiError as exc:
        headers = None
        retry_after_s = getattr(exc, "retry_after_s", None)  # a 429, or a 409 that passes (WHEP before a camera)
        if retry_after_s is not None:
            headers = {"Retry-After": str(max(1, round(retry_after_s)))}
        response = _error(exc.status, exc.code, exc.message, exc.field, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "bad_request")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow",)}
        response = _error(exc.status, code, exc.reason, headers=headers or None)
    except REDIS_DOWN as exc:
        log.warning("%s %s: Redis unavailable: %s", request.method, request.path, exc)
        request.app[SERVICES].metrics.redis_errors.labels(where="http").inc()
        response = _error(503, "unavailable", "service unavailable, retry")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = _error(500, "internal", "internal error")
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    request.app[SERVICES].metrics.http_requests.labels(request.method, name, str(response.status)).inc()
    return response


def principal(request: web.Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (401 if missing or bad)."""
    cached = request.get(_PRINCIPAL)
    if cached is None:
        cached = verify_token(bearer_token(request.headers.get("Authorization")), request.app[SERVICES].settings.secret)
        request[_PRINCIPAL] = cached
    return cached


def require_admin(request: web.Request, what: str) -> Principal:
    """The caller, if an admin (403 otherwise); ``what`` names the guarded thing in the error."""
    who = principal(request)
    if who.role is not Role.ADMIN:
        raise Forbidden(f"only an admin may read or change {what}")
    return who


async def writer_principal(request: web.Request) -> Principal:
    """The caller of a mutating request, rate limited per user (admins, the platform's own
    services, are not)."""
    who = principal(request)
    if who.role is not Role.ADMIN:
        services = request.app[SERVICES]
        s = services.settings
        allowed, retry_ms = await services.scripts.ratelimit_take(
            keys=[services.keys.rate("http", who.user)], args=[s.http_write_rate, s.http_write_burst, 1]
        )
        if not int(allowed):
            raise RateLimited(f"more than {s.http_write_rate:g} requests a second", retry_after_s=int(retry_ms) / 1000)
    return who


async def read_json(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object (400 if it is not one)."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    where = find_surrogate(body)
    if where is not None:
        raise Invalid(where or "body", f"'{where or 'a key'}' is not valid Unicode (a lone surrogate)")
    return body
