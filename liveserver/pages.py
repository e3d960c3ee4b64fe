"""The web pages: the host dashboard and the viewer H5 page, static files under ``/app/``.

They are plain files (no build step, no CDN; uPlot is vendored under
``web/vendor/``) that use only the public API: a token from the URL fragment,
or on a ``--dev`` server one minted by ``POST /api/v1/dev/tokens``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

__all__ = ["WEB_ROOT", "add_pages"]

WEB_ROOT = Path(str(resources.files("liveserver").joinpath("web")))


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "index.html")


async def _to_app(request: web.Request) -> web.Response:
    raise web.HTTPFound("/app/")


def add_pages(app: web.Application) -> None:
    app.router.add_get("/", _to_app)
    app.router.add_get("/app", _to_app)
    app.router.add_get("/app/", _index)
    app.router.add_static("/app/", WEB_ROOT, follow_symlinks=False)
