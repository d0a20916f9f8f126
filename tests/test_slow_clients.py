"""Slow and stalled clients never hold engine capacity (issue 17.1).

A stalled client is a real TCP socket with a tiny receive buffer that sends its request
and then never reads. Waits are bounded generously; nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

from service.app import create_app
from tests.conftest import ADMIN, WRITER, ingest, log_row, user_headers

BOUND = 60.0  # seconds: a generous bound on what must answer at all
ROWS = 4_000
TEXT = "x" * 2_000  # ~8 MB per export: far more than the socket buffers hold


async def seed(client: Any) -> None:
    now = int(time.time())
    rows = [log_row(user_id=7, created_at=now - 60 * (i + 1), content=TEXT) for i in range(ROWS)]
    for lo in range(0, ROWS, 400):  # bodies under aiohttp's 1 MiB warning
        await ingest(client, rows[lo : lo + 400])


async def stalled(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    """Send a GET and read only the status line and headers, then never read again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n"
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), BOUND)
        assert chunk, "the export closed before its headers"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


async def read_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while True:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), BOUND)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


async def slow_clients(client: Any, direction: str) -> float:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(f'gatelog_slow_clients_total{{direction="{direction}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no slow-client counter for {direction}")


async def test_four_stalled_exports_leave_the_engine_to_others(make_client: Any) -> None:
    # As many stalled exports as the engine has threads (4); blocks of 20 rows, so a
    # window is many blocks and a stream tied to its client would stall mid-window.
    client = await make_client(export_block_rows=20, send_timeout_seconds=600)
    await seed(client)
    port = client.server.port
    socks = [
        await stalled(port, "/api/log/self/export?format=ndjson", user_headers(7)) for _ in range(4)
    ]
    try:
        for _ in range(3):  # again and again while the four stay stalled
            listed = await asyncio.wait_for(client.get("/api/log/", headers=ADMIN), BOUND)
            assert listed.status == 200
            assert (await listed.json())["data"]["total"] == ROWS
            ready = await asyncio.wait_for(client.get("/readyz"), BOUND)
            assert ready.status == 200
    finally:
        for sock in socks:
            sock.close()


async def test_a_stalled_export_is_cut_after_the_send_timeout(make_client: Any) -> None:
    client = await make_client(export_window_rows=200, send_timeout_seconds=0.2)
    await seed(client)
    sock = await stalled(client.server.port, "/api/log/self/export?format=ndjson", user_headers(7))
    try:
        for _ in range(int(BOUND * 10)):
            if await slow_clients(client, "send") >= 1:
                break
            await asyncio.sleep(0.1)
        assert await slow_clients(client, "send") == 1
        body = await read_all(sock)
    finally:
        sock.close()
    lines = body.splitlines()
    assert lines, "some rows were sent before the cut"
    assert b'"totals"' not in lines[-1], "a cut export does not end with its totals line"
    # A client that reads gets the whole export with its totals.
    whole = await client.get("/api/log/self/export?format=ndjson", headers=user_headers(7))
    last = json.loads((await whole.read()).splitlines()[-1])
    assert last["totals"]["rows"] == ROWS


async def test_a_body_sent_byte_by_byte_is_cut(make_client: Any) -> None:
    client = await make_client(body_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    body = json.dumps([log_row()]).encode()
    auth = WRITER["Authorization"]
    writer.write(
        f"POST /api/internal/logs HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:1]
    )
    await writer.drain()
    # One more byte now and then, never the whole body: the server answers 408 and closes.
    answer = b""
    for index in range(1, len(body)):
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.5)
        except TimeoutError:
            writer.write(body[index : index + 1])
            await writer.drain()
            continue
        answer += chunk
        if not chunk or b"}" in answer:
            break
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    envelope = json.loads(payload)
    assert envelope["success"] is False and envelope["data"] is None
    assert "body" in envelope["message"]
    assert await slow_clients(client, "body") == 1
    listed = await client.get("/api/log/", headers=ADMIN)
    assert (await listed.json())["data"]["total"] == 0, "nothing of the cut batch is stored"


async def test_readiness_is_cached_briefly(store: Any, settings: Any, engine_calls: Any) -> None:
    from dataclasses import replace

    from aiohttp.test_utils import TestClient, TestServer

    now = [1_000_000.0]
    app = create_app(replace(settings, readyz_cache_seconds=2.0), store=store, clock=lambda: now[0])
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/readyz")).status == 200
        probed = len(engine_calls)
        assert probed > 0
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(16)))
        assert [a.status for a in answers] == [200] * 16
        assert len(engine_calls) == probed, "cached: no engine call within the TTL"
        now[0] += 2.5
        assert (await client.get("/readyz")).status == 200
        assert len(engine_calls) > probed, "probed again once the TTL is over"
