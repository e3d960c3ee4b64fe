"""HTTP routes of rooms: thin handlers that parse, call the room service and answer."""

from __future__ import annotations

from aiohttp import web

from ..http import json_response, principal, read_json, writer_principal
from ..keys import SERVICES

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/api/v1/rooms")
async def create_room(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    room = await services.rooms.create(who, await read_json(request))
    return json_response(room.public(online=0), status=201)


@routes.get("/api/v1/rooms/{room}")
async def get_room(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal(request)
    room = await services.rooms.get(request.match_info["room"])
    return json_response(room.public(online=await services.presence.online(room.room_id)))


@routes.post("/api/v1/rooms/{room}/start")
async def start_room(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    status = await services.rooms.start(request.match_info["room"], await writer_principal(request))
    return json_response({"room_id": request.match_info["room"], "status": status})


@routes.post("/api/v1/rooms/{room}/end")
async def end_room(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    status = await services.rooms.end(request.match_info["room"], await writer_principal(request))
    return json_response({"room_id": request.match_info["room"], "status": status})


@routes.put("/api/v1/rooms/{room}/products/{product}")
async def put_product(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    product = await services.rooms.put_product(
        request.match_info["room"], request.match_info["product"], who, await read_json(request)
    )
    return json_response(product.public())


@routes.post("/api/v1/rooms/{room}/products/{product}/pin")
async def pin_product(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    product = await services.rooms.pin(request.match_info["room"], request.match_info["product"], who)
    return json_response({**product.public(), "pinned": True})


@routes.post("/api/v1/rooms/{room}/bans")
async def ban_user(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    until_ms = await services.rooms.ban(request.match_info["room"], who, await read_json(request))
    return json_response({"banned_until_ms": until_ms})
