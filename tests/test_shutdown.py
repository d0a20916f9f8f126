"""Graceful stop, as an operator sees it: ``python -m service serve`` in its own process
gets SIGTERM while a large ingest is in flight; the ingest is answered 200, the process
exits 0, and a restart on the same data directory has every row."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ADMIN, WRITER
from tests.support import serve

ROWS = 100_000  # a second or two of validation and insert: long enough to be in flight


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: Any) -> None:
    await asyncio.to_thread(serve.wait_ready, base, proc)


async def stop(proc: Any) -> int:
    return await asyncio.to_thread(serve.stop, proc)


async def test_sigterm_finishes_the_in_flight_ingest_then_exits_cleanly(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "service.log"
    port = serve.free_port()
    base = f"http://127.0.0.1:{port}"
    body = "\n".join(
        json.dumps({"user_id": i % 97, "created_at": 1_700_000_000 + i % 86400, "type": 2})
        for i in range(ROWS)
    ).encode()
    headers = {**WRITER, "Content-Type": "application/x-ndjson", "X-Request-Id": "big-batch"}

    proc = serve.start(data_dir, port, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, proc)
            ingest = asyncio.create_task(
                session.post(base + "/api/internal/logs", data=io.BytesIO(body), headers=headers)
            )
            await asyncio.sleep(0.3)  # the body is sent; the service is validating it
            assert not ingest.done()
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            response = await ingest
            answered = time.monotonic()
            assert response.status == 200, await response.text()
            assert (await response.json())["data"] == ROWS
            assert answered > signalled  # it really was in flight at SIGTERM
            exit_code = await asyncio.to_thread(proc.wait, 20)
            assert exit_code == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (access,) = [line for line in lines if line.get("request_id") == "big-batch"]
    assert (access["route"], access["status"]) == ("/api/internal/logs", 200)
    assert all(line["level"] != "ERROR" for line in lines), lines
    # In this order: the in-flight request answered, the engine closed, the process done.
    events = [line.get("request_id") or line.get("message") for line in lines]
    assert "stopping: finishing 1 in-flight requests" in events
    assert events.index("stopping: finishing 1 in-flight requests") < events.index("big-batch")
    assert events.index("big-batch") < events.index("engine closed") < events.index("stopped")

    # Restart on the same data: every acknowledged row is there.
    proc = serve.start(data_dir, port, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, proc)
            async with session.get(base + "/api/log/?page_size=1", headers=ADMIN) as response:
                assert (await response.json())["data"]["total"] == ROWS
        assert await stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


CLIENTS = 4
BATCH = 1_000  # rows per request: tens of milliseconds each, so some are always in flight


def stream_batch(client: int, number: int) -> bytes:
    """One batch, every row tagged with the batch's request id (so the batch can be
    counted after the restart) and its own id (so no two batches deduplicate)."""
    tag = f"c{client}-b{number}"
    base_id = (client * 100_000 + number) * BATCH
    return "\n".join(
        json.dumps({"id": base_id + i + 1, "user_id": client + 1, "type": 2,
                    "created_at": 1_700_000_000 + number, "request_id": tag})
        for i in range(BATCH)
    ).encode()  # fmt: skip


async def test_sigterm_during_a_stream_of_ingests_loses_no_acknowledged_row(
    tmp_path: Path,
) -> None:
    """Several gateways post batches in a loop; SIGTERM arrives mid-stream. Every batch
    answered 200 is there after a restart; any other batch is there whole or not at all."""
    data_dir, log = tmp_path / "data", tmp_path / "service.log"
    port = serve.free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {**WRITER, "Content-Type": "application/x-ndjson"}
    acknowledged: dict[str, float] = {}  # request id -> when the 200 arrived
    sent: list[str] = []
    signalled = asyncio.Event()

    async def gateway(session: aiohttp.ClientSession, client: int) -> None:
        for number in range(10_000):
            tag = f"c{client}-b{number}"
            sent.append(tag)
            try:
                async with session.post(
                    base + "/api/internal/logs", data=stream_batch(client, number), headers=headers
                ) as response:
                    if response.status == 200 and (await response.json())["data"] == BATCH:
                        acknowledged[tag] = time.monotonic()
                    elif response.status != 503:  # refused while stopping: not acknowledged
                        raise AssertionError(f"{tag}: {response.status} {await response.text()}")
            except (TimeoutError, aiohttp.ClientConnectionError):
                if signalled.is_set():
                    return  # the service is gone: this batch was not acknowledged
                raise

    proc = serve.start(data_dir, port, log)
    try:
        await asyncio.to_thread(serve.wait_ready, base, proc)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            clients = [asyncio.create_task(gateway(session, c)) for c in range(CLIENTS)]
            while len(acknowledged) < 4 * CLIENTS:  # the stream is well under way
                assert not any(task.done() for task in clients), [t.result() for t in clients]
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            when = time.monotonic()
            signalled.set()
            await asyncio.wait_for(asyncio.gather(*clients), 30)
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Some requests were in flight when the signal came, and were answered.
    assert any(at > when for at in acknowledged.values())
    assert len(sent) > len(acknowledged)  # and some were not acknowledged

    proc = serve.start(data_dir, port, log)
    try:
        await asyncio.to_thread(serve.wait_ready, base, proc)
        async with aiohttp.ClientSession() as session:

            async def stored(tag: str) -> int:
                params = {"request_id": tag, "page_size": "1"}
                async with session.get(base + "/api/log/", params=params, headers=ADMIN) as r:
                    return int((await r.json())["data"]["total"])

            counts = {tag: await stored(tag) for tag in sent}
            async with session.get(base + "/api/log/", headers=ADMIN) as response:
                total = (await response.json())["data"]["total"]
        assert await stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lost = [tag for tag in acknowledged if counts[tag] != BATCH]
    assert lost == []
    assert all(count in (0, BATCH) for count in counts.values()), counts  # whole or nothing
    assert total == BATCH * sum(1 for count in counts.values() if count)
