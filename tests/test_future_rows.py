"""Future-dated logs stored before ingest bounded created_at (issue 17.6): an admin
removes them with ``DELETE /api/log/future``; the answer and the metrics count them,
every rollup still equals the raw rows, and the logs of now stay."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import ADMIN, WRITER, log_row, user_headers

DAY = 86400
ROLLUPS = ("logs_minute", "logs_hour_site", "logs_day_site_m", "logs_day_m")


async def figures(store: Any, table: str) -> tuple[int, int, int]:
    """(requests, quota, prompt_tokens) of consume logs in ``table``, independently."""
    if table == "logs":
        sql = "SELECT count(), sum(quota), sum(prompt_tokens) FROM logs WHERE type = 2"
    else:
        sql = f"SELECT sum(requests), sum(quota), sum(prompt_tokens) FROM {table} WHERE type = 2"
    row = (await store.query(sql)).rows[0]
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


async def test_admin_removes_future_rows_counted_with_rollups_exact(
    make_client: Any, store: Any
) -> None:
    now = int(time.time())
    lenient = await make_client(ingest_clock_skew_seconds=2**32)  # as before the bound
    kept = [log_row(created_at=now - 100 - i, quota=10 + i) for i in range(3)]
    future = [
        log_row(created_at=now + 1_000, quota=1),  # later today, past the skew
        log_row(created_at=now + 5 * DAY, quota=2),
        log_row(created_at=4_102_444_800, quota=3),  # 2100-01-01
        log_row(created_at=2**32 - 1, quota=4),
    ]
    response = await lenient.post("/api/internal/logs", json=kept + future, headers=WRITER)
    assert response.status == 200, await response.text()
    client = await make_client()
    assert (await client.delete("/api/log/future", headers=user_headers(7))).status == 403

    response = await client.delete("/api/log/future", headers=ADMIN)
    body = await response.json()
    assert response.status == 200 and body["data"] == len(future), body

    assert (await figures(store, "logs")) == (3, sum(r["quota"] for r in kept), 150)
    for table in ROLLUPS:
        assert (await figures(store, table)) == (await figures(store, "logs")), table
    page = await (await client.get("/api/log/", headers=ADMIN)).json()
    assert sorted(i["created_at"] for i in page["data"]["items"]) == sorted(
        r["created_at"] for r in kept
    )
    stat = await (await client.get("/api/log/stat", headers=ADMIN)).json()
    assert stat["data"]["quota"] == sum(r["quota"] for r in kept)
    metrics = await (await client.get("/metrics")).text()
    assert f'gatelog_deleted_rows_total{{source="future"}} {float(len(future))}' in metrics
    again = await (await client.delete("/api/log/future", headers=ADMIN)).json()
    assert again["data"] == 0
