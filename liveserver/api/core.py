"""Core HTTP routes: health, server time, operator metrics and --dev tokens."""

from __future__ import annotations

from aiohttp import web

from ..auth import Role, mint_token
from ..errors import Forbidden, Invalid
from ..http import json_response, read_json
from ..keys import GATEWAY, SERVICES
from ..metrics.prom import CONTENT_TYPE
from ..rooms.service import check_id, check_int

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}`` while every part works (``?verbose=1`` adds the ``checks``);
    503 ``{"status": "unavailable", "checks": {...}}`` naming the parts that do not (see
    :meth:`Services.health`), or ``{"status": "draining"}`` while the server drains."""
    if request.app[GATEWAY].draining:
        return json_response({"status": "draining"}, status=503)
    checks = await request.app[SERVICES].health()
    if all(v == "ok" for v in checks.values()):
        body: dict[str, object] = {"status": "ok"}
        if request.query.get("verbose") not in (None, "", "0"):
            body["checks"] = checks
        return json_response(body)
    return json_response({"status": "unavailable", "checks": checks, "redis": checks["redis"]}, status=503)


@routes.get("/api/v1/time")
async def server_time(request: web.Request) -> web.Response:
    return json_response({"server_time_ms": request.app[SERVICES].clock.now_ms()})


@routes.get("/metrics")
async def prometheus(request: web.Request) -> web.Response:
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.post("/api/v1/dev/tokens")
async def dev_token(request: web.Request) -> web.Response:
    """--dev only: mint a token as the platform's backend would."""
    services = request.app[SERVICES]
    if not services.settings.dev:
        raise Forbidden("tokens are minted here only in --dev mode")
    body = await read_json(request)
    sub = check_id(body.get("sub"), "sub")
    try:
        role = Role(body.get("role", "viewer"))
    except ValueError:
        raise Invalid("role", "'role' must be viewer, host or admin") from None
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 32):
        raise Invalid("name", "'name' must be a string of 1-32 characters")
    ttl_s = check_int(body.get("ttl_s", services.settings.dev_token_ttl_s), "ttl_s", 1, 30 * 24 * 3600)
    token = mint_token(services.settings.secret, sub, role, name=name, ttl_s=ttl_s)
    return json_response({"token": token, "sub": sub, "role": str(role), "ttl_s": ttl_s}, status=201)
