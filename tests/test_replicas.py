"""Replicas that agree (issue 15.4): two ``serve`` processes on one ClickHouse server
(the HTTP server over chDB), a history delete through one while late batches (older
than the delete's target, on the days it touches) arrive through the other. Afterwards
every rollup equals the raw rows, day by day, and no acknowledged row newer than the
target is missing. The delete's marker holds the other replica's late batches, and the
delete checks and rebuilds the days it touched after it finishes (service/rollup.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from service.rollup import check, open_markers, stored_days
from tests.conftest import ADMIN, WRITER, log_row
from tests.support import serve

DAY = 86400
BASE = (1_780_000_000 // DAY) * DAY


async def ready(session: aiohttp.ClientSession, base: str, proc: Any) -> None:
    for _ in range(600):
        assert proc.poll() is None, "a replica exited during start"
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("a replica did not become ready")


async def stop(proc: Any) -> None:
    """SIGTERM and wait without blocking the loop (the engine server runs in it)."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    for _ in range(300):
        if proc.poll() is not None:
            return
        await asyncio.sleep(0.1)
    proc.kill()
    proc.wait()


async def post(session: aiohttp.ClientSession, base: str, rows: list[dict[str, Any]]) -> int:
    async with session.post(base + "/api/internal/logs", json=rows, headers=WRITER) as response:
        body = await response.json()
        assert response.status == 200, body
        return int(body["data"])


async def test_delete_on_one_replica_late_ingest_on_the_other(store: Any, tmp_path: Path) -> None:
    from tests.support.chhttp import ClickHouseHTTPServer

    server = ClickHouseHTTPServer(store.path)
    port = await server.start()
    url = f"http://default:@127.0.0.1:{port}/{store.database}"
    ports = [serve.free_port(), serve.free_port()]
    procs = [
        serve.start(tmp_path / f"r{i}", p, tmp_path / f"r{i}.log", clickhouse_url=url)
        for i, p in enumerate(ports)
    ]
    a, b = (f"http://127.0.0.1:{p}" for p in ports)
    target = BASE + DAY + 12 * 3600  # noon of the second day
    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(ready(session, u, p) for u, p in zip((a, b), procs, strict=True))
            )
            baseline = [
                log_row(created_at=BASE + i * 1800 + 11, quota=1 + i, request_id=f"base-{i}")
                for i in range(3 * 48)
            ]
            await post(session, a, baseline)

            async def late_batches() -> list[dict[str, Any]]:
                sent = []
                for n in range(40):  # each on the boundary day, before and after the target
                    rows = [
                        log_row(
                            created_at=target - 600 * (k + 1) - n,
                            quota=1000 + n,
                            request_id=f"late-{n}-{k}",
                        )  # fmt: skip
                        for k in range(5)
                    ] + [log_row(created_at=target + 60 + n, quota=7, request_id=f"new-{n}")]
                    await post(session, b, rows)
                    sent += rows
                    await asyncio.sleep(0.01)
                return sent

            async def delete() -> int:
                await asyncio.sleep(0.3)  # some late batches before, most during
                async with session.delete(
                    a + "/api/log/", params={"target_timestamp": str(target)}, headers=ADMIN
                ) as response:
                    body = await response.json()
                    assert response.status == 200, body
                    return int(body["data"])

            sent, _deleted = await asyncio.gather(late_batches(), delete())
        days = await stored_days(store)
        differences = await check(store, days)
        assert differences == [], "\n".join(d.line() for d in differences)
        assert await open_markers(store) == []
        # every acknowledged row at or after the target is still there
        newer = {r["request_id"] for r in baseline + sent if r["created_at"] >= target}
        stored = await store.query(
            "SELECT request_id FROM logs WHERE created_at >= toDateTime({t:UInt32}, 'UTC')",
            {"t": target},
        )
        assert newer <= {row[0] for row in stored.rows}
    finally:
        await asyncio.gather(*(stop(proc) for proc in procs))
        await server.stop()
        server.close()
        for i in range(2):
            log = (tmp_path / f"r{i}.log").read_text(errors="replace")
            assert "Traceback" not in log, json.dumps(log[-2000:])
