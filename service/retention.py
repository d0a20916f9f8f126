"""Automatic retention: whole days older than ``GATELOG_RETENTION_DAYS`` are dropped.

Which day partitions go is a pure function of (now, retention days, existing
partitions), :func:`choose_partitions`, with the clock handed in. The background task
(started by the app when retention is configured) and ``python -m service retention
[--dry-run]`` both run :func:`run_retention` once per turn.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .commands import Command, with_store
from .deletion import (
    DAY,
    DeleteGuard,
    DropReport,
    day_start,
    drop_days,
    existing_partitions,
    partition_day,
)
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)


def cutoff_day(now: float, retention_days: int) -> date:
    """The oldest day kept: every row of an older day is more than ``retention_days``
    days old at ``now``."""
    return datetime.fromtimestamp(now - retention_days * DAY, UTC).date()


def choose_partitions(now: float, retention_days: int, partitions: Iterable[str]) -> list[str]:
    """The day partitions (``YYYYMMDD`` ids) to drop at ``now``: those of days before
    :func:`cutoff_day`. Ids that are not days are never chosen. Sorted, no duplicates."""
    if retention_days <= 0:
        return []
    keep_from = cutoff_day(now, retention_days)
    return sorted(
        pid
        for pid in set(partitions)
        if (day := partition_day(pid)) is not None and day < keep_from
    )


@dataclass
class RetentionRun:
    cutoff: date
    chosen: list[str]
    report: DropReport | None  # None on a dry run

    def lines(self) -> list[str]:
        verb = "would drop" if self.report is None else "dropped"
        if not self.chosen:
            return [f"nothing to drop: no day before {self.cutoff.isoformat()}"]
        out = []
        for pid in self.chosen:
            day = partition_day(pid)
            name = day.isoformat() if day else pid
            if self.report is None:
                out.append(f"{verb} {name}")
            elif pid in self.report.rows:
                out.append(f"{verb} {name}: {self.report.rows[pid]} logs")
            else:
                out.append(f"{verb} {name}: rollup rows only")
        if self.report is not None:
            out.append(f"total: {self.report.total} logs in {len(self.chosen)} days")
        return out


async def run_retention(
    store: Store,
    now: float,
    retention_days: int,
    guard: DeleteGuard,
    per_statement: int,
    dry_run: bool = False,
) -> RetentionRun:
    """Drop (or, on a dry run, only name) the day partitions older than the cutoff."""
    cutoff = cutoff_day(now, retention_days)
    partitions = await existing_partitions(store)
    chosen = choose_partitions(now, retention_days, [p for ps in partitions.values() for p in ps])
    if dry_run or not chosen:
        return RetentionRun(cutoff, chosen, None if dry_run else DropReport())
    async with guard.hold(day_start(cutoff)):
        # listed again under the guard: a concurrent delete may have dropped some
        partitions = await existing_partitions(store)
        chosen = choose_partitions(
            now, retention_days, [p for ps in partitions.values() for p in ps]
        )
        from .rollup import FIRST_DAY, marked

        async with marked(store, "retention", FIRST_DAY, cutoff - timedelta(days=1), guard):
            report = await drop_days(store, partitions, chosen, per_statement)
    return RetentionRun(cutoff, chosen, report)


async def retention_loop(
    store: Store,
    settings: Settings,
    guard: DeleteGuard,
    clock: Callable[[], float],
    on_deleted: Callable[[int], None] | None = None,
) -> None:
    """Run retention now and then every ``retention_interval_seconds``, forever;
    ``on_deleted`` hears how many logs each run dropped."""
    assert settings.retention_days
    while True:
        try:
            run = await run_retention(
                store,
                clock(),
                settings.retention_days,
                guard,
                settings.delete_partitions_per_statement,
            )
            if run.chosen:
                log.info("retention: %s", "; ".join(run.lines()))
            if on_deleted is not None and run.report is not None:
                on_deleted(run.report.total)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "retention run failed; retrying in %ss", settings.retention_interval_seconds
            )
        await asyncio.sleep(max(1, settings.retention_interval_seconds))


def _retention_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be dropped, drop nothing"
    )
    parser.add_argument("--days", type=int, help="days to keep (default: GATELOG_RETENTION_DAYS)")


def cmd_retention(args: argparse.Namespace, settings: Settings) -> int:
    import sys
    import time

    from .errors import EngineUnavailable

    days = args.days if args.days is not None else settings.retention_days
    if not days or days <= 0:
        print(
            "gatelog: no retention configured: set GATELOG_RETENTION_DAYS or pass --days N",
            file=sys.stderr,
        )
        return 2

    def work(store: Store) -> Awaitable[RetentionRun]:
        return run_retention(
            store,
            time.time(),
            days,
            DeleteGuard(),
            settings.delete_partitions_per_statement,
            dry_run=args.dry_run,
        )

    try:
        result = with_store(settings, work)
    except EngineUnavailable as exc:
        print(f"gatelog: {exc.message}", file=sys.stderr)
        return 1
    print(f"keeping {days} days: from {result.cutoff.isoformat()} (UTC) on")
    for line in result.lines():
        print(line)
    return 0


COMMAND = Command(
    "retention",
    "drop the days of logs older than the retention once",
    cmd_retention,
    _retention_args,
)
