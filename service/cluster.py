"""Cluster mode: the one place that turns the single-node schema into a cluster's.

With ``GATELOG_CLICKHOUSE_CLUSTER=<name>`` the migrator renders every ``schema/`` file
through :func:`render_for_cluster`; without it the files run exactly as written.

The convention, for every table ``T`` created by ``schema/``:

- ``T_local`` holds the rows on each node: created ``ON CLUSTER``, with the file's
  MergeTree-family engine made ``Replicated*`` (Keeper path
  ``/clickhouse/tables/{shard}/{database}/T_local``, replica ``{replica}``), so the
  replicas of a shard copy each other.
- ``T`` becomes ``Distributed(<cluster>, currentDatabase(), T_local, <sharding key>)``,
  created ``ON CLUSTER`` with the local table's columns. The service's queries and
  inserts keep using ``T``: nothing outside this module knows about clusters, except
  deletions, which must run on the local tables (``DELETE`` and ``DROP PARTITION`` do
  not work through a Distributed table): see :func:`local_table` and :func:`on_cluster`.
- The sharding key is ``cityHash64(user_id)`` for tables with a ``user_id`` column
  (``logs``, ``tokens`` and per-user rollups), else ``cityHash64`` of the first sort-key
  column. One user's rows live on one shard: a user's page, stats or export reads one
  shard (with ``optimize_skip_unused_shards``), per-user rollups are complete on their
  shard, and a retried ingest batch sends every row to the shard it went to the first
  time, where the insert's deduplication token finds it (a random key would store the
  retry twice). The price: a very heavy user is one shard's load.
- Materialized views are created ``ON CLUSTER``, fire on the local table of their
  first ``FROM`` table and write ``TO`` the local target, so each shard rolls up its
  own rows as they arrive; reads of the rollup go through its Distributed table and
  re-aggregate (``sum``/``GROUP BY``, as on a single node).
- ``schema_migrations`` (:data:`REPLICATED_EVERYWHERE`) is not sharded: one replica on
  every node of the cluster (a Keeper path without ``{shard}``), so every node, and
  every service replica's readiness check, sees what has been applied.
- ``non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``:
  Replicated tables deduplicate retried inserts through Keeper, with their own window.

The rendering works on tokens (string literals, quoted names and comments are never
rewritten) and understands the statement kinds the schema uses: ``CREATE TABLE``,
``CREATE [MATERIALIZED] VIEW``, ``ALTER TABLE`` and ``DROP TABLE`` / ``DROP VIEW`` (a
sharded table's Distributed and local tables both); anything else is refused with a
message instead of being run on one node only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .settings import SettingsError

#: tables kept whole on every node instead of being sharded
REPLICATED_EVERYWHERE = frozenset({"schema_migrations"})
LOCAL_SUFFIX = "_local"
KEEPER_PREFIX = "/clickhouse/tables"

#: settings for a service talking to a cluster: an insert returns after every shard
#: stored its rows (the ingest contract: acknowledged means stored), and a query that
#: pins ``user_id`` reads only that user's shard.
CLUSTER_SETTINGS: dict[str, int] = {
    "distributed_foreground_insert": 1,
    "optimize_skip_unused_shards": 1,
}

_CLUSTER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]{0,127}")
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
  | (?P<str>'(?:[^'\\]|\\.|'')*')
  | (?P<qid>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
  | (?P<word>[A-Za-z_0-9$]+)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Column-level ALTER commands, which the Distributed table must follow too.
_COLUMN_COMMANDS = {"ADD", "DROP", "MODIFY", "RENAME", "COMMENT", "CLEAR"}


# ---------------------------------------------------------------- helpers for callers


def check_cluster(cluster: str) -> str:
    """The cluster name, if it is a plain name (it is formatted into DDL)."""
    if not _CLUSTER_NAME.fullmatch(cluster):
        raise SettingsError(
            f"GATELOG_CLICKHOUSE_CLUSTER must be a cluster name from the servers' "
            f"remote_servers (letters, digits, '_', '-', '.'), got {cluster!r}"
        )
    return cluster


def on_cluster(cluster: str | None) -> str:
    """`` ON CLUSTER `name` `` for DDL and mutations on a cluster, else ``""``."""
    if cluster is None:
        return ""
    return f" ON CLUSTER `{check_cluster(cluster)}`"


def local_table(table: str, cluster: str | None) -> str:
    """Where ``table``'s rows are stored: ``table`` itself on a single node, its
    ``_local`` table on a cluster. Deletions (``DELETE FROM``, ``DROP PARTITION``) and
    reads of ``system.parts`` must use this name; queries and inserts use ``table``."""
    if cluster is None or table in REPLICATED_EVERYWHERE:
        return table
    return table + LOCAL_SUFFIX


def system_table(name: str, cluster: str | None) -> str:
    """A system table of every node (e.g. ``parts`` for retention), as a FROM source."""
    if not _BARE_NAME.fullmatch(name):
        raise ValueError(f"not a system table name: {name!r}")
    if cluster is None:
        return f"system.{name}"
    return f"clusterAllReplicas('{check_cluster(cluster)}', system.{name})"


def created_table(sql: str) -> str | None:
    """The table a ``CREATE TABLE`` statement creates, else None."""
    tokens = _significant(_lex(sql))
    words = [t.upper for t in tokens[:6]]
    if words[:2] != ["CREATE", "TABLE"] and words[:4] != ["CREATE", "OR", "REPLACE", "TABLE"]:
        return None
    index = words.index("TABLE") + 1
    if words[index : index + 3] == ["IF", "NOT", "EXISTS"]:
        index += 3
    return tokens[index].name if index < len(tokens) else None


def sharded_tables(statements: Iterable[str]) -> frozenset[str]:
    """The tables of a schema that are sharded (and so get a ``_local`` table)."""
    names = {created_table(sql) for sql in statements}
    return frozenset(n for n in names if n is not None and n not in REPLICATED_EVERYWHERE)


# ---------------------------------------------------------------- the renderer


def render_for_cluster(sql: str, cluster: str, tables: Iterable[str] = ()) -> list[str]:
    """The statements that apply ``sql`` to ``cluster``, in order.

    ``tables`` names the schema's sharded tables (:func:`sharded_tables`): references
    to them in a view's query and target are rewritten to their local tables. The table
    a ``CREATE TABLE`` makes is always treated as sharded unless it is in
    :data:`REPLICATED_EVERYWHERE`.
    """
    check_cluster(cluster)
    tokens = _lex(sql)
    sig = _significant(tokens)
    if not sig:
        return []
    words = [t.upper for t in sig[:5]]
    known = frozenset(tables)
    if words[:2] == ["CREATE", "TABLE"]:
        return _create_table(tokens, cluster)
    if words[:3] == ["CREATE", "MATERIALIZED", "VIEW"] or words[:2] == ["CREATE", "VIEW"]:
        return [_create_view(tokens, cluster, known)]
    if words[:2] == ["ALTER", "TABLE"]:
        return _alter_table(tokens, cluster)
    if words[:2] in (["DROP", "TABLE"], ["DROP", "VIEW"]):
        return _drop(sig, cluster, known)
    raise ValueError(
        "cluster mode renders CREATE TABLE, CREATE [MATERIALIZED] VIEW, ALTER TABLE and "
        "DROP TABLE / VIEW; "
        f"this statement starts with {' '.join(words[:3])!r}"
    )


@dataclass
class _Token:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else self.text

    @property
    def name(self) -> str:
        """The identifier this token spells (quotes removed)."""
        if self.kind == "qid":
            quote = self.text[0]
            inner = self.text[1:-1]
            return inner.replace(quote * 2, quote).replace("\\" + quote, quote)
        return self.text


def _lex(sql: str) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        assert kind is not None
        tokens.append(_Token(kind, match.group()))
    return tokens


def _significant(tokens: list[_Token]) -> list[_Token]:
    return [t for t in tokens if t.kind not in ("ws", "comment")]


def _ident(name: str) -> str:
    if _BARE_NAME.fullmatch(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _text(tokens: list[_Token]) -> str:
    """The statement without its comments, trimmed."""
    return "".join(t.text for t in tokens if t.kind != "comment").strip()


def _name_index(sig: list[_Token], keyword: str) -> int:
    """Index in ``sig`` of the object name after ``keyword`` (``TABLE``/``VIEW``)."""
    index = [t.upper for t in sig].index(keyword) + 1
    if [t.upper for t in sig[index : index + 3]] == ["IF", "NOT", "EXISTS"]:
        index += 3
    if index >= len(sig) or sig[index].kind not in ("word", "qid"):
        raise ValueError("expected an object name after " + keyword)
    if index + 1 < len(sig) and sig[index + 1].text == ".":
        raise ValueError(
            "schema objects must not name a database: the connection's database is used"
        )
    if index + 2 < len(sig) and [t.upper for t in sig[index + 1 : index + 3]] == ["ON", "CLUSTER"]:
        raise ValueError("schema files must not say ON CLUSTER: cluster mode adds it")
    return index


def _matching(sig: list[_Token], open_index: int) -> int:
    depth = 0
    for index in range(open_index, len(sig)):
        if sig[index].text == "(":
            depth += 1
        elif sig[index].text == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced parentheses")


def _top_level_items(sig: list[_Token], open_index: int) -> list[list[_Token]]:
    """The comma-separated items inside the parentheses that open at ``open_index``."""
    close = _matching(sig, open_index)
    items: list[list[_Token]] = [[]]
    depth = 0
    for token in sig[open_index + 1 : close]:
        if token.text in "([" and token.kind == "punct":
            depth += 1
        elif token.text in ")]" and token.kind == "punct":
            depth -= 1
        if token.text == "," and token.kind == "punct" and depth == 0:
            items.append([])
        else:
            items[-1].append(token)
    return [item for item in items if item]


def _create_table(tokens: list[_Token], cluster: str) -> list[str]:
    sig = _significant(tokens)
    upper = [t.upper for t in sig]
    name_at = _name_index(sig, "TABLE")
    table = sig[name_at].name
    everywhere = table in REPLICATED_EVERYWHERE
    local = table if everywhere else table + LOCAL_SUFFIX
    if_not_exists = "IF NOT EXISTS " if "EXISTS" in upper[: name_at + 1] else ""

    columns: list[str] = []
    if name_at + 1 < len(sig) and sig[name_at + 1].text == "(":
        for item in _top_level_items(sig, name_at + 1):
            if item[0].upper not in ("INDEX", "PROJECTION", "CONSTRAINT"):
                columns.append(item[0].name)

    depth = 0
    engine_at = None
    for index, token in enumerate(sig):
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif depth == 0 and token.upper == "ENGINE":
            engine_at = index
            break
    if engine_at is None or sig[engine_at + 1].text != "=":
        raise ValueError(f"table {table}: cluster mode needs an explicit ENGINE = ...")
    engine = sig[engine_at + 2]
    if not engine.text.endswith("MergeTree"):
        raise ValueError(
            f"table {table}: engine {engine.text} cannot be replicated; "
            "cluster mode handles the MergeTree family"
        )
    has_args = engine_at + 3 < len(sig) and sig[engine_at + 3].text == "("
    args_close = _matching(sig, engine_at + 3) if has_args else None

    # Rewrite the tokens in place (identity of the significant tokens is preserved).
    sig[name_at].text = _ident(local) + on_cluster(cluster)
    if not engine.text.startswith("Replicated"):
        if everywhere:
            path, replica = f"{KEEPER_PREFIX}/{{database}}/{local}", "{shard}-{replica}"
        else:
            path, replica = f"{KEEPER_PREFIX}/{{shard}}/{{database}}/{local}", "{replica}"
        replication = f"'{path}', '{replica}'"
        engine.text = "Replicated" + engine.text
        if args_close is None:
            engine.text += f"({replication})"
        elif args_close == engine_at + 4:  # empty parentheses
            sig[engine_at + 3].text = "(" + replication
        else:
            sig[engine_at + 3].text = "(" + replication + ", "
    for token in sig:
        if token.kind == "word" and token.text.lower() == "non_replicated_deduplication_window":
            token.text = "replicated_deduplication_window"
    statements = [_text(tokens)]
    if everywhere:
        return statements

    key = _sharding_key(sig, columns)
    statements.append(
        f"CREATE TABLE {if_not_exists}{_ident(table)}{on_cluster(cluster)} AS {_ident(local)}\n"
        f"ENGINE = Distributed('{cluster}', currentDatabase(), {_ident(local)}, {key})"
    )
    return statements


def _sharding_key(sig: list[_Token], columns: list[str]) -> str:
    if "user_id" in columns:
        return "cityHash64(user_id)"
    upper = [t.upper for t in sig]
    for index in range(len(sig) - 1):
        if upper[index] == "ORDER" and upper[index + 1] == "BY":
            start = index + 2
            if sig[start].text == "(":
                items = _top_level_items(sig, start)
                first = items[0] if items else []
            else:
                first = []
                for token in sig[start:]:
                    if token.upper in ("SETTINGS", "TTL", "PRIMARY", "SAMPLE", "PARTITION"):
                        break
                    first.append(token)
            expression = "".join(
                t.text + (" " if t.kind == "word" and nxt.kind == "word" else "")
                for t, nxt in zip(first, [*first[1:], _Token("punct", "")], strict=True)
            )
            if expression and expression.lower() != "tuple()":
                return f"cityHash64({expression})"
    return "rand()"


def _create_view(tokens: list[_Token], cluster: str, tables: frozenset[str]) -> str:
    sig = _significant(tokens)
    upper = [t.upper for t in sig]
    materialized = upper[1] == "MATERIALIZED"
    name_at = _name_index(sig, "VIEW")
    sig[name_at].text = _ident(sig[name_at].name) + on_cluster(cluster)
    as_at = upper.index("AS", name_at)
    if materialized:
        if "TO" not in upper[name_at:as_at]:
            raise ValueError(
                f"materialized view {sig[name_at].name}: cluster mode needs "
                "`TO <table>` (an inner engine would not be replicated)"
            )
        target = sig[upper.index("TO", name_at) + 1]
        if target.name in tables:
            target.text = _ident(target.name + LOCAL_SUFFIX)
        # The view fires on inserts into its first FROM table: on a cluster, on each
        # shard's local table, so each shard rolls up its own rows. Other tables it
        # reads (joins) stay Distributed: they are read whole, as on a single node.
        for index in range(as_at, len(sig) - 1):
            if upper[index] != "FROM" or sig[index + 1].text == "(":
                continue
            source = sig[index + 1]
            after = sig[index + 2].text if index + 2 < len(sig) else ""
            if source.kind in ("word", "qid") and source.name in tables and after != ".":
                source.text = _ident(source.name + LOCAL_SUFFIX)
            break
    return _text(tokens)


def _drop(sig: list[_Token], cluster: str, tables: frozenset[str]) -> list[str]:
    """``DROP TABLE|VIEW [IF EXISTS] name``: a view ``ON CLUSTER``; a sharded table's
    Distributed table and then its local table, both ``ON CLUSTER``."""
    kind = sig[1].upper
    upper = [t.upper for t in sig]
    index = 2
    if_exists = ""
    if upper[index : index + 2] == ["IF", "EXISTS"]:
        if_exists, index = "IF EXISTS ", index + 2
    if index >= len(sig) or sig[index].kind not in ("word", "qid"):
        raise ValueError(f"expected an object name after DROP {kind}")
    rest = [t.text for t in sig[index + 1 :] if t.text != ";"]
    if rest:
        raise ValueError(
            f"DROP {kind} {sig[index].name}: cluster mode adds ON CLUSTER itself and renders "
            f"nothing after the name (found {' '.join(rest)!r})"
        )
    name = sig[index].name
    names = [name]
    if kind == "TABLE" and name in tables and name not in REPLICATED_EVERYWHERE:
        names.append(name + LOCAL_SUFFIX)  # the Distributed table first: no reads of
        # a dropped local table through it in between
    return [f"DROP {kind} {if_exists}{_ident(n)}{on_cluster(cluster)}" for n in names]


def _alter_table(tokens: list[_Token], cluster: str) -> list[str]:
    sig = _significant(tokens)
    name_at = _name_index(sig, "TABLE")
    table = sig[name_at].name
    if table in REPLICATED_EVERYWHERE:
        sig[name_at].text = _ident(table) + on_cluster(cluster)
        return [_text(tokens)]
    commands: list[list[str]] = [[]]
    depth = 0
    for token in sig[name_at + 1 :]:
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        if token.text == "," and depth == 0:
            commands.append([])
        else:
            commands[-1].append(token.upper)
    column_commands = [
        c for c in commands if len(c) > 1 and c[0] in _COLUMN_COMMANDS and c[1] == "COLUMN"
    ]
    if column_commands and len(column_commands) != len(commands):
        raise ValueError(
            f"ALTER TABLE {table}: put column changes and other changes in separate files "
            "(the Distributed table follows only the column changes)"
        )
    sig[name_at].text = _ident(table + LOCAL_SUFFIX) + on_cluster(cluster)
    statements = [_text(tokens)]
    if column_commands:
        sig[name_at].text = _ident(table) + on_cluster(cluster)
        statements.append(_text(tokens))
    return statements
