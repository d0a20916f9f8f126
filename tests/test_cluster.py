"""Cluster mode: every rendered statement is valid ClickHouse (the engine's own parser,
``formatQuery``), changes nothing but what cluster mode must change, and the
single-node rendering is the files byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from service.cluster import (
    CLUSTER_SETTINGS,
    check_cluster,
    local_table,
    on_cluster,
    render_for_cluster,
    sharded_tables,
    system_table,
)
from service.migrate import FILLS, MIGRATIONS_DDL, load, render
from service.settings import Settings, SettingsError
from service.store import HttpStore, open_store
from tests.support.cluster import CLUSTER, SAMPLE_FILES, sample_schema, unrender
from tests.support.emulated_cluster import DELETED_USER, DROPPED_DAY, START, sample_rows


async def formatted(engine: Any, sql: str) -> str:
    """The engine's canonical text of ``sql``; raises if it does not parse."""
    return str((await engine.query("SELECT formatQuery({sql:String})", {"sql": sql})).scalar())


@pytest.fixture
def schema(tmp_path: Path) -> list[str]:
    return [m.sql for m in load(sample_schema(tmp_path / "schema"))]


def test_single_node_rendering_is_the_files_byte_for_byte(tmp_path: Path) -> None:
    files = sorted(sample_schema(tmp_path).glob("*.sql"))
    assert len(files) == len({m.version for m in load()} | {n[:-4] for n in SAMPLE_FILES})
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert render(text) == [text]
        assert render(text, None, ["logs"]) == [text]
    assert render(MIGRATIONS_DDL) == [MIGRATIONS_DDL]


async def test_every_cluster_statement_parses_and_only_the_cluster_parts_change(
    engine: Any, schema: list[str]
) -> None:
    tables = sharded_tables(schema)
    assert tables == {
        "logs",
        "tokens",
        "logs_minute",
        "logs_perf_minute",
        "channel_hour",
        "import_progress",
        "id_leases",
        "rollup_markers",
        "logs_hour_site",
        "logs_day_site",
        "logs_day",
        "logs_day_site_m",
        "logs_day_m",
    }
    for sql in [MIGRATIONS_DDL, *schema]:
        statements = render(sql, CLUSTER, tables)
        assert statements
        original = await formatted(engine, sql)
        first = await formatted(engine, statements[0])
        assert f" ON CLUSTER {CLUSTER}" in first.splitlines()[0]
        # Undoing exactly what cluster mode adds gives back the single-node statement.
        assert unrender(first, tables) == original
        for statement in statements[1:]:
            await formatted(engine, statement)


@pytest.mark.parametrize(
    ("table", "engine_name", "key"),
    [
        ("logs", "ReplicatedMergeTree", "cityHash64(user_id)"),
        ("tokens", "ReplicatedReplacingMergeTree", "cityHash64(user_id)"),
        ("logs_minute", "ReplicatedSummingMergeTree", "cityHash64(user_id)"),
        ("logs_perf_minute", "ReplicatedSummingMergeTree", "cityHash64(user_id)"),
        ("channel_hour", "ReplicatedAggregatingMergeTree", "cityHash64(channel_id)"),
        ("import_progress", "ReplicatedReplacingMergeTree", "cityHash64(source)"),
    ],
)
async def test_a_table_becomes_a_replicated_local_table_and_a_distributed_one(
    engine: Any, schema: list[str], table: str, engine_name: str, key: str
) -> None:
    (sql,) = [s for s in schema if f"CREATE TABLE IF NOT EXISTS {table}\n" in s]
    local, distributed = render(sql, CLUSTER, sharded_tables(schema))
    local_text = await formatted(engine, local)
    assert local_text.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER {CLUSTER}")
    path = f"/clickhouse/tables/{{shard}}/{{database}}/{table}_local"
    assert f"ENGINE = {engine_name}('{path}', '{{replica}}'" in local_text
    assert "non_replicated_deduplication_window" not in local_text
    assert await formatted(engine, distributed) == await formatted(
        engine,
        f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER {CLUSTER} AS {table}_local "
        f"ENGINE = Distributed('{CLUSTER}', currentDatabase(), {table}_local, {key})",
    )


async def test_the_migrations_table_has_a_replica_on_every_node(engine: Any) -> None:
    (statement,) = render(MIGRATIONS_DDL, CLUSTER, ["logs"])
    text = await formatted(engine, statement)
    assert text.startswith(f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {CLUSTER}")
    # No {shard} in the Keeper path: one replica set spanning all nodes, each node a
    # replica named uniquely by shard and replica.
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{database}/schema_migrations', "
        "'{shard}-{replica}', applied_at)" in text
    )


async def test_views_fire_on_the_local_table_and_write_the_local_target(
    engine: Any, schema: list[str]
) -> None:
    tables = sharded_tables(schema)
    (rollup,) = render(SAMPLE_FILES["004_logs_minute_mv.sql"], CLUSTER, tables)
    text = await formatted(engine, rollup)
    assert text.startswith(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS logs_minute_mv ON CLUSTER {CLUSTER} "
        "TO logs_minute_local"
    )
    assert "FROM logs_local" in text
    assert "content != 'FROM logs'" in text  # literals are not rewritten
    (channel,) = render(SAMPLE_FILES["006_channel_hour_mv.sql"], CLUSTER, tables)
    text = await formatted(engine, channel)
    assert "TO channel_hour_local" in text
    assert "FROM logs_local" in text  # the source inside the subquery
    assert "LEFT JOIN tokens AS t" in text  # a joined table is read whole


async def test_column_changes_reach_the_local_and_the_distributed_table(
    engine: Any, schema: list[str]
) -> None:
    tables = sharded_tables(schema)
    local, distributed = render(SAMPLE_FILES["007_logs_region.sql"], CLUSTER, tables)
    assert (await formatted(engine, local)).startswith(
        f"ALTER TABLE logs_local ON CLUSTER {CLUSTER}"
    )
    assert (await formatted(engine, distributed)).startswith(
        f"ALTER TABLE logs ON CLUSTER {CLUSTER}"
    )
    (index_only,) = render(
        "ALTER TABLE logs ADD INDEX idx_ip ip TYPE bloom_filter GRANULARITY 2", CLUSTER, tables
    )
    assert (await formatted(engine, index_only)).startswith(
        f"ALTER TABLE logs_local ON CLUSTER {CLUSTER}"
    )


async def test_deletion_helpers_issue_statements_on_the_cluster(engine: Any) -> None:
    for cluster, table in ((CLUSTER, "logs_local"), (None, "logs")):
        target = local_table("logs", cluster) + on_cluster(cluster)
        drop = f"ALTER TABLE {target} DROP PARTITION {{p:String}}"
        delete = f"DELETE FROM {target} WHERE created_at < toDateTime({{t:UInt32}}, 'UTC')"
        clause = f" ON CLUSTER {cluster}" if cluster else ""
        assert (await formatted(engine, drop)).startswith(f"ALTER TABLE {table}{clause}\n")
        assert (await formatted(engine, delete)).startswith(f"DELETE FROM {table}{clause} WHERE")
    assert local_table("schema_migrations", CLUSTER) == "schema_migrations"
    parts = f"SELECT partition FROM {system_table('parts', CLUSTER)} WHERE table = 'logs_local'"
    assert "clusterAllReplicas('gatelog', system.parts)" in await formatted(engine, parts)
    assert system_table("parts", None) == "system.parts"
    settings = ", ".join(f"{name} = {value}" for name, value in CLUSTER_SETTINGS.items())
    await formatted(engine, f"SELECT 1 SETTINGS {settings}")


@pytest.mark.parametrize(
    "name", ["", "a b", "x`y", "c'; DROP TABLE logs; --", "1cluster", "a" * 200, "gate\nlog"]
)
def test_a_cluster_name_that_is_not_a_plain_name_is_refused(name: str) -> None:
    with pytest.raises(SettingsError, match="GATELOG_CLICKHOUSE_CLUSTER"):
        check_cluster(name)
    with pytest.raises(SettingsError):
        render(MIGRATIONS_DDL, name)


@pytest.mark.parametrize("name", ["gatelog", "prod-eu.1", "_c"])
def test_plain_cluster_names_are_accepted(name: str) -> None:
    assert check_cluster(name) == name


def test_a_drop_takes_a_sharded_tables_distributed_and_local_tables() -> None:
    tables = ["logs", "logs_day"]
    assert render_for_cluster("-- gone\nDROP TABLE IF EXISTS logs_day\n", CLUSTER, tables) == [
        f"DROP TABLE IF EXISTS logs_day ON CLUSTER `{CLUSTER}`",
        f"DROP TABLE IF EXISTS logs_day_local ON CLUSTER `{CLUSTER}`",
    ]
    assert render_for_cluster("DROP VIEW logs_day_mv;", CLUSTER, tables) == [
        f"DROP VIEW logs_day_mv ON CLUSTER `{CLUSTER}`"
    ]
    assert render_for_cluster("DROP TABLE IF EXISTS schema_migrations", CLUSTER, tables) == [
        f"DROP TABLE IF EXISTS schema_migrations ON CLUSTER `{CLUSTER}`"
    ]
    with pytest.raises(ValueError, match="nothing after the name"):
        render_for_cluster("DROP TABLE logs_day SYNC", CLUSTER, tables)


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("CREATE TABLE t (a Int8) ENGINE = Memory", "cannot be replicated"),
        ("CREATE TABLE t (a Int8) ORDER BY a", "explicit ENGINE"),
        ("CREATE TABLE db.t (a Int8) ENGINE = MergeTree ORDER BY a", "must not name a database"),
        ("CREATE TABLE t ON CLUSTER c (a Int8) ENGINE = MergeTree ORDER BY a", "ON CLUSTER"),
        ("CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a", "TO"),
        ("INSERT INTO logs SELECT * FROM logs", "this statement starts with"),
        ("ALTER TABLE logs ADD COLUMN x Int8, ADD INDEX i x TYPE minmax", "separate files"),
    ],
)
def test_statements_that_cannot_be_rendered_for_a_cluster_are_refused(
    sql: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        render_for_cluster(sql, CLUSTER, ["logs"])


def test_the_service_runs_on_an_emulated_cluster(tmp_path: Path) -> None:
    """The migrator, ingest, queries and deletes in cluster mode, on chDB configured as
    a one-shard cluster (tests/support/emulated_cluster.py; its own process, since
    chDB allows one data path per process)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.emulated_cluster", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["applied"] == [
        path.removesuffix(".sql")
        for path in sorted(p.name for p in sample_schema(tmp_path / "expected").glob("*.sql"))
    ]
    assert out["applied_again"] == [] and out["current"] is True
    # every DDL statement ON CLUSTER; a new level's copy of existing history
    # (service.migrate.FILLS) is an INSERT through the Distributed tables, run once
    ddl = [s for s in out["statements"] if not s.startswith("INSERT INTO")]
    assert all(f" ON CLUSTER `{CLUSTER}`" in s.splitlines()[0] for s in ddl)
    assert [s for s in out["statements"] if s not in ddl] == list(FILLS.values())
    tables = out["tables"]
    for table in ("logs", "tokens", "logs_minute", "logs_perf_minute", "channel_hour",
                  "logs_hour_site", "logs_day_site_m", "logs_day_m"):  # fmt: skip
        assert tables[table] == "Distributed"
        assert tables[f"{table}_local"].endswith("MergeTree")
    # the retired day levels (schema/080-083): views, Distributed and local tables gone
    for name in ("logs_day_site", "logs_day", "logs_day_site_mv", "logs_day_mv"):
        assert name not in tables and f"{name}_local" not in tables
    assert tables["logs_minute_mv"] == "MaterializedView"
    assert tables["logs_perf_minute_mv"] == "MaterializedView"

    rows = sample_rows()
    # Stored once through the Distributed table, retry included; the rollup, filled on
    # the local table, agrees with the raw rows.
    assert out["stored"] == out["stored_retry"] == len(rows)
    assert out["logs"] == [len(rows), sum(r["quota"] for r in rows)]
    assert out["rollup"] == out["logs"]
    # the latency rollup through its Distributed table: user 3's logs, counted once
    assert out["perf_user3"] == [len([r for r in rows if r["user_id"] == 3]), 1]
    hours = {r["created_at"] // 3600 for r in rows}
    assert out["channel_users"] == [
        len({r["user_id"] for r in rows if r["created_at"] // 3600 == h}) for h in sorted(hours)
    ]
    mine = [r for r in rows if r["user_id"] == 3]
    assert out["user3"] == {"total": len(mine), "items": 10, "users": [3]}
    assert out["token"] == {"id": 1, "user_id": 2, "status": 2, "name": "t1"}

    kept = [
        r for r in rows
        if r["user_id"] != DELETED_USER and r["created_at"] // 86400 != START // 86400
    ]  # fmt: skip
    assert out["after_deletes"] == [len(kept), sum(r["quota"] for r in kept)]
    assert DROPPED_DAY not in out["partitions"] and len(out["partitions"]) == 2
    assert out["deletes"][0].startswith(f"DELETE FROM logs_local ON CLUSTER `{CLUSTER}`")
    assert out["deletes"][1].startswith(f"ALTER TABLE logs_local ON CLUSTER `{CLUSTER}` DROP")


def test_cluster_mode_needs_a_server() -> None:
    settings = Settings(jwt_secret="x" * 32, clickhouse_cluster=CLUSTER)
    with pytest.raises(SettingsError, match="GATELOG_CLICKHOUSE_URL"):
        open_store(settings)
    server = open_store(replace(settings, clickhouse_url="http://127.0.0.1:1/gatelog"))
    assert isinstance(server, HttpStore) and server.cluster == CLUSTER


REPLICATION = "'/clickhouse/tables/{shard}/{database}/t_local', '{replica}'"
OWN = "ReplicatedMergeTree('/own/{shard}/t', '{r}')"


@pytest.mark.parametrize(
    ("engine_clause", "expected"),
    [
        ("MergeTree", f"ReplicatedMergeTree({REPLICATION})"),
        ("MergeTree()", f"ReplicatedMergeTree({REPLICATION})"),
        ("ReplacingMergeTree(v)", f"ReplicatedReplacingMergeTree({REPLICATION}, v)"),
        ("CollapsingMergeTree(sign)", f"ReplicatedCollapsingMergeTree({REPLICATION}, sign)"),
        # A file that chose its own replication keeps it.
        (OWN, OWN),
    ],
)  # fmt: skip
async def test_engine_forms(engine: Any, engine_clause: str, expected: str) -> None:
    sql = f"CREATE TABLE t (k UInt64, v UInt64, sign Int8) ENGINE = {engine_clause} ORDER BY k"
    local, distributed = render_for_cluster(sql, CLUSTER)
    assert f"ENGINE = {expected}\n" in await formatted(engine, local)
    assert "cityHash64(k)" in await formatted(engine, distributed)
