"""The column catalogue (``service.columns``) says what the migrated engine has: every
column of ``logs`` and ``tokens`` with its exact type and in the table's order, and each
rollup's dimension columns typed as in ``logs``. The engine (``system.columns`` after
the real migrator) is the independent side."""

from __future__ import annotations

from service import columns
from service.stats import ROLLUPS
from service.store import ChdbStore


async def table_columns(store: ChdbStore, table: str) -> list[tuple[str, str]]:
    rows = await store.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {table:String} ORDER BY position",
        {"table": table},
    )
    return [(str(name), str(kind)) for name, kind in rows.rows]


async def test_logs_columns_are_the_catalogues(engine: ChdbStore) -> None:
    found = await table_columns(engine, "logs")
    assert found, "logs has columns"
    assert found == [(c.name, c.engine) for c in columns.LOGS]


async def test_tokens_columns_are_the_catalogues(engine: ChdbStore) -> None:
    found = await table_columns(engine, "tokens")
    assert found, "tokens has columns"
    assert found == [(c.name, c.engine) for c in columns.TOKENS]


async def test_every_rollup_has_its_dimensions_typed_as_in_logs(engine: ChdbStore) -> None:
    logs = dict(await table_columns(engine, "logs"))
    for rollup in ROLLUPS:
        found = dict(await table_columns(engine, rollup.table))
        assert found, rollup.table
        for column in rollup.columns:
            name = column.strip("`")
            assert found.get(name) == logs[name], (rollup.table, name)


async def test_each_dimension_is_a_column_of_every_rollup_that_serves_it(
    engine: ChdbStore,
) -> None:
    """The catalogue's dimensions are exactly the columns the finest rollup groups by
    besides its time and its sums."""
    minute = dict(await table_columns(engine, "logs_minute"))
    grouped = set(minute) - {"minute", "requests", "quota", "prompt_tokens", "completion_tokens"}
    assert {sql.strip("`") for sql in columns.DIMENSIONS.values()} == grouped
