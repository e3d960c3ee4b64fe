"""The SDK in one page: a host opens a room and a flash sale, a viewer watches and grabs it.

Start a demo server, then run this from the repository root::

    .venv/bin/liveserver serve --dev
    .venv/bin/python examples/sdk_quickstart.py                          # http://127.0.0.1:8080
    .venv/bin/python examples/sdk_quickstart.py http://127.0.0.1:9000    # another --dev server

The tokens come from the ``--dev`` server's ``POST /api/v1/dev/tokens``.  A real
deployment has no such endpoint: there your platform's backend mints them with
``LIVESERVER_SECRET`` (``liveserver token --sub alice --role host`` does the same
by hand).  Each line printed is a step's name and the server's answer as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from liveserver.sdk import MSGPACK, ApiError, ConnectionClosed, HostClient, ReplyError, ViewerClient

DEFAULT_URL = "http://127.0.0.1:8080"


async def dev_token(base_url: str, sub: str, role: str) -> str:
    """A token from a ``--dev`` server (any other server answers 403)."""
    async with HostClient(base_url) as anonymous:
        return str((await anonymous.request("POST", "/api/v1/dev/tokens", {"sub": sub, "role": role}))["token"])


def ws_url(base_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port/ws`` (``https`` -> ``wss``)."""
    parts = urlsplit(base_url)
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, "/ws", "", ""))


def show(step: str, answer: Any) -> None:
    """One line: the step, then what the server answered (JSON)."""
    print(f"{step:<16} {json.dumps(answer, ensure_ascii=False, sort_keys=True)}", flush=True)


async def main(base_url: str) -> None:
    """Alice hosts a room and sells tea in a flash sale; Bob watches it and grabs one."""
    host_token = await dev_token(base_url, "alice", "host")
    viewer_token = await dev_token(base_url, "bob", "viewer")

    async with HostClient(base_url, host_token) as host:
        room = await host.create_room("Autumn tea sale")
        room_id = room["room_id"]
        await host.start_room(room_id)
        await host.put_product(room_id, "tea-1", "Longjing 250 g", 12900)

        viewer = await ViewerClient.connect(ws_url(base_url), viewer_token, room_id, protocol=MSGPACK)
        try:
            show("welcome room", viewer.welcome["room"])  # status 'live', online 1, ...
            await host.pin_product(room_id, "tea-1")
            show("product_pinned", await viewer.wait_for("product_pinned"))
            show("pong", await viewer.ping())  # also syncs the viewer's clock with the server's
            sale = await host.create_flash_sale(room_id, "tea-1", price_cents=9900, stock=100, countdown_s=0)
            show("flash sale", sale)
            show("grab_result", await viewer.grab(sale_id=sale["sale_id"]))  # ok, order_id, expires_at_ms
        finally:
            await viewer.close()
        show("room ended", await host.end_room(room_id))


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"a --dev server (default {DEFAULT_URL})")
    args = parser.parse_args(argv)
    try:
        asyncio.run(main(args.url.rstrip("/")))
    except aiohttp.ClientConnectionError as exc:
        print(f"sdk_quickstart: cannot reach {args.url} ({exc}); start one with: liveserver serve --dev",
              file=sys.stderr)
        return 1
    except ApiError as exc:
        hint = " (is it a --dev server?)" if exc.status == 403 else ""
        print(f"sdk_quickstart: {args.url} answered {exc}{hint}", file=sys.stderr)
        return 1
    except (ConnectionClosed, ReplyError) as exc:
        print(f"sdk_quickstart: the WebSocket failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
