"""``HostClient``: the REST API for a host's app (and for admins and viewers' HTTP calls)."""

from __future__ import annotations

import ssl as ssl_module
from types import TracebackType
from typing import Any

import aiohttp

from .errors import ApiError

__all__ = ["HostClient"]


class HostClient:
    """An async client of the HTTP API, authenticated with one token.

    ::

        async with HostClient("http://127.0.0.1:8080", token) as host:
            room = await host.create_room("Autumn sale")
            await host.start_room(room["room_id"])
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        """``base_url`` is ``http://`` or ``https://`` (a server started with ``--tls-cert``);
        ``ssl`` is the context to verify it with (say, one that trusts a private CA)."""
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(ssl=ssl) if ssl is not None else None,
        )

    async def __aenter__(self) -> HostClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """Call the API; return the decoded JSON (None for 204).  Raises :class:`ApiError`."""
        headers = {}
        tok = token or self.token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        async with self._session.request(method, self.base_url + path, json=body, headers=headers) as resp:
            if resp.status == 204:
                return None
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            if resp.status >= 400:
                err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
                raise ApiError(resp.status, err.get("code", "unknown"), err.get("message", await resp.text()), err.get("field"))
            return data

    # -- rooms -------------------------------------------------------------------

    async def create_room(self, title: str, room_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"title": title}
        if room_id is not None:
            body["room_id"] = room_id
        return await self.request("POST", "/api/v1/rooms", body)

    async def start_room(self, room_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/rooms/{room_id}/start")

    async def end_room(self, room_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/rooms/{room_id}/end")

    async def get_room(self, room_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/rooms/{room_id}")

    async def put_product(self, room_id: str, product_id: str, title: str, price_cents: int) -> dict[str, Any]:
        return await self.request(
            "PUT", f"/api/v1/rooms/{room_id}/products/{product_id}", {"title": title, "price_cents": price_cents}
        )

    async def pin_product(self, room_id: str, product_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/rooms/{room_id}/products/{product_id}/pin")

    async def ban(self, room_id: str, user: str, seconds: int) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/rooms/{room_id}/bans", {"user": user, "seconds": seconds})

    # -- drops and orders --------------------------------------------------------

    async def create_flash_sale(self, room_id: str, product_id: str, price_cents: int, stock: int,
                                **terms: Any) -> dict[str, Any]:
        """``terms``: per_user_limit, countdown_s or starts_at_ms, duration_s, pay_timeout_s, sale_id."""
        body = {"product_id": product_id, "price_cents": price_cents, "stock": stock, **terms}
        return await self.request("POST", f"/api/v1/rooms/{room_id}/flash-sales", body)

    async def get_flash_sale(self, room_id: str, sale_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/rooms/{room_id}/flash-sales/{sale_id}")

    async def create_coupon(self, room_id: str, product_id: str, discount_cents: int, stock: int,
                            **terms: Any) -> dict[str, Any]:
        body = {"product_id": product_id, "discount_cents": discount_cents, "stock": stock, **terms}
        return await self.request("POST", f"/api/v1/rooms/{room_id}/coupons", body)

    async def get_coupon(self, room_id: str, coupon_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/rooms/{room_id}/coupons/{coupon_id}")

    async def grab(self, sale_id: str, req_id: str) -> dict[str, Any]:
        """A viewer's grab over HTTP: the same body as the WebSocket ``grab_result``."""
        return await self.request("POST", f"/api/v1/flash-sales/{sale_id}/grab", {"req_id": req_id})

    async def create_red_packet(self, room_id: str, total_cents: int, count: int, **terms: Any) -> dict[str, Any]:
        """``terms``: countdown_s or starts_at_ms, expires_s."""
        body = {"total_cents": total_cents, "count": count, **terms}
        return await self.request("POST", f"/api/v1/rooms/{room_id}/red-packets", body)

    async def create_rain(self, room_id: str, total_cents: int, drops: int, packets_per_drop: int,
                          **terms: Any) -> dict[str, Any]:
        """``terms``: interval_s, per_user_cap, countdown_s or starts_at_ms, expires_s."""
        body = {"total_cents": total_cents, "drops": drops, "packets_per_drop": packets_per_drop, **terms}
        return await self.request("POST", f"/api/v1/rooms/{room_id}/red-packet-rains", body)

    async def get_red_packet(self, room_id: str, packet_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/rooms/{room_id}/red-packets/{packet_id}")

    async def get_order(self, order_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/orders/{order_id}")

    async def pay_order(self, order_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/orders/{order_id}/pay")

    async def cancel_order(self, order_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/orders/{order_id}/cancel")

    # -- server ------------------------------------------------------------------

    async def server_time_ms(self) -> int:
        return int((await self.request("GET", "/api/v1/time"))["server_time_ms"])

    async def healthz(self) -> dict[str, Any]:
        return await self.request("GET", "/healthz")
