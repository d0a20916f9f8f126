"""Bulk loading: an Arrow table into an engine table by the engine's fastest path.

Generation and import move millions of rows; row lists through the driver would cost
more than everything else together. The batch goes through
:meth:`service.store.Store.insert_table` (the path of ``POST /api/internal/logs`` too): on
the embedded engine an Arrow IPC file read by the engine itself (``INSERT ... SELECT FROM
file(...)``), which measured about twice as fast as handing the table to the driver's
``insert_arrow`` (spec/engine-notes.md: file formats are chDB's fastest insert path); a
ClickHouse server cannot read this machine's files, so there the driver's Arrow insert.

Every batch carries an ``insert_deduplication_token``: replaying an identical batch
(a retried or resumed job) stores nothing twice, within the table's deduplication
window.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from .columns import Column
from .store import Store


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type a column is bulk-loaded as (:mod:`service.columns`)."""
    kind: pa.DataType = getattr(pa, column.arrow_type)()
    return kind


def arrow_table(columns: Sequence[Column], values: Mapping[str, Any]) -> pa.Table:
    """One array or sequence per column as a table of the columns' types, in their order;
    a missing or unknown column is a bug, so it raises."""
    names = [c.name for c in columns]
    if set(values) != set(names):
        raise ValueError(f"columns {sorted(values)} are not those of the table: {names}")
    arrays: dict[str, Any] = {}
    for column in columns:
        kind = arrow_type(column)
        value = values[column.name]
        if isinstance(value, pa.Array | pa.ChunkedArray):
            # dictionary-encoded text stays encoded: the engine reads it as its strings
            stored = value.type.value_type if pa.types.is_dictionary(value.type) else value.type
            arrays[column.name] = value if stored == kind else value.cast(kind)
        else:
            arrays[column.name] = pa.array(value, kind)
    return pa.table(arrays)


async def insert_table(
    store: Store,
    table: str,
    data: Any,
    dedup_token: str,
    settings: dict[str, Any] | None = None,
) -> int:
    """Insert the pyarrow Table ``data`` into ``table``; returns its row count."""
    rows = int(data.num_rows)
    if rows == 0:
        return 0
    extra = {"insert_deduplication_token": dedup_token, "async_insert": 0, **(settings or {})}
    await store.insert_table(table, data, settings=extra)
    return rows


def progress_bar(total: int, what: str, enabled: bool) -> Any:
    """A progress bar on stderr with rows/s and an ETA (import and generate). A disabled
    one needs no tqdm, which is the tools extra: a serving install follows a gateway."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=what,
        unit="rows",
        unit_scale=True,
        disable=not enabled,
        file=sys.stderr,
        smoothing=0.1,
    )


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
