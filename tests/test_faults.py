"""Faults: with the server backend's engine down, every endpoint answers 503 in the
envelope within a bounded time and readiness fails; once the engine is back the service
recovers without a restart."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.keys import SETTINGS
from service.openapi import document
from service.store import HttpStore
from tests.conftest import ADMIN, WRITER, log_row, user_headers
from tests.support.chhttp import ClickHouseHTTPServer

# answer without the engine
ENGINE_FREE = {"/healthz", "/metrics", "/api/openapi.json", "/", "/dashboard", "/dashboard/",
               "/dashboard/assets/app.js"}  # fmt: skip
# Valid values of the parameters some routes need (a series of the last hour).
# The apps' clock is fixed, so these stay valid however long the suite runs.
NOW = 1_790_000_000
SAMPLE = {"key": "abc", "target_timestamp": "1", "start_timestamp": str(NOW - 3600)}


def endpoints(app: Any) -> list[tuple[str, str, dict[str, str]]]:
    """Every served route that needs the engine, with the parameters it requires and
    the caller it is for: new routes are covered by being in the route table."""
    doc = document(app[SETTINGS])
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "OPTIONS")
    }
    out = []
    for method, path in sorted(served):
        if path in ENGINE_FREE or path in ("/readyz", "/dashboard/assets/{name}"):
            continue
        operation = doc["paths"][path][method.lower()]
        names = [
            doc["components"]["parameters"][ref["$ref"].rsplit("/", 1)[1]]["name"]
            for ref in operation["parameters"]
        ]
        query = {name: SAMPLE[name] for name in names if name in SAMPLE}
        if not operation["security"]:
            headers: dict[str, str] = {}
        elif "ingest" in operation["tags"]:
            headers = WRITER
        else:
            headers = user_headers(7) if "/self" in path else ADMIN
        out.append((method, path + ("?" + urlencode(query) if query else ""), headers))
    return out


BODIES = {
    "/api/internal/logs": [log_row()],
    "/api/internal/tokens": [{"id": 1, "key": "k", "name": "t", "user_id": 7, "status": 1}],
}


def ok_status(path: str) -> int:
    """The answer of a working engine: 200, but 404 for the token lookup, whose sample
    key no token has."""
    return 404 if path.startswith("/api/log/token?") else 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def call(client: TestClient[Any, Any], method: str, path: str, headers: Any) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if method == "POST":
        kwargs["json"] = BODIES[path]
    response = await client.request(method, path, **kwargs)
    if response.content_type != "application/json":  # an export that streamed its rows
        return response.status, {"text": await response.text()}
    return response.status, await response.json()


async def test_engine_down_then_back(store: Any, settings: Any) -> None:
    port = free_port()
    http = HttpStore(f"http://default:@127.0.0.1:{port}/{store.database}", timeout=3.0)
    # Readiness is probed afresh each call here (no cache): it must follow the engine.
    app = create_app(replace(settings, token_lookup_rate=0, readyz_cache_seconds=0), store=http,
                     clock=lambda: NOW)  # fmt: skip
    server = ClickHouseHTTPServer(store.path)
    routes = endpoints(app)
    assert len(routes) >= 7
    async with TestClient(TestServer(app)) as client:
        # Down from the start: the service still starts, and answers 503 quickly.
        for method, path, headers in routes:
            status, body = await call(client, method, path, headers)
            assert (status, body["success"], body["data"]) == (503, False, None), path
            assert "unavailable" in body["message"]
        assert (await client.get("/readyz")).status == 503
        for path in ENGINE_FREE:
            assert (await client.get(path)).status == 200

        # Back: no restart needed (the schema is retried in the background).
        await server.start(port)
        for _ in range(600):  # the background schema retry: an event, not a duration
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/readyz")).status == 200
        for method, path, headers in routes:
            status, _ = await call(client, method, path, headers)
            assert status == ok_status(path), path

        # Down again mid-life (the client's pooled connections now dead), then back again.
        await server.stop()
        for method, path, headers in routes:
            status, body = await call(client, method, path, headers)
            assert (status, body["data"]) == (503, None), path
            assert "DB::Exception" not in body["message"] and "Errno" not in body["message"]
        assert (await client.get("/readyz")).status == 503
        await server.start(port)
        for method, path, headers in routes:
            assert (await call(client, method, path, headers))[0] == ok_status(path), path
        assert (await client.get("/readyz")).status == 200
    await http.close()
    await server.stop()
    server.close()


async def test_an_engine_that_accepts_and_never_answers(store: Any, settings: Any) -> None:
    """A hung engine (TCP accepted, no answer): every endpoint still answers 503 in the
    envelope, bounded by the engine timeout, and readiness fails."""
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = HttpStore(f"http://default:@127.0.0.1:{port}/{store.database}", timeout=1.0)
    app = create_app(replace(settings, token_lookup_rate=0), store=http, clock=lambda: NOW)
    routes = endpoints(app)
    async with TestClient(TestServer(app)) as client:
        answers = await asyncio.gather(
            *(call(client, method, path, headers) for method, path, headers in routes),
            client.get("/readyz"),
        )
        # All at once: one shared connection attempt, not one timeout after another
        # (counted where the engine would see them, not timed).
        assert len(held) < len(routes), len(held)
        for (status, body), (_, path, _) in zip(answers[:-1], routes, strict=True):
            assert (status, body["success"], body["data"]) == (503, False, None), path
        assert answers[-1].status == 503
    await http.close()
    server.close()
    for writer in held:
        writer.close()
    await server.wait_closed()
