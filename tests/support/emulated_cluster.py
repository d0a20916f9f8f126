"""Cluster mode run for real on chDB, as a one-shard cluster, in a process of its own.

``python -m tests.support.emulated_cluster WORKDIR`` prints one JSON object.

chDB is configured (``config-file``) with the macros and a cluster ``gatelog`` whose one
host is this process, so ``Distributed`` tables really route inserts and queries to the
local tables, and materialized views really fire on the local tables. What chDB cannot
do is the distributed DDL queue (``ON CLUSTER``) and writable Keeper replicas, so the
store below runs each statement through :func:`tests.support.cluster.without_cluster`
and records what the migrator sent. Everything else is the service's own code: the
migrator in cluster mode, ingest, list queries, token lookup, and deletes through the
cluster helpers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.cluster import CLUSTER_SETTINGS, local_table, on_cluster
from service.ingest import LOG_FIELDS, IdGenerator, store_logs, store_tokens, validate
from service.logs import USER_FIELDS, find_token, list_page
from service.migrate import is_current, migrate
from service.params import LogFilter, Page
from service.performance import performance
from service.stats import GROUP_KEYS_ADMIN
from service.store import ChdbStore
from tests.support.cluster import CLUSTER, sample_schema, without_cluster

CONFIG = f"""<clickhouse>
  <tcp_port>9000</tcp_port>
  <macros><shard>01</shard><replica>r1</replica></macros>
  <remote_servers>
    <{CLUSTER}><shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard></{CLUSTER}>
  </remote_servers>
</clickhouse>
"""
DAY = 86400
START = 1_700_006_400  # a midnight, UTC


def sample_rows() -> list[dict[str, Any]]:
    """300 logs of 5 users over 3 days (the first is the partition dropped below)."""
    return [
        {"user_id": 1 + i % 5, "created_at": START + (i % 3) * DAY + i, "type": 2,
         "quota": i, "prompt_tokens": 1, "completion_tokens": 2, "channel_id": 9,
         "token_id": 1 + i % 5}
        for i in range(300)
    ]  # fmt: skip


DROPPED_DAY = "2023-11-15"  # START's day
DELETED_USER = 1


class EmulatedCluster(ChdbStore):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.cluster = CLUSTER
        self.statements: list[str] = []

    @staticmethod
    def _with(settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return {**CLUSTER_SETTINGS, **(settings or {})}

    async def command(self, sql: str, params: Any = None, settings: Any = None) -> Any:
        self.statements.append(sql)
        return await super().command(without_cluster(sql), params, self._with(settings))

    async def query(self, sql: str, params: Any = None, settings: Any = None) -> Any:
        return await super().query(sql, params, self._with(settings))

    async def insert(self, table: str, rows: Any, columns: Any, settings: Any = None) -> None:
        await super().insert(table, rows, columns, self._with(settings))


async def scenario(workdir: Path) -> dict[str, Any]:
    (workdir / "config.xml").write_text(CONFIG, encoding="utf-8")
    schema = sample_schema(workdir / "schema")
    store = EmulatedCluster(f"{workdir / 'data'}?config-file={workdir / 'config.xml'}")
    out: dict[str, Any] = {}
    try:
        out["applied"] = await migrate(store, schema, cluster=CLUSTER)
        out["statements"] = list(store.statements)
        out["applied_again"] = await migrate(store, schema, cluster=CLUSTER)
        out["current"] = await is_current(store, schema)
        tables = await store.query(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
        )
        out["tables"] = dict(tables.rows)

        rows = validate(sample_rows(), LOG_FIELDS, 1000)
        ids = IdGenerator(1)
        out["stored"] = await store_logs(store, rows, "batch-1", ids)
        out["stored_retry"] = await store_logs(store, rows, "batch-1", ids)  # a retry
        count = "SELECT count(), sum(quota) FROM logs"
        out["logs"] = list((await store.query(count)).rows[0])
        rollup = "SELECT sum(requests), sum(quota) FROM logs_minute"
        out["rollup"] = list((await store.query(rollup)).rows[0])
        perf = await performance(store, LogFilter(user_id=3), "model_name", GROUP_KEYS_ADMIN)
        out["perf_user3"] = [perf["total"]["requests"], len(perf["groups"])]
        users = "SELECT hour, uniqMerge(users) FROM channel_hour GROUP BY hour ORDER BY hour"
        out["channel_users"] = [row[1] for row in (await store.query(users)).rows]
        items, total = await list_page(
            store, LogFilter(user_id=3), Page(1, 10), USER_FIELDS, user_view=True
        )
        out["user3"] = {"total": total, "items": len(items), "users": {i["user_id"] for i in items}}

        await store_tokens(store, [[1, "sk-abc", "t1", 2, 1], [2, "sk-def", "t2", 3, 1]], str)
        await store_tokens(store, [[1, "sk-abc", "t1", 2, 2]], str)  # a newer version
        out["token"] = await find_token(store, "sk-abc")

        target = local_table("logs", CLUSTER) + on_cluster(CLUSTER)
        delete = f"DELETE FROM {target} WHERE user_id = {{u:UInt64}}"
        await store.command(delete, {"u": DELETED_USER})
        await store.command(f"ALTER TABLE {target} DROP PARTITION {{p:String}}", {"p": DROPPED_DAY})
        out["after_deletes"] = list((await store.query(count)).rows[0])
        out["deletes"] = store.statements[-2:]
        out["partitions"] = [
            row[0]
            for row in (
                await store.query(
                    "SELECT DISTINCT partition FROM system.parts "
                    "WHERE table = 'logs_local' AND active ORDER BY partition"
                )
            ).rows
        ]
    finally:
        await store.close()
    return out


def main() -> None:
    result = asyncio.run(scenario(Path(sys.argv[1])))
    sys.stdout.write(json.dumps(result, default=sorted) + "\n")
    sys.stdout.flush()
    # chDB's background threads can outlive the interpreter's shutdown; the answer is out.
    os._exit(0)


if __name__ == "__main__":
    main()
