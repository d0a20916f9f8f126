"""Export: every log matching the list filters, newest first, as CSV or NDJSON, streamed.

Memory stays flat however many rows match:

- The engine never sorts more than about ``export_window_rows`` rows at a time: the
  time range is cut into consecutive windows, newest first, planned from the per-minute
  rollup's counts (whole days merged while small, busy days cut at minutes). Each window
  is one ``ORDER BY created_at DESC, id DESC`` query; the windows tile the range, so
  their concatenation is the newest-first order of all matching rows, whatever the plan
  (rows ingested after planning only make a window larger).
- Rows reach Python in blocks of ``export_block_rows`` and are written out block by block.
- A window the engine cancels at the per-query memory bound (large rows) is read again
  in two halves by time, newest first, until the halves fit or hold one second only.

The last line carries the totals of the rows written (rows, quota, prompt and completion
tokens), for reconciliation; a stream that does not end with it is incomplete (an error
line says why when the error could still be written).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from .logs import ORDER, select_list, shape
from .params import LogFilter
from .stats import MINUTE, ROLLUP, Bound, _range_sql, half_open, rollup_serves
from .store import QueryBound, Store
from .web import dumps_bytes

DAY = 86400
MEMORY_LIMIT = 241  # the engine's code for a query past max_memory_usage
FORMATS: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson; charset=utf-8",
}
DEFAULT_FORMAT = "csv"
# Spreadsheets run cells that start with these as formulas; such text cells get a
# leading apostrophe in CSV (NDJSON carries every value unchanged).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ExportTotals:
    rows: int = 0
    quota: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, items: Sequence[dict[str, Any]]) -> None:
        self.rows += len(items)
        for item in items:
            self.quota += int(item.get("quota", 0))
            self.prompt_tokens += int(item.get("prompt_tokens", 0))
            self.completion_tokens += int(item.get("completion_tokens", 0))

    def as_dict(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "quota": self.quota,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def _range(column: str, lo: Bound, hi: Bound) -> tuple[str, dict[str, Any]]:
    """The window ``[lo, hi)`` of ``column``, under the parameters ``w_lo``/``w_hi``."""
    params: dict[str, Any] = {}
    return _range_sql(column, lo, hi, "w", params), params


async def _counts(
    store: Store, flt: LogFilter, unit: str, lo: Bound, hi: Bound
) -> list[tuple[int, int]]:
    """(start of unit, rows) from the rollup, newest first; ``unit`` is a fixed
    expression of ours (day or minute)."""
    where, params = flt.where(time=False)
    cond, extra = _range("minute", lo, hi)
    rows = await store.query(
        f"SELECT toUInt32({unit}) AS t, sum(requests) AS n FROM {ROLLUP} "
        f"WHERE {where} AND {cond} GROUP BY t HAVING n > 0 ORDER BY t DESC",
        {**params, **extra},
    )
    return [(int(t), int(n)) for t, n in rows.rows]


async def plan_windows(
    store: Store, flt: LogFilter, lo: Bound, hi: Bound, window_rows: int
) -> list[tuple[Bound, Bound]]:
    """Consecutive ``[lo, hi)`` windows, newest first, tiling ``[lo, hi)``, each
    holding about ``window_rows`` rows by the rollup's counts (a single minute with
    more is one window)."""
    if not rollup_serves(flt):
        return [(lo, hi)]  # a request id selects a handful of rows: one window
    minute_lo = None if lo is None else lo // MINUTE * MINUTE
    cuts: list[int] = []
    pending = 0
    for day, day_rows in await _counts(store, flt, "toStartOfDay(minute)", minute_lo, hi):
        if day_rows <= window_rows:
            if pending and pending + day_rows > window_rows:
                cuts.append(day + DAY)
                pending = 0
            pending += day_rows
            continue
        # A busy day: cut it at minutes.
        day_lo = day if minute_lo is None else max(day, minute_lo)
        day_hi = day + DAY if hi is None else min(day + DAY, hi)
        for minute, minute_rows in await _counts(store, flt, "minute", day_lo, day_hi):
            if pending and pending + minute_rows > window_rows:
                cuts.append(minute + MINUTE)
                pending = 0
            pending += minute_rows
    bounds: list[Bound] = [hi]
    for cut in cuts:
        previous = bounds[-1]
        if (lo is None or cut > lo) and (previous is None or cut < previous):
            bounds.append(cut)
    bounds.append(lo)
    return list(zip(bounds[1:], bounds[:-1], strict=True))


async def export_blocks(
    store: Store,
    flt: LogFilter,
    fields: Sequence[str],
    user_view: bool,
    window_rows: int,
    block_rows: int,
    window_bytes: int = 0,
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Blocks of matching rows as dicts (user view scrubbed), newest first.

    A window is held whole only up to about ``window_bytes`` of text (0: no bound);
    past that its remaining blocks are handed on as they come (its engine call then
    lasts while the client reads, bounded by the send and query timeouts)."""
    where, params = flt.where()
    columns = select_list(fields)
    pending = await plan_windows(store, flt, *half_open(flt.start, flt.end), window_rows)
    while pending:
        w_lo, w_hi = pending.pop(0)
        cond, extra = _range("created_at", w_lo, w_hi)
        sql = f"SELECT {columns} FROM logs WHERE {where} AND {cond} {ORDER}"
        blocks = store.stream(sql, {**params, **extra}, settings={"max_block_size": block_rows})
        # The whole window is read before any of it is handed on: the engine (a chDB
        # thread, or a server's query) is released before the client is written to, so
        # a slow or stalled client holds memory for one window, never engine capacity.
        window: list[list[tuple[Any, ...]]] = []
        held = 0
        handed = False
        try:
            async with aclosing(blocks) as rows:  # type: ignore[type-var]
                async for block in rows:
                    if not block:
                        continue
                    if not window_bytes or held <= window_bytes:
                        window.append(block)
                        held += await off_loop(store, block_bytes, block)
                        continue
                    # Past the memory budget: what is held goes first, then each block.
                    handed = True
                    while window:
                        yield await off_loop(store, shape, window.pop(0), fields, user_view)
                    yield await off_loop(store, shape, block, fields, user_view)
        except QueryBound as exc:
            # A window of large rows past the engine's memory bound: read it again in
            # two halves by time (each holds rows), unless nothing smaller is possible.
            halves = None
            if not handed and exc.code == MEMORY_LIMIT:
                halves = await _halves(store, where, params, w_lo, w_hi)
            if halves is None:
                raise
            pending[0:0] = halves
            continue
        while window:
            yield await off_loop(store, shape, window.pop(0), fields, user_view)


T = TypeVar("T")
#: blocks of at least this many rows are handled on a worker thread
SHAPE_OFF_LOOP_ROWS = 1000


async def off_loop(store: Store, fn: Callable[..., T], block: Sequence[Any], *args: Any) -> T:
    """``fn(block, *args)``; for a large block on a worker thread inside the caller's
    share of the engine (:meth:`Store.work`; within a slot the task holds already, as
    inside a window's read, in that slot). The Python work of a window of 10,000
    rows (shaping each row, the user view's ``other``, encoding) is tens of
    milliseconds: on a thread the event loop still gets the interpreter every few
    milliseconds, and in the share a heavy caller's exports and queries together hold
    one core, not one each (py-spy on the service under the soak's hostile user: the
    event loop, then the threads, were busy with export windows)."""
    if len(block) < SHAPE_OFF_LOOP_ROWS:
        return fn(block, *args)
    return await store.work(fn, block, *args)


async def _halves(
    store: Store, where: str, params: dict[str, Any], lo: Bound, hi: Bound
) -> list[tuple[Bound, Bound]] | None:
    """``[lo, hi)`` cut in two at the middle second of its rows, newest half first, so
    each half holds at least one row; None when its rows all share one second."""
    cond, extra = _range("created_at", lo, hi)
    rows = await store.query(
        "SELECT toUInt32(min(created_at)), toUInt32(max(created_at)) "
        f"FROM logs WHERE {where} AND {cond}",
        {**params, **extra},
    )
    first, last = (int(v) for v in rows.rows[0])
    if first >= last:
        return None
    middle = (first + last + 1) // 2  # first < middle <= last
    return [(middle, hi), (lo, middle)]


def block_bytes(block: Sequence[tuple[Any, ...]]) -> int:
    """About the bytes a block of rows holds: its text, plus 8 per other value."""
    return sum(len(v) if isinstance(v, str) else 8 for row in block for v in row)


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_header(fields: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue().encode()


def csv_rows(items: Sequence[dict[str, Any]], fields: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for item in items:
        writer.writerow([_csv_value(item[name]) for name in fields])
    return buffer.getvalue().encode()


def csv_totals(totals: ExportTotals) -> bytes:
    """``#totals,rows=N,quota=Q,prompt_tokens=P,completion_tokens=C`` (a comment line
    to CSV readers that skip ``#`` lines)."""
    return ("#totals," + ",".join(f"{k}={v}" for k, v in totals.as_dict().items()) + "\n").encode()


def csv_error(message: str) -> bytes:
    return f"#error,{message}\n".encode()


def ndjson_rows(items: Sequence[dict[str, Any]]) -> bytes:
    """One JSON object a line, the bytes the stdlib would write (compact, non-ASCII kept),
    through orjson where it can (:func:`service.web.dumps_bytes`): the export's Python
    work per window, done on the event loop while every other request waits; 10,000
    rows took 108 ms through the stdlib, 14 ms so."""
    return b"".join([dumps_bytes(item) + b"\n" for item in items])


def ndjson_totals(totals: ExportTotals) -> bytes:
    return (json.dumps({"totals": totals.as_dict()}, separators=(",", ":")) + "\n").encode()


def ndjson_error(message: str) -> bytes:
    return (json.dumps({"error": message}, ensure_ascii=False) + "\n").encode()
