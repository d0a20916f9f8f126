"""``python -m service attach-newapi --table DB.TABLE``: take new-api's own ClickHouse log
table (``LOG_SQL_DSN=clickhouse://...``, spec/newapi-compat.md) as a source of gatelog's
``logs`` on the same server, with no polling.

What it does, once (a re-run finishes an interrupted attach and otherwise does nothing):

1. Leases an id node for good (``id_leases``, service/ids.py): a node no gatelog process
   ever used, held by the owner ``attach:DB.TABLE`` with a lease that never expires, so
   no replica assigns ids on it, now or later.
2. Records the cut-over second ``T`` (now) in ``import_progress``, then creates the
   materialized view ``newapi_attach_<db>_<table>`` from the gateway's table into
   ``logs`` for the rows with ``created_at >= T``: every later insert of the gateway is
   in gatelog (and its rollups) as it is written.
3. Waits a moment (rows the gateway stamped just before ``T`` are written a few
   milliseconds later), then imports the rows with ``created_at < T`` day by day, each
   day one ``INSERT ... SELECT`` on the server with its own deduplication token.

Ids (the gateway's table holds ``id`` 0 in every row) keep gatelog's layout
(docs/ids.md: milliseconds since 2024 << 12 | node << 6 | sequence) on the attach's node:

- rows of the view: the server's ``generateSnowflakeID`` hands every row a run of 64
  consecutive (millisecond, counter) values; the one value of the run that is a
  multiple of 64 gives the row its millisecond and its sequence number (counter / 64).
  Runs never overlap, so ids are unique; they grow with insertion time, 64 rows per
  millisecond before they run ahead of the clock (as the server's counter does).
- imported rows: the millisecond of ``created_at`` plus (n / 64) and sequence n % 64
  for the row's rank n among the rows of its second (by request id and content), all
  before ``T``'s millisecond; a second holding more than 64,000 rows is refused.

``channel_name`` (not in the gateway's table) comes from ``--channels DB.TABLE``, any
table or view on the server with the gateway's ``id`` and ``name`` columns (e.g. a
``MySQL`` or ``PostgreSQL`` engine table over the gateway's ``channels``), read by the
view on every insert; without it the name stays empty.

Table names are identifiers checked against a strict pattern and quoted; the view's
definition holds them and the integers ``T`` and the node, which a DDL statement cannot
take as parameters. Every value read or compared at run time is a ``{name:Type}``
parameter.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
from dataclasses import dataclass

from .columns import LOGS, Column
from .commands import Command, with_store
from .ids import EPOCH_MS, NODES, settled
from .settings import Settings, SettingsError
from .store import Store

log = logging.getLogger(__name__)

#: the gateway's columns the view and the import read (spec/newapi-compat.md)
REQUIRED = ("user_id", "created_at", "type")
#: how long the import waits after the view exists, for rows stamped before it
SETTLE_SECONDS = 2.0
#: rows of one second the import can number (1000 milliseconds x 64 sequence numbers)
MAX_ROWS_PER_SECOND = 1000 * 64
NEVER = 2**32 - 1  # the lease's expiry: DateTime's last second
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\.[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Table:
    database: str
    name: str

    @classmethod
    def parse(cls, text: str, option: str) -> Table:
        if not _NAME.match(text):
            raise SettingsError(
                f"{option} must be DATABASE.TABLE (letters, digits and _), got {text[:80]!r}"
            )
        database, name = text.split(".")
        return cls(database, name)

    @property
    def sql(self) -> str:
        return f"`{self.database}`.`{self.name}`"

    @property
    def label(self) -> str:
        return f"{self.database}.{self.name}"


def view_name(source: Table) -> str:
    return f"newapi_attach_{source.database}_{source.name}"


def owner_of(source: Table) -> str:
    return f"attach:{source.label}"


def _columns(have: set[str], channels: Table | None) -> str:
    """The SELECT list from the gateway's row ``l`` to gatelog's columns, ``id`` aside
    (a column an older gateway lacks reads as its default)."""

    def col(name: str, default: str = "''") -> str:
        return f"l.`{name}`" if name in have else default

    def count(name: str, kind: str) -> str:  # ids and counts: never negative
        return f"to{kind}(greatest({col(name, '0')}, 0))"

    special = {
        "created_at": "toDateTime(l.created_at, 'UTC')",
        "type": "toUInt8(l.type)",
        "channel_name": "c.cname" if channels is not None else "''",
    }

    def value(column: Column) -> str:
        if column.name in special:
            return special[column.name]
        if column.kind == "bool":
            return f"{col(column.name, '0')} != 0"
        if column.kind != "int":
            return col(column.name)
        if column.value_range[0] >= 0:
            return count(column.name, column.base)
        return f"to{column.base}({col(column.name, '0')})"

    # every column of `logs` in its order: INSERT ... SELECT fills them by position
    return ", ".join(f"{value(c)} AS {c.sql}" for c in LOGS if c.name != "id")


def _from(source: Table, channels: Table | None) -> str:
    sql = f"FROM {source.sql} AS l"
    if channels is not None:
        sql += (
            f" LEFT JOIN (SELECT toInt64(id) AS cid, any(toString(name)) AS cname "
            f"FROM {channels.sql} GROUP BY cid) AS c ON toInt64(l.channel_id) = c.cid"
        )
    return sql


def view_sql(source: Table, have: set[str], channels: Table | None, cutover: int, node: int) -> str:
    """The materialized view: every row the gateway inserts from ``cutover`` on."""
    run = (
        "arrayMin(arrayMap(s -> bitShiftRight(s, 22) * 4096 + bitAnd(s, 4095), "
        "arrayMap(x -> generateSnowflakeID(x), arrayWithConstant(64, l.created_at))))"
    )
    # b: the run's one multiple of 64, over 64 (b / 64 the millisecond, b % 64 the sequence)
    ident = (
        f"bitOr(bitOr(bitShiftLeft(toUInt64(intDiv((intDiv({run} + 63, 64) AS b), 64) "
        f"- {EPOCH_MS}), 12), toUInt64({int(node) << 6})), toUInt64(b % 64))"
    )
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{view_name(source)}` TO logs AS "
        f"SELECT {ident} AS id, {_columns(have, channels)} "
        f"{_from(source, channels)} WHERE l.created_at >= {int(cutover)}"
    )


#: what orders the rows of one second for the import, besides the request id
_TIE_COLUMNS = ("user_id", "token_id", "model_name", "quota", "content", "other")


def import_sql(source: Table, have: set[str], channels: Table | None, node: int) -> str:
    """One day's rows before the cut-over, numbered within each second."""
    order = [f"l.`{c}`" for c in ("request_id", "upstream_request_id") if c in have]
    ties = [f"l.`{c}`" for c in _TIE_COLUMNS if c in have]
    if ties:
        order.append(f"cityHash64({', '.join(ties)})")
    rank = f"row_number() OVER (PARTITION BY l.created_at ORDER BY {', '.join(order) or '1'}) - 1"
    ident = (
        "bitOr(bitOr(bitShiftLeft(toUInt64(l.created_at * 1000 + intDiv(l.n, 64) "
        f"- {EPOCH_MS}), 12), toUInt64({int(node) << 6})), toUInt64(l.n % 64))"
    )
    joined = _from(source, channels).removeprefix(f"FROM {source.sql} AS l")
    return (
        f"INSERT INTO logs SELECT {ident} AS id, {_columns(have, channels)} "
        f"FROM (SELECT {rank} AS n, * FROM {source.sql} AS l "
        "WHERE l.created_at >= {lo:Int64} AND l.created_at < {hi:Int64}) AS l"
        f"{joined} ORDER BY id"
    )


# -- the node lease -------------------------------------------------------------------


async def lease_node(store: Store, owner: str) -> int:
    """The node ``owner`` holds for good: the one it took before, else a node that no
    process ever leased (so no id it assigned can come back), claimed and checked as
    service/ids.py claims one."""
    held = await store.query(
        "SELECT node FROM id_leases WHERE owner = {owner:String} "
        "GROUP BY node ORDER BY min(claimed) LIMIT 1",
        {"owner": owner},
    )
    if held.rows:
        return int(held.rows[0][0])
    used = await store.query("SELECT DISTINCT node FROM id_leases")
    taken = {int(node) for (node,) in used.rows}
    for node in [n for n in range(NODES - 1, -1, -1) if n not in taken]:
        claimed = time.time_ns()
        row = [node, owner, claimed, NEVER, (1 << 41) - 1, time.time_ns()]
        await store.insert(
            "id_leases",
            [row],
            ("node", "owner", "claimed", "expires_at", "reserved_until", "version"),
            settings={"async_insert": 0},
        )
        if await settled(claimed):
            first = await store.query(
                "SELECT owner FROM id_leases WHERE node = {node:UInt8} "
                "ORDER BY claimed, owner LIMIT 1",
                {"node": node},
            )
            if first.rows and first.rows[0][0] == owner:
                return node
        await store.command(
            "ALTER TABLE id_leases DELETE WHERE node = {node:UInt8} AND owner = {owner:String}",
            {"node": node, "owner": owner},
        )
    raise SettingsError(
        f"no id node is free for good: all {NODES} have been leased by gatelog processes; "
        "attach to a fresh gatelog database"
    )


# -- progress -------------------------------------------------------------------------


@dataclass
class Attached:
    state: str  # "" (never) | "pending" | "done"
    cutover: int
    day: int  # the last imported day (days since 1970), -1 before the first
    rows: int


async def read_state(store: Store, source: Table) -> Attached:
    rows = await store.query(
        "SELECT argMax(state, version), argMax(batch_from, version), "
        "argMax(batch_to, version), argMax(rows, version), count() "
        "FROM import_progress WHERE source = {source:String}",
        {"source": owner_of(source)},
    )
    state, cutover, day, done, seen = rows.rows[0]
    if not seen:
        return Attached("", 0, -1, 0)
    return Attached(str(state), int(cutover), int(day) - 1, int(done))


async def write_state(store: Store, source: Table, at: Attached) -> None:
    await store.insert(
        "import_progress",
        [
            [
                owner_of(source),
                source.label,
                at.state,
                at.cutover,
                at.day + 1,
                at.rows,
                time.time_ns(),
                int(time.time()),
            ]
        ],
        ("source", "url", "state", "batch_from", "batch_to", "rows", "version", "updated_at"),
        settings={"async_insert": 0},
    )


# -- the command ----------------------------------------------------------------------


async def source_columns(store: Store, table: Table) -> set[str]:
    rows = await store.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": table.database, "t": table.name},
    )
    return {str(name) for (name,) in rows.rows}


async def attach(
    store: Store,
    source: Table,
    channels: Table | None = None,
    *,
    settle: float = SETTLE_SECONDS,
) -> Attached:
    """Attach ``source`` (see the module); returns the finished state."""
    have = await source_columns(store, source)
    if not have:
        raise SettingsError(f"table {source.label} not found on this server: check --table")
    missing = [c for c in REQUIRED if c not in have]
    if missing:
        raise SettingsError(
            f"table {source.label} lacks {', '.join(missing)}: not new-api's log table"
        )
    if channels is not None and not {"id", "name"} <= await source_columns(store, channels):
        raise SettingsError(f"--channels {channels.label} needs the columns id and name")
    node = await lease_node(store, owner_of(source))
    state = await read_state(store, source)
    if state.state == "":
        state = Attached("pending", int(time.time()), -1, 0)
        await write_state(store, source, state)  # before the view: a re-run keeps T
    await store.command(view_sql(source, have, channels, state.cutover, node))
    if state.state == "done":
        return state
    wait = state.cutover + settle - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    crowded = await store.query(
        f"SELECT created_at, count() AS n FROM {source.sql} "
        "WHERE created_at < {cut:Int64} GROUP BY created_at HAVING n > {most:UInt32} LIMIT 1",
        {"cut": state.cutover, "most": MAX_ROWS_PER_SECOND},
    )
    if crowded.rows:
        raise SettingsError(
            f"second {crowded.rows[0][0]} of {source.label} holds more than "
            f"{MAX_ROWS_PER_SECOND} rows, more than the import can number"
        )
    days = await store.query(
        f"SELECT intDiv(created_at, 86400) AS day, count() FROM {source.sql} "
        "WHERE created_at < {cut:Int64} AND created_at >= 0 GROUP BY day ORDER BY day",
        {"cut": state.cutover},
    )
    insert = import_sql(source, have, channels, node)
    for day, count in days.rows:
        day = int(day)
        if day <= state.day:
            continue
        lo, hi = day * 86400, min((day + 1) * 86400, state.cutover)
        await store.command(
            insert,
            {"lo": lo, "hi": hi},
            settings={
                "insert_deduplication_token": f"{owner_of(source)}:{state.cutover}:{day}",
                "max_threads": 1,
                "async_insert": 0,
            },
        )
        state = Attached("pending", state.cutover, day, state.rows + int(count))
        await write_state(store, source, state)
        log.info("attach %s: imported day %d (%d rows)", source.label, day, count)
    state = Attached("done", state.cutover, state.day, state.rows)
    await write_state(store, source, state)
    return state


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--table", required=True, help="new-api's log table on this server, as DATABASE.TABLE"
    )
    p.add_argument(
        "--channels",
        help="a table or view with the gateway's channels (id, name), as DATABASE.TABLE",
    )


def cmd_attach(args: argparse.Namespace, settings: Settings) -> int:
    source = Table.parse(args.table, "--table")
    channels = Table.parse(args.channels, "--channels") if args.channels else None
    if settings.clickhouse_cluster:
        raise SettingsError(
            "attach-newapi works on a single server; unset GATELOG_CLICKHOUSE_CLUSTER"
        )

    async def work(store: Store) -> Attached:
        return await attach(store, source, channels)

    done = with_store(settings, work, migrate=True)
    print(
        f"attached {source.label}: view {view_name(source)} brings every row from "
        f"{done.cutover} on; {done.rows} earlier rows imported"
    )
    return 0


COMMAND = Command(
    "attach-newapi",
    "feed logs from new-api's own ClickHouse log table on the same server",
    cmd_attach,
    _args,
)
