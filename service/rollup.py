"""Rollups that check themselves (issue 15.3) and stay exact beside other replicas (15.4).

- :func:`check_day` compares every rollup table (per minute, hour and day, and the
  latency histogram) with the raw rows of one UTC day, cell by cell: the rollup's cells
  summed by their key against the cells the views would make from ``logs``
  (``service.deletion.CORRECTIONS``, the same statements a delete's correction uses).
- :func:`repair_day` rebuilds a day's cells of every rollup from the raw rows: built into
  a work table, then ``ALTER TABLE ... REPLACE PARTITION`` swaps the day in atomically
  (a day without raw rows has its rollup partition dropped). Ingest in this process
  waits meanwhile (``DeleteGuard.hold_span``), and on other processes too (the marker
  below); the day is checked again after the swap and rebuilt again if a batch already
  in flight landed between the build and the swap.
- Markers (``rollup_markers``, schema/059): a delete, a removal of future-dated logs and
  a repair write one naming their days before they start and close it after the days
  check clean. A service starting with a marker still open (a process died midway)
  repairs its days first (:func:`recover`). Every replica's ingest holds a batch that
  reaches into an open marker's days until it is closed (:func:`wait_for_markers`).

``python -m service rollup check [--days N]`` and ``rollup repair [--day YYYY-MM-DD]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .commands import Command
from .deletion import (
    CORRECTIONS,
    DAY,
    MAX_DATETIME,
    MONTHLY,
    TABLES,
    DeleteGuard,
    day_start,
    list_partitions,
    partition_day,
)
from .errors import ApiError, EngineUnavailable
from .settings import Settings
from .store import Store
from .timesql import window

log = logging.getLogger(__name__)

MARKERS = "rollup_markers"
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2106, 2, 7)
#: rebuilds of one day before giving up (each is followed by a check)
REPAIR_ATTEMPTS = 5
#: how often a held ingest batch looks at the markers again, and how long at most
MARKER_POLL_SECONDS = 0.2
MARKER_WAIT_SECONDS = 60.0
#: a marker older than this no longer holds ingest (its process died; the next start
#: of a service repairs its days)
MARKER_STALE_SECONDS = 600
_NO_DEDUP = {"insert_deduplicate": 0}
_FIGURES = ("requests", "quota", "prompt_tokens", "completion_tokens", "n")
_INSERT = re.compile(r"^\s*INSERT INTO (\w+) \(([^)]*)\)\s*(SELECT .*)$", re.DOTALL)


class RollupError(ApiError):
    status = 503


@dataclass(frozen=True)
class Source:
    """A rollup table, its columns, and the SELECT making its cells from raw rows."""

    table: str
    columns: tuple[str, ...]
    select: str  # with {sign} and the {lo:UInt32}/{hi:UInt32} window

    @property
    def time(self) -> str:
        return self.columns[0]

    @property
    def figures(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c in _FIGURES)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in _FIGURES)

    @property
    def built(self) -> str:
        """The SELECT making the window's cells from the raw rows, as its view does."""
        return self.select.replace("{sign}", "")

    def stored(self, columns: str) -> str:
        """A SELECT of ``columns`` of this rollup's own cells in the window."""
        return f"SELECT {columns} FROM {self.table} WHERE {window(_q(self.time))}"


def _sources() -> tuple[Source, ...]:
    out = []
    for table, statement in CORRECTIONS.items():
        match = _INSERT.match(statement)
        assert match is not None and match.group(1) == table, table
        columns = tuple(c.strip() for c in match.group(2).split(","))
        out.append(Source(table, columns, match.group(3)))
    return tuple(out)


SOURCES = _sources()


@dataclass(frozen=True)
class Difference:
    """One rollup table on one day: how many cells differ and the figures' day totals
    over those cells, in the rollup and from the raw rows."""

    day: date
    table: str
    cells: int
    rollup: dict[str, int]
    raw: dict[str, int]

    def line(self) -> str:
        figures = ", ".join(
            f"{name} rollup {self.rollup[name]} raw {self.raw[name]}"
            for name in self.rollup
            if self.rollup[name] != self.raw[name]
        )
        return f"{self.day.isoformat()} {self.table}: {self.cells} cells differ ({figures})"


def _window(day: date) -> dict[str, int]:
    lo = day_start(day)
    return {"lo": lo, "hi": min(lo + DAY, MAX_DATETIME)}


def _q(name: str) -> str:
    return name if name.startswith("`") else f"`{name}`"


async def check_table_day(store: Store, source: Source, day: date) -> Difference | None:
    keys = ", ".join(_q(k) for k in source.keys)
    cols = ", ".join(_q(c) for c in source.columns)
    sides = ", ".join(
        f"sumIf(toInt128({_q(f)}), side = 0) AS r_{f.strip('`')}, "
        f"sumIf(toInt128({_q(f)}), side = 1) AS w_{f.strip('`')}"
        for f in source.figures
    )
    differ = " OR ".join(f"r_{f} != w_{f}" for f in source.figures)
    totals = ", ".join(f"sum(r_{f}), sum(w_{f})" for f in source.figures)
    sql = (
        f"SELECT count(), {totals} FROM ("
        f"SELECT {keys}, {sides} FROM ("
        f"{source.stored(f'{cols}, 0 AS side')} "
        f"UNION ALL SELECT *, 1 AS side FROM ({source.built})"
        f") GROUP BY {keys} HAVING {differ})"
    )
    row = (await store.query(sql, _window(day))).rows[0]
    cells = int(row[0])
    if cells == 0:
        return None
    values = [int(v) for v in row[1:]]
    names = source.figures
    rollup = {n: values[2 * i] for i, n in enumerate(names)}
    raw = {n: values[2 * i + 1] for i, n in enumerate(names)}
    return Difference(day, source.table, cells, rollup, raw)


async def check_day(store: Store, day: date) -> list[Difference]:
    found = []
    for source in SOURCES:
        difference = await check_table_day(store, source, day)
        if difference is not None:
            found.append(difference)
    return found


async def stored_days(store: Store) -> list[date]:
    """Every day with a partition in the raw table or any rollup."""
    days: set[date] = set()
    for table in TABLES:
        for pid in await list_partitions(store, table):
            day = partition_day(pid)
            if day is not None:
                days.add(day)
    return sorted(days)


async def check(store: Store, days: Iterable[date]) -> list[Difference]:
    out: list[Difference] = []
    for day in days:
        out.extend(await check_day(store, day))
    return out


def _pid(day: date) -> str:
    return day.strftime("%Y%m%d")


async def rebuild_day(store: Store, day: date) -> None:
    """Every rollup's partition of ``day`` replaced by cells built from the raw rows."""
    if store.cluster is not None:
        raise RollupError(
            "rollup repair on a cluster is not supported: repair on a single-node server"
        )
    params = _window(day)
    monthly = {r.table for r in MONTHLY}
    for source in SOURCES:
        if source.table in monthly:
            await _correct_day(store, source, day)
            continue
        work = f"{source.table}_repair_{uuid.uuid4().hex[:12]}"
        await store.command(f"CREATE TABLE {work} AS {source.table}")
        try:
            cols = ", ".join(_q(c) for c in source.columns)
            await store.command(
                f"INSERT INTO {work} ({cols}) {source.built}",
                params,
                settings=_NO_DEDUP,
            )
            built = int((await store.query(f"SELECT count() FROM {work}")).scalar())
            if built:
                await store.command(
                    f"ALTER TABLE {source.table} REPLACE PARTITION ID {{pid:String}} FROM {work}",
                    {"pid": _pid(day)},
                )
            else:
                await store.command(
                    f"ALTER TABLE {source.table} DROP PARTITION ID {{pid:String}}",
                    {"pid": _pid(day)},
                )
        finally:
            await store.command(f"DROP TABLE IF EXISTS {work}")


async def _rebuild_guarded(store: Store, day: date, guard: DeleteGuard | None) -> None:
    if guard is None:
        await rebuild_day(store, day)
        return
    lo = day_start(day)
    async with guard.hold_span(lo, lo + DAY):
        await rebuild_day(store, day)


async def _correct_day(store: Store, source: Source, day: date) -> None:
    """A level partitioned by month cannot have one day's partition replaced: the cells
    the day lacks or has too much (raw minus rollup) are inserted instead, signed, in one
    ``INSERT ... SELECT`` (this process's and other replicas' ingest of the day held)."""
    keys = ", ".join(_q(k) for k in source.keys)
    cols = ", ".join(_q(c) for c in source.columns)
    # the rollup side first: a UNION takes its column names from its first SELECT
    negated = ", ".join(
        f"-toInt128({_q(c)}) AS d_{c.strip('`')}" if c in source.figures else _q(c)
        for c in source.columns
    )
    sums = ", ".join(
        f"sum(d_{c.strip('`')})" if c in source.figures else _q(c) for c in source.columns
    )
    differ = " OR ".join(f"sum(d_{f}) != 0" for f in source.figures)
    sql = (
        f"INSERT INTO {source.table} ({cols}) SELECT {sums} FROM ("
        f"{source.stored(negated)} UNION ALL SELECT * FROM ({source.built})"
        f") GROUP BY {keys} HAVING {differ}"
    )
    await store.command(sql, _window(day), settings=_NO_DEDUP)


async def settle_day(store: Store, day: date, guard: DeleteGuard | None = None) -> int:
    """Check ``day``; while it differs, rebuild (this process's ingest of the day held
    by ``guard``) and check again. Returns the rebuilds done; raises when the day still
    differs after :data:`REPAIR_ATTEMPTS`."""
    differences = await check_day(store, day)
    rebuilds = 0
    while differences:
        if rebuilds == REPAIR_ATTEMPTS:
            raise RollupError(
                f"rollups of {day.isoformat()} still differ after {rebuilds} rebuilds: "
                + "; ".join(d.line() for d in differences)
            )
        for difference in differences:
            log.warning("rollup differs: %s; rebuilding the day", difference.line())
        await _rebuild_guarded(store, day, guard)
        rebuilds += 1
        differences = await check_day(store, day)
    return rebuilds


# --- markers ---------------------------------------------------------------------------


async def _write_marker(
    store: Store, token: str, op: str, first: date, last: date, is_open: bool
) -> None:
    await store.insert(
        MARKERS,
        [[token, op, first, last, int(is_open), int(time.time()), time.time_ns()]],
        ["token", "op", "first_day", "last_day", "open", "at", "version"],
        settings=_NO_DEDUP,
    )


async def open_markers(store: Store) -> list[tuple[str, str, date, date]]:
    rows = await store.query(
        f"SELECT token, op, first_day, last_day FROM {MARKERS} FINAL WHERE open = 1 ORDER BY at"
    )
    return [(str(t), str(o), a, b) for t, o, a, b in rows.rows]


def _clip(first: date, last: date, days: Iterable[date]) -> list[date]:
    return [d for d in days if first <= d <= last]


@asynccontextmanager
async def marked(
    store: Store, op: str, first: date, last: date, guard: DeleteGuard | None = None
) -> AsyncIterator[None]:
    """A marker over ``[first, last]`` while the block runs. Then, whether it ended well
    or not, the stored days of that span are checked (and rebuilt where they differ) and
    the marker is closed; if that fails too (the engine is down), the marker stays open
    and the next start repairs the days."""
    if store.cluster is not None:  # not on a cluster (docs/rollups.md)
        yield
        return
    token = uuid.uuid4().hex
    await _write_marker(store, token, op, first, last, True)
    try:
        yield
    finally:
        try:
            for day in _clip(first, last, await stored_days(store)):
                await settle_day(store, day, guard)
            await _write_marker(store, token, op, first, last, False)
        except Exception:
            log.exception(
                "could not check the days of a %s (%s..%s); marker %s stays open and the "
                "next start repairs them",
                op,
                first.isoformat(),
                last.isoformat(),
                token,
            )


async def wait_for_markers(
    store: Store, oldest: int, newest: int, timeout: float = MARKER_WAIT_SECONDS
) -> None:
    """Hold an ingest batch with ``created_at`` in ``[oldest, newest]`` while an open
    marker (of any process) covers one of its days."""
    if store.cluster is not None:
        return
    first = datetime.fromtimestamp(oldest, UTC).date()
    last = datetime.fromtimestamp(newest, UTC).date()
    deadline = time.monotonic() + timeout
    while True:
        covered = await store.query(
            f"SELECT count() FROM {MARKERS} FINAL WHERE open = 1 "
            "AND first_day <= {last:Date} AND last_day >= {first:Date} "
            "AND at >= now() - {stale:UInt32}",
            {"first": first, "last": last, "stale": MARKER_STALE_SECONDS},
        )
        if not int(covered.scalar() or 0):
            return
        if time.monotonic() > deadline:
            raise EngineUnavailable(
                "a history delete or rollup repair is running on these days; retry later"
            )
        await asyncio.sleep(MARKER_POLL_SECONDS)


async def recover(store: Store, guard: DeleteGuard | None = None) -> int:
    """On start: repair the days of every marker left open, then close it. Returns the
    markers closed."""
    closed = 0
    if store.cluster is not None:
        return closed
    for token, op, first, last in await open_markers(store):
        log.warning(
            "a %s over %s..%s did not finish (marker %s): checking and repairing its days",
            op,
            first.isoformat(),
            last.isoformat(),
            token,
        )
        for day in _clip(first, last, await stored_days(store)):
            await settle_day(store, day, guard)
        await _write_marker(store, token, op, first, last, False)
        closed += 1
    return closed


async def repair(store: Store, day: date, guard: DeleteGuard | None = None) -> None:
    """``rollup repair --day``: rebuild ``day`` whether or not it differs, under a marker
    (other processes' ingest of the day waits) and ``guard`` (this one's), then settle it
    (checked again, rebuilt again if a batch in flight landed during the swap)."""
    async with marked(store, "repair", day, day, guard):
        await _rebuild_guarded(store, day, guard)


def day_of(ts: int) -> date:
    """The UTC day of a Unix second (clamped to what a DateTime holds)."""
    return datetime.fromtimestamp(max(0, min(ts, MAX_DATETIME)), UTC).date()


# --- the command -----------------------------------------------------------------------


def _rollup_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    chk = sub.add_parser("check", help="compare every rollup with the raw rows, day by day")
    chk.add_argument(
        "--days", type=int, help="only the last N days up to today (UTC); default: every day"
    )
    rep = sub.add_parser("repair", help="rebuild a day's rollups from its raw rows")
    rep.add_argument(
        "--day", help="the UTC day YYYY-MM-DD; default: every day the check finds different"
    )


def _parse_day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def cmd_rollup(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from .store import open_store

    if args.action == "check" and args.days is not None and args.days < 1:
        print("gatelog: --days must be at least 1", file=sys.stderr)
        return 2
    day: date | None = None
    if args.action == "repair" and args.day is not None:
        day = _parse_day(args.day)
        if day is None:
            print(f"gatelog: --day must be a date YYYY-MM-DD, got {args.day!r}", file=sys.stderr)
            return 2

    async def run() -> int:
        store = open_store(settings)
        try:
            days = await stored_days(store)
            if args.action == "check":
                if args.days is not None:
                    since = datetime.now(UTC).date() - timedelta(days=args.days - 1)
                    days = [d for d in days if d >= since]
                differences = await check(store, days)
                for difference in differences:
                    print(difference.line())
                if differences:
                    bad = sorted({d.day for d in differences})
                    print(
                        f"{len(bad)} of {len(days)} days differ; rebuild one with "
                        f"python -m service rollup repair --day {bad[0].isoformat()}"
                    )
                    return 1
                print(f"rollups match the raw rows on all {len(days)} days")
                return 0
            targets = [day] if day is not None else sorted(
                {d.day for d in await check(store, days)}
            )  # fmt: skip
            for target in targets:
                await repair(store, target)
                print(f"repaired {target.isoformat()}")
            if not targets:
                print("nothing to repair: every day matches")
            return 0
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ApiError as exc:
        print(f"gatelog: {exc.message}", file=sys.stderr)
        return 1


COMMAND = Command(
    "rollup",
    "check the rollups against the raw rows day by day, or rebuild a day from them",
    cmd_rollup,
    _rollup_args,
)
