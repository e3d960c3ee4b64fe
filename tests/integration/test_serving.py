"""The listening socket: slow and malformed HTTP, TLS (HTTPS and WSS on one port)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from pathlib import Path

import pytest
import trustme

from liveserver.sdk import HostClient, ViewerClient

from .conftest import RunningNode, StartNode, token


def _raw(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _json_error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head.lower(), head
    return status, json.loads(body)


async def test_slowloris_connections_are_closed_and_others_served(start_node: StartNode) -> None:
    """200 clients that send half a request head and then a byte a second are closed
    after the head timeout; a normal client is answered all along."""
    node = await start_node(http_header_timeout_s=1.0)
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(200):
        s = socket.socket()
        s.setblocking(False)
        await loop.sock_connect(s, ("127.0.0.1", node.port))
        await loop.sock_sendall(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    started = time.monotonic()
    async with HostClient(node.base_url) as anon:
        for _ in range(3):  # trickle one more header byte into each while a normal client is served
            for s in socks:
                try:
                    await loop.sock_sendall(s, b"X")
                except OSError:
                    pass
            assert await anon.healthz() == {"status": "ok"}
            await asyncio.sleep(0.4)

    async def closed(s: socket.socket) -> bool:
        try:
            return await asyncio.wait_for(loop.sock_recv(s, 1024), 5.0) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    results = await asyncio.gather(*(closed(s) for s in socks))
    elapsed = time.monotonic() - started
    for s in socks:
        s.close()
    assert all(results), f"{results.count(False)} of 200 slow connections still open"
    assert elapsed < 4.0
    assert node.services.guard.header_timeouts == 200


async def test_a_kept_alive_connection_gets_the_same_deadline(start_node: StartNode) -> None:
    node = await start_node(http_header_timeout_s=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"GET /api/v1/time HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    writer.write(b"GET /api/v1/time HTTP/1.1\r\nHo")  # the second request stalls
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5.0) == b""
    assert time.monotonic() - started < 2.5
    writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", id="header-over-8190"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
                     id="200-headers"),
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="request-line-over-8190"),
        pytest.param(b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2, id="unknown-method"),
        pytest.param(b"POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                     id="length-and-chunked"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", id="tls-to-plain-port"),
    ],
)
async def test_malformed_requests_get_json_errors_and_one_warning(
    start_node: StartNode, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    node = await start_node()
    caplog.set_level(logging.DEBUG)
    for _ in range(20):  # a flood: answered each time, logged once
        status, body = _json_error(await asyncio.to_thread(_raw, node.port, request_bytes))
        assert 400 <= status < 500
        assert set(body) == {"error"} and body["error"]["code"] in ("bad_request", "method_not_allowed")
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    ours = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(ours) == 1 and ours[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    async with HostClient(node.base_url) as anon:  # and it still serves
        assert await anon.healthz() == {"status": "ok"}


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return cert_path, key_path, client


async def test_https_and_wss_on_one_port(start_node: StartNode, tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    cert, key, client_ctx = tls_files
    node = await start_node(tls_cert=cert, tls_key=key)
    base, ws_url = f"https://127.0.0.1:{node.port}", f"wss://127.0.0.1:{node.port}/ws"
    async with HostClient(base, token("host1", "host"), ssl=client_ctx) as h:
        room = await h.create_room("Over TLS")
        await h.start_room(room["room_id"])
        assert (await h.healthz()) == {"status": "ok"}
    v = await ViewerClient.connect(ws_url, token("tv"), room["room_id"], ssl=client_ctx)
    assert v.welcome["room"]["status"] == "live"
    assert (await v.ping())["type"] == "pong"
    await v.close()
    # TLS on means TLS only: plain HTTP on that port gets no HTTP answer
    answer = await asyncio.to_thread(_raw, node.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not answer.startswith(b"HTTP/1.1 200")


async def _tls_version(port: int, version: ssl.TLSVersion) -> str | None:
    """The version a client limited to ``version`` gets, or None if the server refuses it."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    probe.minimum_version = probe.maximum_version = version
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=probe)
    except (ssl.SSLError, ConnectionResetError):
        return None
    obj = writer.get_extra_info("ssl_object")
    got = obj.version()
    writer.close()
    return got


async def test_tls_1_3_is_preferred_and_tls_min_refuses_1_2(
    start_node: StartNode, tls_files: tuple[Path, Path, ssl.SSLContext]
) -> None:
    cert, key, client_ctx = tls_files
    default = await start_node(tls_cert=cert, tls_key=key)
    _, writer = await asyncio.open_connection("127.0.0.1", default.port, ssl=client_ctx)  # verifies the chain
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"  # what a client that can gets
    writer.close()
    assert await _tls_version(default.port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    strict: RunningNode = await start_node(tls_cert=cert, tls_key=key, tls_min="1.3")
    assert await _tls_version(strict.port, ssl.TLSVersion.TLSv1_2) is None
    assert await _tls_version(strict.port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
