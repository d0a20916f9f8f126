"""Graceful stop, as an operator sees it: ``python -m service serve`` in its own process
gets SIGTERM while a large ingest is in flight; the ingest is answered 200, the process
exits 0, and a restart on the same data directory has every row."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ADMIN, SECRET, WRITER

ROOT = Path(__file__).resolve().parent.parent
ROWS = 100_000  # a second or two of validation and insert: long enough to be in flight


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATELOG_DATA_DIR": str(data_dir),
        "GATELOG_JWT_SECRET": SECRET,
        "GATELOG_HOST": "127.0.0.1",
        "GATELOG_PORT": str(port),
    }
    env.pop("GATELOG_CLICKHOUSE_URL", None)
    with log.open("ab") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service exited during start"
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the service did not become ready")


async def stop(proc: Any) -> int:
    proc.send_signal(signal.SIGTERM)
    return int(await asyncio.to_thread(proc.wait, 20))


async def test_sigterm_finishes_the_in_flight_ingest_then_exits_cleanly(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "service.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    body = "\n".join(
        json.dumps({"user_id": i % 97, "created_at": 1_700_000_000 + i % 86400, "type": 2})
        for i in range(ROWS)
    ).encode()
    headers = {**WRITER, "Content-Type": "application/x-ndjson", "X-Request-Id": "big-batch"}

    proc = start(data_dir, port, log)
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
    proc = start(data_dir, port, log)
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
