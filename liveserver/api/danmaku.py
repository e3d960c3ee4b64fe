"""Danmaku entry points: the WebSocket commands (``danmaku``, ``like``) and the HTTP routes
for moderation (deletes, mutes, slow mode, banned words)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..http import json_response, principal, read_json, require_admin, writer_principal
from ..keys import SERVICES
from ..wire import Danmaku, Like

if TYPE_CHECKING:
    from ..gateway import Command, Session

__all__ = ["commands", "routes"]

routes = web.RouteTableDef()


# -- WebSocket commands ------------------------------------------------------------------


async def on_danmaku(session: Session, msg: Danmaku) -> None:
    conn = session.conn
    assert conn is not None and session.principal is not None
    ack = await session.services.danmaku.send(session.principal, conn.room, msg.text, msg.req_id, conn.is_host)
    session.reply(ack, msg.req_id)


async def on_like(session: Session, msg: Like) -> None:
    assert session.conn is not None
    session.services.likes.add(session.conn.room, msg.count)


commands: dict[type, Command] = {Danmaku: on_danmaku, Like: on_like}


# -- HTTP ----------------------------------------------------------------------------------


@routes.delete("/api/v1/rooms/{room}/danmaku/{id}")
async def delete_danmaku(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    await services.danmaku.delete(request.match_info["room"], request.match_info["id"], await writer_principal(request))
    return web.Response(status=204)


@routes.post("/api/v1/rooms/{room}/mutes")
async def mute(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    await services.danmaku.mute(request.match_info["room"], who, await read_json(request))
    return web.Response(status=204)


@routes.delete("/api/v1/rooms/{room}/mutes/{user}")
async def unmute(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    await services.danmaku.unmute(request.match_info["room"], request.match_info["user"], await writer_principal(request))
    return web.Response(status=204)


@routes.put("/api/v1/rooms/{room}/slow-mode")
async def slow_mode(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    seconds = await services.danmaku.set_slow_mode(request.match_info["room"], who, await read_json(request))
    return json_response({"slow_mode_s": seconds})


@routes.get("/api/v1/rooms/{room}/banned-words")
async def get_room_words(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return json_response({"words": await services.danmaku.room_words(request.match_info["room"], principal(request))})


@routes.put("/api/v1/rooms/{room}/banned-words")
async def put_room_words(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    words = await services.danmaku.change_room_words(request.match_info["room"], who, await read_json(request), replace=True)
    return json_response({"words": words})


@routes.patch("/api/v1/rooms/{room}/banned-words")
async def patch_room_words(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    words = await services.danmaku.change_room_words(request.match_info["room"], who, await read_json(request), replace=False)
    return json_response({"words": words})


@routes.get("/api/v1/banned-words")
async def get_global_words(request: web.Request) -> web.Response:
    require_admin(request, "the global banned words")
    return json_response({"words": await request.app[SERVICES].danmaku.global_words()})


@routes.put("/api/v1/banned-words")
async def put_global_words(request: web.Request) -> web.Response:
    require_admin(request, "the global banned words")
    words = await request.app[SERVICES].danmaku.change_global_words(await read_json(request), replace=True)
    return json_response({"words": words})


@routes.patch("/api/v1/banned-words")
async def patch_global_words(request: web.Request) -> web.Response:
    require_admin(request, "the global banned words")
    words = await request.app[SERVICES].danmaku.change_global_words(await read_json(request), replace=False)
    return json_response({"words": words})
