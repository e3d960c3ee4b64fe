"""The application factory.

``create_app(settings)`` returns a ``web.Application`` whose ``cleanup_ctx``
opens Redis, builds the node's services (services.py) and the ``/ws`` gateway,
and closes them in the reverse order; ``on_shutdown`` drains the WebSockets
with 1012.  Every route and every WebSocket command is registered here, from the
module of ``api/`` for its area.  Shutdown, step by step
(aiohttp's runner): stop listening -> drain sockets -> wait for handlers ->
stop background tasks, leave presence -> close Redis.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .api import core, danmaku, metrics, rooms, seckill, video
from .gateway import Command, Gateway
from .http import error_middleware
from .keys import GATEWAY, SERVICES, SETTINGS
from .pages import add_pages
from .redisio import check_reachable, describe_url
from .services import connect_services
from .settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)


#: every WebSocket command, by message class, from the packages that handle them
COMMANDS: dict[type, Command] = {**danmaku.commands, **seckill.commands, **metrics.commands}


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    services = connect_services(settings)
    try:
        await check_reachable(services.redis)
    except ConnectionError as exc:
        await services.redis.aclose()
        raise ConnectionError(f"cannot reach Redis at {describe_url(settings.redis_url or '')}: {exc}") from None
    app[SERVICES] = services
    app[GATEWAY] = Gateway(services, COMMANDS)
    try:
        await services.start()
        yield
    finally:
        await services.stop()


async def _drain(app: web.Application) -> None:
    await app[GATEWAY].drain()


async def _websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[GATEWAY].handle(request)


def create_app(settings: Settings) -> web.Application:
    """The server as an aiohttp application.  ``settings.redis_url`` must be set."""
    if settings.redis_url is None:
        raise ValueError("create_app needs settings.redis_url (the CLI starts an embedded Redis)")
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.http_max_body_bytes)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_services_ctx)
    app.on_shutdown.append(_drain)
    app.router.add_get("/ws", _websocket)
    for area in (core, rooms, danmaku, seckill, metrics, video):
        app.router.add_routes(area.routes)
    if settings.serve_pages:
        add_pages(app)
    return app
