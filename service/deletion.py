"""History deletion: whole days by dropping partitions, the rest of one day by a delete,
the rollup kept exact, and ingest of newer logs never disturbed.

``delete_before(target)`` removes every log with ``created_at < target``:

1. Whole days before the target's day: their partitions of ``logs`` and of every rollup
   (per minute, hour and day: :data:`ROLLUPS`) are dropped, a bounded number per
   ``ALTER`` statement. The raw rows are counted first (``count()`` on partition-key
   conditions is answered from part metadata).
2. The target's own day, from midnight to the target: the rows are counted, the rollup
   receives negated rows for exactly those rows (per minute and dimensions), and a
   lightweight ``DELETE`` removes them. Rollup rows of newer logs are never touched, so
   logs ingested meanwhile, newer than the target, are neither lost nor counted twice.

:class:`DeleteGuard` makes the count exact and keeps the rollup exact when late logs
(older than the target) are ingested while a delete runs: such a batch waits until the
delete is done, and a delete waits for such batches already being written. Batches whose
rows are all at or after the target never wait. The guard is per process; across
replicas on one server the delete's marker holds the other replicas' batches into its
days, and the days are checked and rebuilt after the delete (service/rollup.py), so a
late batch another replica was already writing cannot leave a rollup inexact.

On a cluster the drops and the ``DELETE`` address the local tables ``ON CLUSTER``
(:mod:`service.cluster`); counts and the negated rows go through the Distributed tables,
which place each row on its user's shard as ingest does.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from .cluster import local_table, on_cluster, system_table
from .columns import DIMENSIONS
from .performance import FRT_BUCKET_SQL, PERF_ROLLUP, USE_TIME_SQL
from .stats import ROLLUP, Rollup
from .stats import ROLLUPS as READ_LEVELS
from .store import Store
from .timesql import window

log = logging.getLogger(__name__)

DAY = 86400
RAW = "logs"
#: every stats level kept exact by deletes (the day-partitioned day levels 012-015 were
#: dropped by schema/080-083)
LEVELS = READ_LEVELS
#: levels partitioned by month: their whole days are taken out by negated rows
MONTHLY = tuple(r for r in LEVELS if r.by_month)
#: every table that holds rows derived from ``logs``; the rollups partitioned by day are
#: dropped with the raw day, the month-partitioned ones negated for it (``MONTHLY``), and
#: all corrected for the partial day (``_CORRECTIONS``) (logs_minute first, then the
#: latency rollup, then the hour and day levels of stats)
ROLLUPS = (ROLLUP, PERF_ROLLUP, *(r.table for r in LEVELS if r.table != ROLLUP))
TABLES = (RAW, *ROLLUPS)
_PARTITION_ID = re.compile(r"^\d{8}$")

#: the dimensions of the minute rollups, as their views (schema/004, 031) group by them
_DIMS = ", ".join(DIMENSIONS.values())
#: the figures of the stats rollups, each with the sign the correction gives it
_SUMS = (
    "{sign}toInt64(count()), {sign}sum(toInt128(quota)), "
    "{sign}sum(toInt128(prompt_tokens)), {sign}sum(toInt128(completion_tokens))"
)
_WINDOW = window("created_at")
# Rollup rows for the raw rows of [lo, hi), with the sign given: '-' takes rows out of the
# rollup before they are deleted, '+' puts them back when the delete failed.
_ROLLUP_OF_WINDOW = f"""
INSERT INTO {ROLLUP} (minute, {_DIMS}, requests, quota, prompt_tokens, completion_tokens)
SELECT toStartOfMinute(created_at) AS minute, {_DIMS}, {_SUMS}
FROM {RAW}
WHERE {_WINDOW}
GROUP BY minute, {_DIMS}
"""
# The same for the latency histogram rollup (schema/030): its cells as the view makes them.
_PERF_OF_WINDOW = f"""
INSERT INTO {PERF_ROLLUP} (minute, {_DIMS}, use_time, frt_bucket, n)
SELECT toStartOfMinute(created_at) AS minute, {_DIMS}, {USE_TIME_SQL} AS ut,
       {FRT_BUCKET_SQL} AS fb, {{sign}}toInt64(count())
FROM {RAW}
WHERE {_WINDOW} AND type IN (2, 5)
GROUP BY minute, {_DIMS}, ut, fb
"""


def _level_of_window(rollup: Rollup) -> str:
    """The same for a stats level of another grain (schema/010-015): its buckets and
    dimensions as its view makes them."""
    dims = ", ".join(rollup.columns)
    g = int(rollup.grain)
    return (
        f"INSERT INTO {rollup.table} ({rollup.time}, {dims}, requests, quota, prompt_tokens, "
        f"completion_tokens) SELECT toDateTime(intDiv(toUInt32(created_at), {g}) * {g}, 'UTC') "
        f"AS {rollup.time}, {dims}, {_SUMS} FROM {RAW} "
        f"WHERE {_WINDOW} GROUP BY {rollup.time}, {dims}"
    )


def _negate_days(rollup: Rollup) -> str:
    """Rows that take whole days out of a month-partitioned level: the negated sums of
    its own cells on the days given (``{days:Array(Date)}``), so they net to zero (and
    vanish when parts merge); cells already at zero are left alone."""
    dims = ", ".join(rollup.columns)
    return (
        f"INSERT INTO {rollup.table} ({rollup.time}, {dims}, requests, quota, prompt_tokens, "
        f"completion_tokens) SELECT {rollup.time}, {dims}, -sum(requests) AS r, -sum(quota) "
        "AS q, -sum(prompt_tokens) AS p, -sum(completion_tokens) AS c "
        f"FROM {rollup.table} WHERE toDate({rollup.time}) IN {{days:Array(Date)}} "
        f"GROUP BY {rollup.time}, {dims} HAVING r != 0 OR q != 0 OR p != 0 OR c != 0"
    )


async def negate_days(store: Store, partition_ids: Sequence[str]) -> None:
    """Take the days of ``partition_ids`` out of every month-partitioned level."""
    days = [day for day in (partition_day(pid) for pid in partition_ids) if day is not None]
    if not days:
        return
    for rollup in MONTHLY:
        # a correction is never a retried ingest batch: no deduplication
        await store.command(_negate_days(rollup), {"days": days},
                            settings={"insert_deduplicate": 0})  # fmt: skip


_CORRECTIONS = (
    _ROLLUP_OF_WINDOW,
    _PERF_OF_WINDOW,
    *(_level_of_window(r) for r in LEVELS if r.table != ROLLUP),
)
#: each rollup table's statement for the raw rows of a window (service.rollup rebuilds
#: and checks days with them)
CORRECTIONS = dict(zip(ROLLUPS, _CORRECTIONS, strict=True))


class DeleteGuard:
    """Orders deletes against the ingest of logs in the span they delete (see module).

    ``hold(target)`` is taken by deletes and retention (the span before ``target``),
    ``hold_span(lo, hi)`` by the removal of future-dated logs (``[lo, hi)``), one at a
    time; ``admit(oldest, newest)`` by each ingest batch, with its ``created_at`` range.
    A batch that reaches into the held span waits; one outside it never does.
    """

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._span: tuple[int, int] | None = None
        self._writing: list[tuple[int, int]] = []  # created_at range of each batch written

    @property
    def target(self) -> int | None:
        """The held span's end when it starts at 0 (a delete before a time)."""
        return self._span[1] if self._span is not None and self._span[0] == 0 else None

    @staticmethod
    def _meets(span: tuple[int, int] | None, oldest: int, newest: int) -> bool:
        return span is not None and oldest < span[1] and newest >= span[0]

    @asynccontextmanager
    async def admit(self, oldest: int, newest: int | None = None) -> AsyncIterator[None]:
        batch = (oldest, oldest if newest is None else newest)
        async with self._cond:
            await self._cond.wait_for(lambda: not self._meets(self._span, *batch))
            self._writing.append(batch)
        try:
            yield
        finally:
            async with self._cond:
                self._writing.remove(batch)
                self._cond.notify_all()

    def hold(self, target: int) -> AbstractAsyncContextManager[None]:
        return self.hold_span(0, target)

    @asynccontextmanager
    async def hold_span(self, lo: int, hi: int) -> AsyncIterator[None]:
        span = (lo, hi)
        async with self._cond:
            await self._cond.wait_for(lambda: self._span is None)
            self._span = span
            await self._cond.wait_for(
                lambda: not any(self._meets(span, *batch) for batch in self._writing)
            )
        try:
            yield
        finally:
            async with self._cond:
                self._span = None
                self._cond.notify_all()


def partition_day(partition_id: str) -> date | None:
    """The day of a ``toDate`` partition id (``YYYYMMDD``); ``None`` for anything else,
    which is never dropped."""
    if not _PARTITION_ID.match(partition_id):
        return None
    try:
        return datetime.strptime(partition_id, "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


async def list_partitions(store: Store, table: str) -> list[str]:
    """The partition ids holding rows of ``table`` (on every node of a cluster)."""
    rows = await store.query(
        f"SELECT DISTINCT partition_id FROM {system_table('parts', store.cluster)} "
        "WHERE database = currentDatabase() AND table = {table:String} AND active "
        "ORDER BY partition_id",
        {"table": local_table(table, store.cluster)},
    )
    return [str(row[0]) for row in rows.rows]


async def existing_partitions(store: Store) -> dict[str, list[str]]:
    """The day partitions of the raw table and of the rollup."""
    found = await asyncio.gather(*(list_partitions(store, table) for table in TABLES))
    return dict(zip(TABLES, found, strict=True))


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    size = max(1, size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def count_partitions(store: Store, partition_ids: Sequence[str]) -> dict[str, int]:
    """Raw rows per day partition: a condition on the partition key only, answered from
    part metadata where no row was deleted (and through a Distributed table alike)."""
    days = {pid: partition_day(pid) for pid in partition_ids}
    if not days:
        return {}
    rows = await store.query(
        f"SELECT toDate(created_at) AS day, count() FROM {RAW} "
        "WHERE toDate(created_at) IN {days:Array(Date)} GROUP BY day",
        {"days": [day for day in days.values() if day is not None]},
    )
    counts = {day: int(n) for day, n in rows.rows}
    return {pid: counts.get(day, 0) for pid, day in days.items()}


async def drop_partitions(store: Store, table: str, partition_ids: Sequence[str]) -> None:
    """One ``ALTER`` dropping every given partition of ``table``."""
    if not partition_ids:
        return
    clauses = ", ".join(f"DROP PARTITION ID {{p{i}:String}}" for i in range(len(partition_ids)))
    params = {f"p{i}": pid for i, pid in enumerate(partition_ids)}
    target = local_table(table, store.cluster) + on_cluster(store.cluster)
    await store.command(f"ALTER TABLE {target} {clauses}", params)


@dataclass
class DropReport:
    """What dropping days removed: raw rows per partition id."""

    rows: dict[str, int] = field(default_factory=dict)
    rollup_only: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


async def drop_days(
    store: Store, partitions: dict[str, list[str]], chosen: Iterable[str], per_statement: int
) -> DropReport:
    """Drop the chosen day partitions of both tables, ``per_statement`` per ALTER, and
    count the raw rows that went with them (counted before each batch is dropped)."""
    raw = set(partitions.get(RAW, ()))
    rollups = {table: set(partitions.get(table, ())) for table in ROLLUPS}
    report = DropReport()
    for batch in batches(sorted(set(chosen)), per_statement):
        raw_batch = [pid for pid in batch if pid in raw]
        report.rows.update(await count_partitions(store, raw_batch))
        await drop_partitions(store, RAW, raw_batch)
        await negate_days(store, batch)
        for table, present in rollups.items():
            await drop_partitions(store, table, [pid for pid in batch if pid in present])
        in_rollup = set().union(*rollups.values())
        report.rollup_only.extend(pid for pid in batch if pid in in_rollup and pid not in raw)
    return report


async def delete_range_of_day(store: Store, lo: int, hi: int) -> int:
    """Delete the raw rows of ``[lo, hi)`` (inside one day), keeping the rollup exact."""
    params = {"lo": lo, "hi": hi}
    count = int((await store.query(f"SELECT count() FROM {RAW} WHERE {_WINDOW}", params)).scalar())
    if count == 0:
        return 0
    no_dedup = {"insert_deduplicate": 0}  # a correction is never a retried ingest batch
    corrected = []
    try:
        for correction in _CORRECTIONS:
            await store.command(correction.replace("{sign}", "-"), params, settings=no_dedup)
            corrected.append(correction)
        target = local_table(RAW, store.cluster) + on_cluster(store.cluster)
        await store.command(f"DELETE FROM {target} WHERE {_WINDOW}", params)
    except Exception:
        # Put back in the rollups what is still in the raw table (all of it if the delete
        # did nothing), so a failed delete leaves the tables agreeing.
        for correction in corrected:
            await store.command(correction.replace("{sign}", ""), params, settings=no_dedup)
        raise
    return count


@dataclass
class DeleteResult:
    deleted: int
    dropped_days: list[str]
    boundary_rows: int


async def delete_before(
    store: Store, target: int, guard: DeleteGuard, per_statement: int
) -> DeleteResult:
    """Delete every log with ``created_at < target``; returns how many were deleted."""
    midnight = target - target % DAY
    async with guard.hold(target):
        partitions = await existing_partitions(store)
        older = sorted(
            pid
            for pid in set().union(*partitions.values())
            if (day := partition_day(pid)) is not None and day_start(day) < midnight
        )
        report = await drop_days(store, partitions, older, per_statement)
        boundary = await delete_range_of_day(store, midnight, target) if target > midnight else 0
    log.info(
        "deleted logs before %d: %d rows in %d dropped days, %d rows of the last day",
        target,
        report.total + boundary,
        len(report.rows),
        boundary,
    )
    return DeleteResult(report.total + boundary, sorted(report.rows), boundary)


#: the last second a DateTime holds (2106-02-07 06:28:15 UTC)
MAX_DATETIME = 2**32 - 1


async def delete_from(
    store: Store, cutoff: int, guard: DeleteGuard, per_statement: int
) -> DeleteResult:
    """Delete every log with ``created_at >= cutoff`` (future-dated logs stored before
    ingest bounded ``created_at``): the days after the cutoff's day are dropped whole in
    every table, the rest of the cutoff's day is deleted with its rollup rows negated,
    as :func:`delete_before` does for the past. Ingest batches reaching past the cutoff
    wait meanwhile (the clock moves on while this runs)."""
    next_midnight = cutoff - cutoff % DAY + DAY
    async with guard.hold_span(cutoff, MAX_DATETIME + 1):
        partitions = await existing_partitions(store)
        later = sorted(
            pid
            for pid in set().union(*partitions.values())
            if (day := partition_day(pid)) is not None and day_start(day) >= next_midnight
        )
        report = await drop_days(store, partitions, later, per_statement)
        # (a row at the very last second, 2^32-1, is in a later day's partition unless
        # the cutoff itself is on 2106-02-07)
        boundary = await delete_range_of_day(store, cutoff, min(next_midnight, MAX_DATETIME))
    log.info(
        "deleted future-dated logs from %d on: %d rows in %d dropped days, %d of its day",
        cutoff,
        report.total + boundary,
        len(report.rows),
        boundary,
    )
    return DeleteResult(report.total + boundary, sorted(report.rows), boundary)
