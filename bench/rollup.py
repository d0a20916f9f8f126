"""Measure the per-minute rollup and what is built on it, on the embedded engine.

Generates gateway-like rows over 30 days into a fresh schema (the real migrator, so the
materialized view feeds the rollup on every insert), then measures:

- the rollup's row reduction (raw rows / rollup rows once folded), here and, computed
  without storing, at other row counts over the same days;
- stat and series latency from the rollup (exact edges) vs. the same sums scanned from
  the raw rows;
- export memory: peak RSS while streaming every row newest first in planned windows,
  vs. one ORDER BY over everything;
- deleting a month: ``delete_before`` (partition drops + one boundary day) vs. one
  lightweight ``DELETE`` of the same rows on a fresh copy.

Writes bench/results/rollup-<rows>-<days>d.json (and rollup-reduction.json) and prints
the figures.

    python bench/rollup.py --rows 1000000 --days 30 --reduction-at
    python bench/rollup.py --reduction-only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.deletion import DeleteGuard, delete_before  # noqa: E402
from service.export import export_blocks  # noqa: E402
from service.logs import ADMIN_FIELDS, ORDER, select_list  # noqa: E402
from service.migrate import migrate  # noqa: E402
from service.params import LogFilter  # noqa: E402
from service.stats import GROUP_KEYS_ADMIN, SeriesRequest, series, stat  # noqa: E402
from service.store import ChdbStore  # noqa: E402

DAYS = 30
END = 1_790_000_000 // 86400 * 86400 + 13 * 3600 + 17  # mid-day, mid-minute
MODELS = "['gpt-4o','gpt-4o-mini','claude-3-5-sonnet','deepseek-chat','qwen-max','gemini-1.5-pro','gpt-3.5-turbo','o1-mini']"  # noqa: E501

# Gateway-like rows, spread evenly over the days: skewed users (a few heavy API users, many
# light ones); the dimensions correlate as on a gateway: a user's group is fixed, most of
# a user's traffic goes through their first token and favourite models, a model is
# served by one channel (10% fall back to another); 95% consumption.
# --independent draws every dimension independently per row instead: the worst case,
# where nearly every row is its own rollup row.
ROWS_SQL_TEMPLATE = """
SELECT
    number + 1 AS id,
    toUInt64(floor(pow(2000, (cityHash64(number, 1) % 100000) / 100000.0))) AS user_id,
    toDateTime(__END__ - intDiv((number + 1) * __SPAN__, {n:UInt64}), 'UTC') AS created_at,
    multiIf(cityHash64(number, 2) % 100 < 95, 2, cityHash64(number, 2) % 100 < 98, 5, 1) AS type,
    'API call succeeded' AS content,
    concat('user', toString(user_id)) AS username,
    concat('token-', toString(token_id)) AS token_name,
    arrayElement(__MODELS__, 1 + __MODEL__ % 8) AS model_name,
    toInt64(cityHash64(number, 5) % 50000) AS quota,
    toInt64(cityHash64(number, 6) % 4000) AS prompt_tokens,
    toInt64(cityHash64(number, 7) % 1000) AS completion_tokens,
    toInt32(cityHash64(number, 8) % 30) AS use_time,
    cityHash64(number, 9) % 2 = 0 AS is_stream,
    toUInt32(1 + __CHANNEL__ % 6) AS channel_id,
    concat('channel-', toString(channel_id)) AS channel_name,
    user_id * 10 + __TOKEN__ AS token_id,
    __GROUP__ AS `group`,
    '10.0.0.1' AS ip,
    toString(generateUUIDv4()) AS request_id,
    '{"model_ratio":2.5,"group_ratio":1,"completion_ratio":3,"frt":812,"admin_info":{"use_channel":["3"]}}' AS other
FROM numbers({n:UInt64})
"""  # noqa: E501
CORRELATED = {
    "__MODEL__": "(user_id + toUInt64(pow((cityHash64(number, 4) % 1000) / 1000.0, 4) * 8))",
    "__CHANNEL__": "if(cityHash64(number, 10) % 10 = 0, cityHash64(number, 12), "
    "user_id + toUInt64(pow((cityHash64(number, 4) % 1000) / 1000.0, 4) * 8))",
    "__TOKEN__": "toUInt64(pow((cityHash64(number, 3) % 1000) / 1000.0, 6) * (1 + user_id % 3))",
    "__GROUP__": "if(user_id % 5 = 0, 'vip', 'default')",
}
INDEPENDENT = {
    "__MODEL__": "cityHash64(number, 4)",
    "__CHANNEL__": "cityHash64(number, 10)",
    "__TOKEN__": "cityHash64(number, 3) % (1 + user_id % 3)",
    "__GROUP__": "if(cityHash64(number, 11) % 5 = 0, 'vip', 'default')",
}


def rows_sql(days: int, independent: bool = False) -> str:
    text = ROWS_SQL_TEMPLATE
    for key, value in {
        **(INDEPENDENT if independent else CORRELATED),
        "__END__": str(END),
        "__SPAN__": str(days * 86400),
        "__MODELS__": MODELS,
    }.items():
        text = text.replace(key, value)
    return text


DIMS = "user_id, type, username, token_name, model_name, channel_id, `group`"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class PeakRss:
    """Samples RSS every 10 ms on a thread while active."""

    def __enter__(self) -> PeakRss:
        self.base = rss_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def median_ms(fn: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


async def fill(store: ChdbStore, rows: int, days: int) -> float:
    """One insert through the view (as an ingest batch is); returns seconds."""
    started = time.perf_counter()
    await store.command(
        f"INSERT INTO logs {rows_sql(days)}",
        {"n": rows},
        settings={"max_partitions_per_insert_block": 1000, "max_insert_threads": 2},
    )
    return time.perf_counter() - started


async def reduction(store: ChdbStore, rows: int, days: int, independent: bool) -> dict[str, Any]:
    """Rollup rows for ``rows`` generated rows, computed without storing them."""
    folded = await store.query(
        f"SELECT count() FROM (SELECT toStartOfMinute(created_at) AS minute, {DIMS} "
        f"FROM ({rows_sql(days, independent)}) GROUP BY minute, {DIMS})",
        {"n": rows},
    )
    count = int(folded.scalar())
    return {
        "raw_rows": rows,
        "rollup_rows": count,
        "reduction": round(rows / count, 2),
        "days": days,
        "rows_per_minute": round(rows / (days * 1440), 1),
        "dimensions": "independent (worst case)" if independent else "gateway-like",
    }


async def rows_in(store: ChdbStore, table: str, column: str, lo: int, hi: int, cond: str) -> int:
    result = await store.query(
        f"SELECT count() FROM {table} WHERE type = 2 {cond} "
        f"AND {column} >= toDateTime({lo}, 'UTC') AND {column} <= toDateTime({hi}, 'UTC')"
    )
    return int(result.scalar())


async def run(
    rows: int, days: int, repeat: int, other_sizes: list[tuple[int, int]]
) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows, "days": days}
    path = tempfile.mkdtemp(prefix="gatelog-rollup-")
    store = ChdbStore(path)
    try:
        await migrate(store)
        out["insert_seconds_with_view"] = round(await fill(store, rows, days), 1)
        parts = await store.query("SELECT count() FROM logs_minute")
        await store.command("OPTIMIZE TABLE logs_minute FINAL")
        folded = int((await store.query("SELECT count() FROM logs_minute")).scalar())
        out["stored"] = {
            "raw_rows": int((await store.query("SELECT count() FROM logs")).scalar()),
            "rollup_rows_before_merge": int(parts.scalar()),
            "rollup_rows_folded": folded,
        }
        out["stored"]["reduction"] = round(out["stored"]["raw_rows"] / folded, 2)
        out["reduction_at"] = [
            await reduction(store, n, d, independent)
            for n, d in other_sizes
            for independent in (False, True)
        ]

        heavy = 1  # the heaviest user (the skew puts most rows on the smallest ids)
        hour, day = 3600, 86400
        whole = END - days * day + 31  # mid-minute edges at both ends
        model = "AND model_name = 'claude-3-5-sonnet'"
        user = f"AND user_id = {heavy}"
        cases: dict[str, tuple[LogFilter, str]] = {
            "admin, all days": (LogFilter(start=whole, end=END), ""),
            "admin, last day": (LogFilter(start=END - day + 31, end=END), ""),
            "admin, last hour": (LogFilter(start=END - hour + 31, end=END), ""),
            "admin, all days, one model": (
                LogFilter(start=whole, end=END, model_name="claude-3-5-sonnet"),
                model,
            ),
            "heaviest user, all days": (LogFilter(start=whole, end=END, user_id=heavy), user),
            "heaviest user, last day": (
                LogFilter(start=END - day + 31, end=END, user_id=heavy),
                user,
            ),
        }
        timings: dict[str, dict[str, float]] = {}
        for name, (flt, cond) in cases.items():
            assert flt.start is not None and flt.end is not None
            raw_sql = (
                "SELECT sum(quota), count(), sum(prompt_tokens), sum(completion_tokens) FROM logs "
                f"WHERE type = 2 AND created_at >= toDateTime({flt.start}, 'UTC') "
                f"AND created_at <= toDateTime({flt.end}, 'UTC') {cond}"
            )
            got = await stat(store, flt, END + 0.5)
            raw = (await store.query(raw_sql)).rows[0]
            assert (got["quota"], got["requests"]) == (raw[0], raw[1]), (name, got, raw)
            timings[name] = {
                "raw rows in range": await rows_in(
                    store, "logs", "created_at", flt.start, flt.end, cond
                ),
                "rollup rows in range": await rows_in(
                    store, "logs_minute", "minute", flt.start, flt.end, cond
                ),
                "stat ms (rollup + exact edges, range and last 60 s)": await median_ms(
                    lambda flt=flt: stat(store, flt, END + 0.5), repeat
                ),
                "raw scan ms (range only)": await median_ms(
                    lambda sql=raw_sql: store.query(sql), repeat
                ),
            }
        series_cases = {
            "admin hourly, last day": (LogFilter(), SeriesRequest(END - day, END, "hour")),
            "admin daily by model, all days": (
                LogFilter(),
                SeriesRequest(whole, END, "day", "model_name"),
            ),
            "heaviest user per minute, last day": (
                LogFilter(user_id=heavy),
                SeriesRequest(END - day, END, "minute"),
            ),
        }
        for name, (flt, req) in series_cases.items():
            timings[f"series: {name}"] = {
                "series ms (rollup + exact edges)": await median_ms(
                    lambda flt=flt, req=req: series(store, flt, req, GROUP_KEYS_ADMIN, 10**6),
                    repeat,
                )
            }
        out["timings"] = timings

        # Export memory: every row, newest first.
        async def drain(blocks: Any) -> int:
            n = 0
            async for block in blocks:
                n += len(block)
            return n

        with PeakRss() as windowed:
            started = time.perf_counter()
            n = await drain(export_blocks(store, LogFilter(), ADMIN_FIELDS, False, 100_000, 8192))
            windowed_s = time.perf_counter() - started
        assert n == out["stored"]["raw_rows"]
        with PeakRss() as single:
            started = time.perf_counter()
            n = await drain(
                store.stream(
                    f"SELECT {select_list(ADMIN_FIELDS)} FROM logs {ORDER}",
                    settings={"max_block_size": 8192},
                )
            )
            single_s = time.perf_counter() - started
        out["export"] = {
            "rows": n,
            "planned windows: peak rss delta MB": round(windowed.peak - windowed.base),
            "planned windows: seconds": round(windowed_s, 1),
            "one ORDER BY: peak rss delta MB": round(single.peak - single.base),
            "one ORDER BY: seconds": round(single_s, 1),
        }

        # Deleting the history: everything but the last hour (a month with --days 30).
        target = END - 3600
        partitions = await store.query(
            "SELECT DISTINCT partition_id FROM system.parts "
            "WHERE database = currentDatabase() AND table = 'logs' AND active"
        )
        parts_before = len(partitions.rows)
        expected = int(
            (
                await store.query(
                    f"SELECT count() FROM logs WHERE created_at < toDateTime({target}, 'UTC')"
                )
            ).scalar()
        )
        midnight = target - target % 86400
        started = time.perf_counter()
        days_result = await delete_before(store, midnight, DeleteGuard(), 10)
        drop_seconds = time.perf_counter() - started
        started = time.perf_counter()
        day_result = await delete_before(store, target, DeleteGuard(), 10)
        boundary_seconds = time.perf_counter() - started
        deleted = days_result.deleted + day_result.deleted
        assert deleted == expected, (deleted, expected)
        # The same rows removed by one lightweight DELETE, on a fresh copy.
        await store.command("TRUNCATE TABLE logs")
        await store.command("TRUNCATE TABLE logs_minute")
        await fill(store, rows, days)
        started = time.perf_counter()
        await store.command(f"DELETE FROM logs WHERE created_at < toDateTime({target}, 'UTC')")
        plain = time.perf_counter() - started
        out["delete_history"] = {
            "rows deleted": deleted,
            "partitions before": parts_before,
            "whole days dropped": len(days_result.dropped_days),
            "rows in the dropped days": days_result.deleted,
            "dropping the days: seconds": round(drop_seconds, 2),
            "rows of the target's day before the target": day_result.boundary_rows,
            "the target's day (count, negated rollup rows, DELETE): seconds": round(
                boundary_seconds, 2
            ),
            "one lightweight DELETE of the same rows, rollup not corrected: seconds": round(
                plain, 2
            ),
        }
    finally:
        await store.close()
        shutil.rmtree(path, ignore_errors=True)
    out["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    return out


async def reduction_only(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix="gatelog-rollup-")
    store = ChdbStore(path)
    try:
        return {
            "reduction_at": [
                await reduction(store, n, d, independent)
                for n, d in sizes
                for independent in (False, True)
            ],
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
        }
    finally:
        await store.close()
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument(
        "--reduction-at",
        nargs="*",
        default=["1000000/30", "10000000/30", "30000000/30", "10000000/3", "10000000/1"],
        help="ROWS/DAYS pairs whose rollup size is computed without storing them",
    )
    parser.add_argument(
        "--reduction-only",
        action="store_true",
        help="only the rollup sizes of --reduction-at (bench/results/rollup-reduction.json)",
    )
    args = parser.parse_args()
    sizes = [(int(n), int(d)) for n, d in (pair.split("/") for pair in args.reduction_at)]
    if args.reduction_only:
        out = asyncio.run(reduction_only(sizes))
        name = "rollup-reduction.json"
    else:
        out = asyncio.run(run(args.rows, args.days, args.repeat, sizes))
        name = f"rollup-{args.rows}-{args.days}d.json"
    target = Path(__file__).resolve().parent / "results" / name
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
