"""Cluster-mode test support: sample schema files of the kinds other branches add (a
rollup target and its materialized view), and the inverse of the cluster rendering.

:func:`unrender` undoes exactly what cluster mode adds (``ON CLUSTER``, the
``Replicated`` engine arguments, the ``_local`` names, the replicated dedup window), so
a test can show that rendering changed nothing else, and the emulated cluster can run
the rendered statements on chDB, which has neither Keeper-backed writable replicas nor
a distributed DDL queue.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from service.migrate import schema_dir

CLUSTER = "gatelog"

# Shaped like the stats branch's files: a per-minute rollup of logs and the view that
# fills it. The comments and the string literal mention `FROM logs` on purpose: only
# the query's own FROM may be rewritten.
ROLLUP_TABLE = """-- Per-minute rollup: FROM logs, one row per user, model and minute.
CREATE TABLE IF NOT EXISTS logs_minute
(
    minute            DateTime('UTC'),
    user_id           UInt64,
    model_name        LowCardinality(String),
    token_name        String,
    `group`           LowCardinality(String),
    type              UInt8,
    requests          UInt64,
    quota             Int64,
    prompt_tokens     Int64,
    completion_tokens Int64
)
ENGINE = SummingMergeTree
PARTITION BY toDate(minute)
ORDER BY (user_id, minute, model_name, token_name, `group`, type)
SETTINGS non_replicated_deduplication_window = 10000
"""
ROLLUP_VIEW = """/* fills logs_minute FROM logs */
CREATE MATERIALIZED VIEW IF NOT EXISTS logs_minute_mv TO logs_minute AS
SELECT
    toStartOfMinute(created_at) AS minute,
    user_id, model_name, token_name, `group`, type,
    count() AS requests,
    sum(quota) AS quota,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens
FROM logs
WHERE content != 'FROM logs'
GROUP BY minute, user_id, model_name, token_name, `group`, type
"""
# A table without user_id (sharded by its first sort-key column), with engine
# arguments and aggregate-state columns, a view joining a Distributed table, and a
# column change that the Distributed table must follow.
CHANNEL_TABLE = """CREATE TABLE IF NOT EXISTS channel_hour
(
    channel_id UInt32,
    hour       DateTime('UTC'),
    users      AggregateFunction(uniq, UInt64),
    ver        SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (channel_id, hour)
"""
CHANNEL_VIEW = """CREATE MATERIALIZED VIEW IF NOT EXISTS channel_hour_mv TO channel_hour AS
SELECT channel_id, toStartOfHour(created_at) AS hour, uniqState(l.user_id) AS users,
       max(t.version) AS ver
FROM (SELECT * FROM logs WHERE type = 2) AS l
LEFT JOIN tokens AS t ON t.id = l.token_id
GROUP BY channel_id, hour
"""
ADD_COLUMN = "ALTER TABLE logs ADD COLUMN IF NOT EXISTS region LowCardinality(String)\n"
SAMPLE_FILES = {
    "003_logs_minute.sql": ROLLUP_TABLE,
    "004_logs_minute_mv.sql": ROLLUP_VIEW,
    "005_channel_hour.sql": CHANNEL_TABLE,
    "006_channel_hour_mv.sql": CHANNEL_VIEW,
    "007_logs_region.sql": ADD_COLUMN,
}


def sample_schema(directory: Path, extra: Iterable[str] = SAMPLE_FILES) -> Path:
    """The real schema files plus the samples, in ``directory``; a real file wins over
    the sample of the same name (the rollup samples stand in until the real ones exist)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in sorted(schema_dir().glob("*.sql")):
        shutil.copy(path, directory / path.name)
    for name in extra:
        if not (directory / name).exists():
            (directory / name).write_text(SAMPLE_FILES[name], encoding="utf-8")
    return directory


_REPLICATED = re.compile(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(, )?")


def without_cluster(sql: str, cluster: str = CLUSTER) -> str:
    """``sql`` without ``ON CLUSTER`` and without replication (local names kept): what
    one chDB node can run in place of a cluster statement."""
    sql = re.sub(rf" ON CLUSTER `?{re.escape(cluster)}`?", "", sql)
    sql = _REPLICATED.sub(lambda m: f"{m.group(1)}(", sql)
    sql = sql.replace("MergeTree()", "MergeTree")
    return re.sub(
        r"\breplicated_deduplication_window\b", "non_replicated_deduplication_window", sql
    )


def unrender(sql: str, tables: Iterable[str], cluster: str = CLUSTER) -> str:
    """``sql`` with every cluster-mode addition undone: the single-node statement."""
    sql = without_cluster(sql, cluster)
    for table in tables:
        sql = re.sub(rf"\b{re.escape(table)}_local\b", table, sql)
    return sql
