"""Bulk loading: an Arrow table into an engine table by the engine's fastest path.

Generation and import move millions of rows; row lists through the driver would cost
more than everything else together. The batch goes through
:meth:`service.store.Store.insert_table`: on the embedded engine an Arrow IPC file read
by the engine itself, on a ClickHouse server the driver's Arrow insert (the same path as
``POST /api/internal/logs``).

Every batch carries an ``insert_deduplication_token``: replaying an identical batch
(a retried or resumed job) stores nothing twice, within the table's deduplication
window.
"""

from __future__ import annotations

import sys
from typing import Any

from service.store import Store, spool_dir

__all__ = ["insert_table", "progress_bar", "spool_dir"]


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
    """A progress bar on stderr with rows/s and an ETA (import and generate)."""
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
