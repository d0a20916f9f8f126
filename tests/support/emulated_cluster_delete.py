"""History deletes, retention and stats in cluster mode, on chDB configured as a one-shard
cluster (see tests/support/emulated_cluster.py), in a process of its own.

``python -m tests.support.emulated_cluster_delete WORKDIR`` prints one JSON object. The
real schema is rendered for the cluster; the service's own deletion, retention and stat
code runs against the Distributed tables and their local tables.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from service.deletion import DeleteGuard, delete_before
from service.ingest import LOG_FIELDS, IdGenerator, store_logs, validate
from service.migrate import migrate
from service.params import LogFilter
from service.retention import run_retention
from service.stats import stat
from tests.support.cluster import CLUSTER, sample_schema
from tests.support.emulated_cluster import CONFIG, EmulatedCluster

DAY = 86400
START = 1_700_006_400  # a midnight, UTC
TARGET = START + 2 * DAY + 3 * 3600 + 7 * 60 + 31  # day 2, 03:07:31
NOW = START + 3 * DAY - 1


def rows() -> list[dict[str, Any]]:
    """600 logs of 5 users over 3 days."""
    return [
        {"user_id": 1 + i % 5, "created_at": START + i * 431 % (3 * DAY), "type": 2,
         "quota": i, "prompt_tokens": 1, "completion_tokens": 2, "model_name": f"m{i % 3}"}
        for i in range(600)
    ]  # fmt: skip


async def scenario(workdir: Path) -> dict[str, Any]:
    (workdir / "config.xml").write_text(CONFIG, encoding="utf-8")
    schema = sample_schema(workdir / "schema", extra=())  # the real schema only
    store = EmulatedCluster(f"{workdir / 'data'}?config-file={workdir / 'config.xml'}")
    out: dict[str, Any] = {}
    try:
        await migrate(store, schema, cluster=CLUSTER)
        await store_logs(store, validate(rows(), LOG_FIELDS, 1000), "batch", IdGenerator(1))
        issued = len(store.statements)
        result = await delete_before(store, TARGET, DeleteGuard(), 2)
        out["deleted"] = result.deleted
        out["statements"] = store.statements[issued:]
        totals = "SELECT count(), sum(quota) FROM logs"
        out["left"] = list((await store.query(totals)).rows[0])
        rollup = "SELECT sum(requests), sum(quota) FROM logs_minute"
        out["rollup"] = list((await store.query(rollup)).rows[0])
        perf = "SELECT sum(n) FROM logs_perf_minute WHERE type = 2"
        out["perf_rollup"] = int((await store.query(perf)).scalar())
        out["stat"] = await stat(store, LogFilter(start=START, end=NOW, user_id=2), NOW)
        parts = (
            "SELECT DISTINCT table, partition_id FROM system.parts "
            "WHERE table IN ('logs_local', 'logs_minute_local', 'logs_perf_minute_local') "
            "AND active ORDER BY ALL"
        )
        out["partitions"] = [list(r) for r in (await store.query(parts)).rows]
        run = await run_retention(store, NOW + 2 * DAY, 1, DeleteGuard(), 2)
        out["retention_dropped"] = run.chosen
        out["after_retention"] = list((await store.query(totals)).rows[0])
    finally:
        await store.close()
    return out


def main() -> None:
    result = asyncio.run(scenario(Path(sys.argv[1])))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # chDB's background threads can outlive the interpreter's shutdown


if __name__ == "__main__":
    main()
