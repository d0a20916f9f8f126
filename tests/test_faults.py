"""Faults: with the server backend's engine down, every endpoint answers 503 in the
envelope within a bounded time and readiness fails; once the engine is back the service
recovers without a restart."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.store import HttpStore
from tests.conftest import ADMIN, WRITER, log_row, user_headers
from tests.support.chhttp import ClickHouseHTTPServer

ENDPOINTS = [
    ("GET", "/api/log/", ADMIN),
    ("GET", "/api/log/self", user_headers(7)),
    ("GET", "/api/log/search?keyword=x", ADMIN),
    ("GET", "/api/log/self/search?keyword=x", user_headers(7)),
    ("GET", "/api/log/token?key=abc", {}),
    ("POST", "/api/internal/logs", WRITER),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def call(client: TestClient[Any, Any], method: str, path: str, headers: Any) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if method == "POST":
        kwargs["json"] = [log_row()]
    response = await client.request(method, path, **kwargs)
    return response.status, await response.json()


async def test_engine_down_then_back(store: Any, settings: Any) -> None:
    port = free_port()
    http = HttpStore(f"http://default:@127.0.0.1:{port}/{store.database}", timeout=3.0)
    app = create_app(replace(settings, token_lookup_rate=0), store=http)
    server = ClickHouseHTTPServer(store.path)
    async with TestClient(TestServer(app)) as client:
        # Down from the start: the service still starts, and answers 503 quickly.
        for method, path, headers in ENDPOINTS:
            started = time.perf_counter()
            status, body = await call(client, method, path, headers)
            assert (status, body["success"], body["data"]) == (503, False, None), path
            assert "unavailable" in body["message"]
            assert time.perf_counter() - started < 5
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200

        # Back: no restart needed (the schema is retried in the background).
        await server.start(port)
        for _ in range(100):
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/readyz")).status == 200
        for method, path, headers in ENDPOINTS:
            status, _ = await call(client, method, path, headers)
            assert status in (200, 404), path  # 404: the unknown token key

        # Down again mid-life, then back again.
        await server.stop()
        status, body = await call(client, "GET", "/api/log/", ADMIN)
        assert status == 503 and "DB::Exception" not in body["message"]
        assert (await client.get("/readyz")).status == 503
        await server.start(port)
        assert (await call(client, "GET", "/api/log/", ADMIN))[0] == 200
    await http.close()
    await server.stop()
    server.close()
