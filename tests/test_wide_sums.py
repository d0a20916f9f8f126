"""Sums that cannot overflow (issue 17.7): the stats add quota and token counts wide
(Int128 rollup cells, Int128 raw sums), so over many rows at the per-row bounds they
equal the export's totals and Python's exact sum, where Int64 wrapped (two rows of
2^63-1 answered ``quota: -7``). The bounds here are raised (with one row per batch, so
the start-up check admits them) to pass 2^63 with a few rows on the real engine."""

from __future__ import annotations

from typing import Any

import pytest

from service.app import create_app
from service.settings import SettingsError
from tests.conftest import ADMIN, WRITER, log_row, user_headers

DAY = 86400
BIG = 2**62 - 1  # four of them pass 2^63, eight pass 2^64


async def test_stat_and_export_agree_past_int64(make_client: Any) -> None:
    client = await make_client(ingest_max_quota=BIG, ingest_max_tokens=BIG, max_batch_rows=1)
    base = (1_780_000_000 // DAY) * DAY - 10 * DAY  # midnight, days ago
    # whole minutes (rollups), a partial minute (raw edge seconds), two days
    times = [base + 60, base + 120, base + 121, base + 3605, base + DAY + 7, base + DAY + 60,
             base + DAY + 61, base + DAY + 3600]  # fmt: skip
    rows = [
        log_row(user_id=9, created_at=t, quota=BIG - i, prompt_tokens=BIG, completion_tokens=BIG)
        for i, t in enumerate(times)
    ]
    for row in rows:  # one row per batch (max_batch_rows=1)
        response = await client.post("/api/internal/logs", json=[row], headers=WRITER)
        assert response.status == 200, await response.text()
    want = {
        "quota": sum(r["quota"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
    }
    assert want["quota"] > 2**64  # past Int64 and UInt64 alike
    ranges = [
        {},  # all time: whole days from the day rollups
        {"start_timestamp": base, "end_timestamp": base + 2 * DAY - 1},
        {"start_timestamp": base + 61, "end_timestamp": base + DAY + 3600},  # raw edges
    ]
    for params in ranges:
        for path, headers in (("/api/log/stat", ADMIN), ("/api/log/self/stat", user_headers(9))):
            response = await client.get(path, params={"type": "2", **params}, headers=headers)
            data = (await response.json())["data"]
            picked = [r for r in rows if params.get("start_timestamp", 0) <= r["created_at"]
                      <= params.get("end_timestamp", 2**32)]  # fmt: skip
            for name in ("quota", "prompt_tokens", "completion_tokens"):
                assert data[name] == sum(r[name] for r in picked), (path, params, name)
            assert data["requests"] == len(picked)
    response = await client.get("/api/log/export", params={"format": "csv"}, headers=ADMIN)
    text = await response.text()
    totals = text.strip().splitlines()[-1]
    assert totals == (
        f"#totals,rows={len(rows)},quota={want['quota']},prompt_tokens={want['prompt_tokens']},"
        f"completion_tokens={want['completion_tokens']}"
    )
    response = await client.get("/api/log/stat", params={"type": "2"}, headers=ADMIN)
    assert (await response.json())["data"]["quota"] == want["quota"]


@pytest.mark.parametrize(
    "changes",
    [
        {"ingest_max_quota": 2**62, "max_batch_rows": 2},
        {"ingest_max_tokens": 10**14, "max_batch_rows": 100_000},
    ],
)
def test_bounds_whose_batch_sum_could_wrap_refuse_to_start(settings: Any, changes: Any) -> None:
    from dataclasses import replace

    with pytest.raises(SettingsError, match="2\\^63"):
        create_app(replace(settings, **changes))
