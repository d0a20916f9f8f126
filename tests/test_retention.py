"""Retention: the pure choice of day partitions, a run on the engine (dry and real), the
background task of the app, and the ``retention`` subcommand."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.cli import main
from service.deletion import DeleteGuard
from service.keys import METRICS
from service.retention import choose_partitions, cutoff_day, run_retention
from tests.test_deletion import assert_rollup_exact, partition_days

DAY = 86400


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


NOW = ts("2026-03-10T12:00:00")


@pytest.mark.parametrize(
    ("now", "days", "partitions", "expected"),
    [
        # a day goes once every row of it is more than `days` days old
        (NOW, 7, ["20260301", "20260302", "20260303", "20260310"], ["20260301", "20260302"]),
        (ts("2026-03-10T00:00:00"), 7, ["20260302", "20260303"], ["20260302"]),
        (ts("2026-03-09T23:59:59"), 7, ["20260301", "20260302"], ["20260301"]),
        (NOW, 1, ["20260308", "20260309", "20260310"], ["20260308"]),
        (NOW, 30, ["20260209", "20260208", "20260207", "20251231"], ["20251231", "20260207"]),
        # duplicates (raw and rollup list the same day), unordered input
        (NOW, 7, ["20260302", "20260101", "20260302"], ["20260101", "20260302"]),
        # ids that are not days are never chosen
        (NOW, 7, ["all", "202603", "2026-03-01", "tuple()", "20261399"], []),
        # retention off
        (NOW, 0, ["20200101"], []),
        (NOW, 7, [], []),
    ],
)
def test_choose_partitions(
    now: float, days: int, partitions: list[str], expected: list[str]
) -> None:
    assert choose_partitions(now, days, partitions) == expected


def test_cutoff_day_keeps_at_least_the_retention() -> None:
    for hour in range(24):
        now = NOW + hour * 3600
        keep_from = cutoff_day(now, 3)
        oldest_kept = datetime(keep_from.year, keep_from.month, keep_from.day, tzinfo=UTC)
        assert oldest_kept.timestamp() <= now - 3 * DAY < oldest_kept.timestamp() + DAY


async def seed(store: Any, now: float, days: int) -> None:
    """One row per hour for ``days`` days before ``now``."""
    await store.command(
        "INSERT INTO logs (id, user_id, created_at, type, quota) "
        "SELECT number + 1, number % 3, toDateTime({now:UInt32} - number * 3600, 'UTC'), 2, 5 "
        "FROM numbers({n:UInt32})",
        {"now": int(now), "n": days * 24},
    )


async def test_run_retention_drops_old_days_from_both_tables(store: Any) -> None:
    await seed(store, NOW, 10)
    before = await partition_days(store, "logs")
    dry = await run_retention(store, NOW, 3, DeleteGuard(), 2, dry_run=True)
    assert dry.report is None
    assert dry.chosen == sorted(p for p in before if p < "20260307")
    assert await partition_days(store, "logs") == before, "a dry run drops nothing"
    assert any(line.startswith("would drop 2026-03-0") for line in dry.lines())

    run = await run_retention(store, NOW, 3, DeleteGuard(), 2)
    assert run.chosen == dry.chosen and run.report is not None
    kept = {p for p in before if p >= "20260307"}
    assert await partition_days(store, "logs") == kept
    assert await partition_days(store, "logs_minute") == kept
    assert await partition_days(store, "logs_perf_minute") == kept
    # the latency rollup counts exactly the rows kept, minute by minute
    perf = await store.query(
        "SELECT toUInt32(minute) AS m, sum(n) AS c FROM logs_perf_minute "
        "GROUP BY m HAVING c != 0 ORDER BY m"
    )
    raw = await store.query(
        "SELECT toUInt32(toStartOfMinute(created_at)) AS m, count() FROM logs "
        "WHERE type IN (2, 5) GROUP BY m ORDER BY m"
    )
    assert perf.rows == raw.rows and perf.rows
    oldest = (await store.query("SELECT min(created_at) FROM logs")).scalar()
    assert oldest.strftime("%Y%m%d") == "20260307"
    count = (await store.query("SELECT count() FROM logs")).scalar()
    assert run.report.total == 10 * 24 - count
    await assert_rollup_exact(store)
    again = await run_retention(store, NOW, 3, DeleteGuard(), 2)
    assert again.chosen == [] and again.lines()[0].startswith("nothing to drop")


async def test_app_runs_retention_by_itself(store: Any, settings: Any) -> None:
    from dataclasses import replace

    await seed(store, NOW, 6)
    app = create_app(replace(settings, retention_days=2), store=store, clock=lambda: NOW)
    async with TestClient(TestServer(app)):
        deadline = time.monotonic() + 20
        while "20260307" in await partition_days(store, "logs"):
            assert time.monotonic() < deadline, "retention did not run"
            await asyncio.sleep(0.05)
        left = (await store.query("SELECT count() FROM logs")).scalar()
        registry = app[METRICS].registry
        deleted = registry.get_sample_value("gatelog_deleted_rows_total", {"source": "retention"})
        while deleted != 6 * 24 - left:  # the counter is bumped just after the drop
            assert time.monotonic() < deadline, (deleted, left)
            await asyncio.sleep(0.05)
            deleted = registry.get_sample_value(
                "gatelog_deleted_rows_total", {"source": "retention"}
            )
    assert min(await partition_days(store, "logs")) == "20260308"
    await assert_rollup_exact(store)


def test_retention_command(store: Any, data_dir: Any, monkeypatch: Any, capsys: Any) -> None:
    now = time.time()
    asyncio.run(seed(store, now, 5))
    before = asyncio.run(partition_days(store, "logs"))
    monkeypatch.setenv("GATELOG_DATA_DIR", str(data_dir))
    monkeypatch.delenv("GATELOG_CLICKHOUSE_URL", raising=False)
    monkeypatch.setenv("GATELOG_RETENTION_DAYS", "2")

    assert main(["retention", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would drop" in out
    assert asyncio.run(partition_days(store, "logs")) == before

    assert main(["retention"]) == 0
    out = capsys.readouterr().out
    assert "dropped" in out and "total:" in out
    after = asyncio.run(partition_days(store, "logs"))
    assert after < before and min(after) == time.strftime("%Y%m%d", time.gmtime(now - 2 * 86400))

    monkeypatch.delenv("GATELOG_RETENTION_DAYS")
    assert main(["retention"]) == 2
    assert "GATELOG_RETENTION_DAYS" in capsys.readouterr().err
