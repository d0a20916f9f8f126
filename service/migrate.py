"""The migrator: applies the ordered ``schema/*.sql`` files and records what it applied.

Every file holds one idempotent statement (``IF NOT EXISTS``), so applying the schema
twice changes nothing; the ``schema_migrations`` table records versions and checksums
so that an edited file is reported instead of silently diverging. Rendering for a
cluster goes through :func:`render`, which hands it to :mod:`service.cluster`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .cluster import render_for_cluster, sharded_tables
from .store import Store

log = logging.getLogger(__name__)

MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    String,
    checksum   String,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


def schema_dir() -> Path:
    """``GATELOG_SCHEMA_DIR`` if set; else the wheel's copy (``service/schema``, the data
    package ``pyproject.toml`` maps onto ``schema/``); else a checkout's ``schema/``."""
    configured = os.environ.get("GATELOG_SCHEMA_DIR")
    if configured:
        return Path(configured)
    package = Path(__file__).resolve().parent
    installed = package / "schema"
    if installed.is_dir():
        return installed
    return package.parent / "schema"


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load(directory: Path | None = None) -> list[Migration]:
    directory = directory or schema_dir()
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no schema files in {directory}")
    return [Migration(path.stem, path.read_text(encoding="utf-8")) for path in files]


def render(sql: str, cluster: str | None = None, tables: Iterable[str] = ()) -> list[str]:
    """The statements that apply ``sql`` on this deployment: on a single node the file
    exactly as written; on a cluster, :func:`service.cluster.render_for_cluster`
    (``tables``: the schema's sharded tables, from :func:`service.cluster.sharded_tables`)."""
    if cluster is None:
        return [sql]
    return render_for_cluster(sql, cluster, tables)


async def applied_versions(store: Store) -> dict[str, str]:
    rows = await store.query(
        "SELECT version, argMax(checksum, applied_at) FROM schema_migrations GROUP BY version"
    )
    return {version: checksum for version, checksum in rows.rows}


#: statements run once, right after the schema file of that version is applied (and
#: before it is recorded): a new table's copy of what an existing deployment already
#: holds. Each copies only into an empty table, so a run interrupted before the record is
#: not counted twice when repeated; migrations run before the service ingests.
FILLS: dict[str, str] = {
    # the month-partitioned day levels (019-022) take the day-partitioned ones' history
    "020_logs_day_site_m_mv": (
        "INSERT INTO logs_day_site_m SELECT day, type, model_name, channel_id, `group`, "
        "requests, quota, prompt_tokens, completion_tokens FROM logs_day_site "
        "WHERE (SELECT count() FROM logs_day_site_m) = 0"
    ),
    "022_logs_day_m_mv": (
        "INSERT INTO logs_day_m SELECT day, user_id, type, username, token_name, model_name, "
        "channel_id, `group`, requests, quota, prompt_tokens, completion_tokens FROM logs_day "
        "WHERE (SELECT count() FROM logs_day_m) = 0"
    ),
}


async def migrate(
    store: Store, directory: Path | None = None, cluster: str | None = None
) -> list[str]:
    """Apply what is not applied yet; return the versions applied by this call."""
    migrations = load(directory)
    tables: frozenset[str] = frozenset()
    if cluster is not None:
        tables = sharded_tables(m.sql for m in migrations)
    for statement in render(MIGRATIONS_DDL, cluster):
        await store.command(statement)
    done = await applied_versions(store)
    applied: list[str] = []
    for migration in migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                log.warning(
                    "schema file %s changed after it was applied; add a new file instead",
                    migration.version,
                )
            continue
        # On a cluster a file may become several statements (a local table and its
        # Distributed table): each is idempotent, so a half-applied file is finished
        # by the next run.
        for statement in render(migration.sql, cluster, tables):
            await store.command(statement)
        if migration.version in FILLS:
            await store.command(FILLS[migration.version], settings={"insert_deduplicate": 0})
        await store.insert(
            "schema_migrations",
            [[migration.version, migration.checksum, int(time.time())]],
            ["version", "checksum", "applied_at"],
        )
        applied.append(migration.version)
        log.info("applied schema %s", migration.version)
    return applied


async def is_current(store: Store, directory: Path | None = None) -> bool:
    """True when every schema file has been applied (the readiness check)."""
    wanted = {m.version for m in load(directory)}
    try:
        done = await applied_versions(store)
    except Exception:
        return False
    return wanted <= set(done)
