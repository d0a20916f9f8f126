"""The schema as the engine sees it: applied twice without change, and the indexes the
hot paths rely on are the ones the engine actually uses."""

from __future__ import annotations

from typing import Any

from service.logs import keyword_filter
from service.migrate import load, migrate
from service.params import LogFilter


async def test_applying_the_schema_again_changes_nothing(store: Any) -> None:
    query = (
        "SELECT name, create_table_query FROM system.tables "
        "WHERE database = currentDatabase() ORDER BY name"
    )
    before = (await store.query(query)).rows
    assert await migrate(store) == []
    for migration in load():
        await store.command(migration.sql)  # every file is idempotent on its own
    assert (await store.query(query)).rows == before
    versions = (await store.query("SELECT version FROM schema_migrations FINAL")).rows
    assert sorted(v for (v,) in versions) == [m.version for m in load()]


async def explain(store: Any, where: str, params: dict[str, Any]) -> str:
    rows = await store.query(f"EXPLAIN indexes = 1 SELECT id FROM logs WHERE {where}", params)
    return "\n".join(str(row[0]) for row in rows.rows)


async def test_keyword_search_uses_the_ngram_indexes(store: Any) -> None:
    await store.command(
        "INSERT INTO logs (id, user_id, created_at, content, model_name) "
        "SELECT number, number % 10, toDateTime(1700000000 + number, 'UTC'), "
        "concat('hay ', toString(number)), 'gpt-4' FROM numbers(50000)"
    )
    flt, extra = keyword_filter(LogFilter(), "NeedLE")
    where, params = flt.where()
    plan = await explain(store, where, {**params, **extra})
    assert "idx_content_ngram" in plan and "idx_model_ngram" in plan


async def test_one_users_rows_are_a_primary_key_range(store: Any) -> None:
    await store.command(
        "INSERT INTO logs (id, user_id, created_at) "
        "SELECT number, number % 100, toDateTime(1700000000 + number, 'UTC') "
        "FROM numbers(200000) SETTINGS max_block_size = 8192"
    )
    where, params = LogFilter(user_id=5, token_id=3).where()
    plan = await explain(store, where, params)
    assert "PrimaryKey" in plan and "user_id" in plan
