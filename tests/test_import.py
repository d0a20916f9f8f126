"""``python -m service import``: a gateway database built with new-api's own DDL (SQLite,
PostgreSQL, MariaDB) and filled with realistic and awkward rows lands in the engine
exactly: counts, sums and every row field by field; re-runs and resumed runs store
nothing twice."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.bulk import insert_table
from service.importer import (
    Progress,
    Source,
    SourceError,
    open_reader,
    parse_source,
    read_progress,
    run_import,
    to_engine,
    write_progress,
)
from service.store import ChdbStore
from tests import dbservers
from tests.conftest import missing, truncate_all
from tests.expected import ADMIN_FIELDS, token_by_key
from tools.bench import newapi
from tools.generate import Spec, World, token_key

END = 1_764_000_000
SEED = 7
ENGINE_COLUMNS = ADMIN_FIELDS  # every field of the admin log item, in the API order
AWKWARD_TEXT = (
    "", "a,b", 'say "hi"', "line one\nline two", "tab\there", "back\\slash", "\\N",
    "模型倍率 2.50，补全倍率 4.00", "emoji 🚀✨", "'quoted'", "  spaces  ", "NULL", ",,,",
)  # fmt: skip


# -- source databases ------------------------------------------------------------------------


def world() -> World:
    return World(Spec(rows=2500, days=3, seed=SEED, end=END, users=40))


def generated_logs(w: World) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for _, table in w.batches():
        for row in newapi.log_rows(table):
            rows.append(dict(zip(newapi.LOG_COLUMNS, row, strict=True)))
    return rows


def awkward_logs(first_id: int) -> list[dict[str, Any]]:
    """Rows a real database holds that generated data would not: NULLs, odd text, extreme
    numbers, channels that no longer exist."""
    rows = []
    for i, text in enumerate(AWKWARD_TEXT):
        rows.append(
            {
                "id": first_id + i * 3,  # gaps, as after deletions
                "user_id": 900 + i,
                "created_at": END - 1000 * i,
                "type": (i % 7) + 1,
                "content": text,
                "username": text or None,
                "token_name": None if i % 2 else text,
                "model_name": "gpt-4o" if i % 3 else None,
                "quota": [0, -5, 2**40, None][i % 4],
                "prompt_tokens": None if i % 5 == 0 else i * 1000,
                "completion_tokens": i,
                "use_time": None if i == 1 else i,
                "is_stream": [True, False, None][i % 3],
                "channel_id": [1, 9999, None, 2][i % 4],
                "token_id": None if i == 2 else i,
                "group": [None, "default", "vip", "企业"][i % 4],
                "ip": None if i % 2 else "10.0.0.1",
                "request_id": text,
                "upstream_request_id": None if i % 2 else f"up-{text}",
                "other": '{"admin_info":{"use_channel":["1"]},"frt":12}' if i % 2 else text,
            }
        )
    return rows


CHANNELS = [(1, 1, "sk-x", 1, "OpenAI 官方", "", "gpt-4o", "default"),
            (2, 14, "sk-y", 1, "Claude, \"quoted\"", "", "claude", "default")]  # fmt: skip


def token_rows(w: World) -> list[tuple[Any, ...]]:
    rows = []
    for i, (tid, user, name, status) in enumerate(
        zip(w.token_ids.tolist(), w.token_user.tolist(), w.token_names, w.token_status.tolist(),
            strict=True)
    ):  # fmt: skip
        deleted = "2025-01-01 00:00:00" if i % 17 == 3 else None
        rows.append((tid, user, token_key(SEED, tid), status, name, END, END, -1, 0, True, 0, "",
                     deleted))  # fmt: skip
    return rows


def fill(
    conn: Any, dialect: str, logs: list[dict[str, Any]], tokens: list[tuple[Any, ...]]
) -> None:
    newapi.create(conn, dialect)
    values = [tuple(r[c] for c in newapi.LOG_COLUMNS) for r in logs]
    newapi.insert(conn, dialect, "logs", newapi.LOG_COLUMNS, values)
    newapi.insert(conn, dialect, "tokens", newapi.TOKEN_COLUMNS, tokens)
    newapi.insert(conn, dialect, "channels", newapi.CHANNEL_COLUMNS, CHANNELS)


def sqlite_source(path: Path, logs: list[dict[str, Any]], tokens: list[tuple[Any, ...]]) -> str:
    conn = sqlite3.connect(path)
    fill(conn, "sqlite", logs, tokens)
    conn.close()
    return f"sqlite:///{path}"


# -- what the engine must hold (brute force over the source rows) ------------------------------


def expected_row(row: dict[str, Any], channels: dict[int, str]) -> tuple[Any, ...]:

    def text(name: str) -> str:
        return row.get(name) or ""

    def num(name: str) -> int:
        return int(row.get(name) or 0)

    use_time = num("use_time") if "use_time" in row else num("elapsed_time") // 1000
    return (
        row["id"], row["user_id"], row["created_at"], row["type"], text("content"),
        text("username"), text("token_name"), text("model_name"), num("quota"),
        num("prompt_tokens"), num("completion_tokens"), use_time, bool(row.get("is_stream")),
        num("channel_id"), channels.get(num("channel_id"), text("channel_name")),
        num("token_id"), text("group"), text("ip"), text("request_id"),
        text("upstream_request_id"), text("other"),
    )  # fmt: skip


async def engine_rows(store: ChdbStore) -> list[tuple[Any, ...]]:
    select = ", ".join(
        "toUnixTimestamp(created_at)" if c == "created_at" else f"`{c}`" for c in ENGINE_COLUMNS
    )
    return (await store.query(f"SELECT {select} FROM logs ORDER BY id")).rows


async def assert_imported_exactly(
    store: ChdbStore, logs: list[dict[str, Any]], channels: bool = True
) -> None:
    names = {c[0]: c[4] for c in CHANNELS} if channels else {}
    want = sorted(expected_row(r, names) for r in logs)
    got = await engine_rows(store)
    assert len(got) == len(want)
    summary = await store.query(
        "SELECT count(), sum(quota), sum(prompt_tokens), sum(completion_tokens), "
        "countIf(is_stream), uniqExact(id) FROM logs"
    )
    count, quota, prompt, completion, streams, ids = summary.rows[0]
    assert (count, ids) == (len(want), len(want))
    assert quota == sum(r[8] for r in want)
    assert prompt == sum(r[9] for r in want)
    assert completion == sum(r[10] for r in want)
    assert streams == sum(1 for r in want if r[12])
    for g, w in zip(got, want, strict=True):
        assert dict(zip(ENGINE_COLUMNS, g, strict=True)) == dict(
            zip(ENGINE_COLUMNS, w, strict=True)
        )


async def assert_tokens(store: ChdbStore, tokens: list[tuple[Any, ...]]) -> None:
    count = (await store.query("SELECT count() FROM tokens FINAL")).scalar()
    assert count == len(tokens)
    for tid, user, key, status, name, *_rest, deleted in tokens[:40]:
        found = await token_by_key(store, key)
        assert found is not None, tid
        assert (found["id"], found["user_id"], found["name"]) == (tid, user, name)
        assert found["status"] == (2 if deleted else status)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source_data() -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    w = world()
    logs = generated_logs(w)
    logs += awkward_logs(logs[-1]["id"] + 10)
    return logs, token_rows(w)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def server_or_skip(start: Callable[[], Any]) -> Iterator[dbservers.Server]:
    try:
        context = start()
        server = context.__enter__()
    except FileNotFoundError as exc:
        missing(str(exc))
    try:
        yield server
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[dbservers.Server]:
    yield from server_or_skip(dbservers.postgres)


@pytest.fixture(scope="module")
def maria_server() -> Iterator[dbservers.Server]:
    yield from server_or_skip(dbservers.mariadb)


def pg_database(server: dbservers.Server, name: str) -> str:
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
    return f"postgresql://postgres:secret@{server.host}:{server.port}/{name}"


def maria_database(server: dbservers.Server, name: str) -> str:
    import pymysql

    conn = pymysql.connect(host=server.host, port=server.port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    conn.close()
    return f"mysql://root@{server.host}:{server.port}/{name}"


def connect(url: str) -> Any:
    source = parse_source(url)
    if source.kind == "postgresql":
        import psycopg

        return psycopg.connect(url)
    from urllib.parse import urlsplit

    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname, port=parts.port, user="root", database=parts.path.strip("/"),
        charset="utf8mb4",
    )  # fmt: skip


# -- the tests -------------------------------------------------------------------------------


def test_sqlite_imports_exactly(store: ChdbStore, tmp_path: Path, source_data: Any) -> None:
    logs, tokens = source_data
    url = sqlite_source(tmp_path / "one-api.db", logs, tokens)
    result = run(run_import(store, parse_source(url), batch_ids=700, progress=False))
    assert result.logs == len(logs) and result.tokens == len(tokens)
    assert (result.first_id, result.last_id) == (logs[0]["id"], logs[-1]["id"])
    run(assert_imported_exactly(store, logs))
    run(assert_tokens(store, tokens))


def test_postgres_imports_exactly(store: ChdbStore, pg_server: Any, source_data: Any) -> None:
    logs, tokens = source_data
    url = pg_database(pg_server, "newapi_exact")
    with connect(url) as conn:
        fill(conn, "postgresql", logs, tokens)
    result = run(run_import(store, parse_source(url), batch_ids=900, progress=False))
    assert result.logs == len(logs)
    run(assert_imported_exactly(store, logs))
    run(assert_tokens(store, tokens))


def test_mariadb_imports_exactly(store: ChdbStore, maria_server: Any, source_data: Any) -> None:
    logs, tokens = source_data
    url = maria_database(maria_server, "newapi_exact")
    conn = connect(url)
    fill(conn, "mysql", logs, tokens)
    conn.close()
    result = run(run_import(store, parse_source(url), batch_ids=900, progress=False))
    assert result.logs == len(logs)
    run(assert_imported_exactly(store, logs))
    run(assert_tokens(store, tokens))


def test_one_api_database_without_newer_columns(store: ChdbStore, tmp_path: Path) -> None:
    """one-api's schema: no group/ip/other, elapsed_time in ms, tokens without soft delete."""
    conn = sqlite3.connect(tmp_path / "legacy.db")
    newapi.create(conn, "sqlite", newapi.LEGACY_SQLITE_DDL)
    columns = ("id", "user_id", "created_at", "type", "content", "username", "token_name",
               "model_name", "quota", "prompt_tokens", "completion_tokens", "channel_id",
               "request_id", "elapsed_time", "is_stream")  # fmt: skip
    legacy = [
        dict(zip(columns, (i, 3, END - i, 2, f"call {i}", "alice", "t", "gpt-3.5-turbo",
                           i * 10, i, 2 * i, i % 3, f"req{i}", 1499 * i, i % 2), strict=True))
        for i in range(1, 60)
    ]  # fmt: skip
    newapi.insert(conn, "sqlite", "logs", columns, [tuple(r.values()) for r in legacy])
    key = "k" * 48
    newapi.insert(conn, "sqlite", "tokens", ("id", "user_id", "key", "status", "name"),
                  [(5, 3, key, 1, "legacy")])  # fmt: skip
    conn.close()
    result = run(run_import(store, parse_source(f"sqlite:///{tmp_path}/legacy.db"),
                            progress=False))  # fmt: skip
    assert result.logs == len(legacy) and result.tokens == 1
    # elapsed_time is milliseconds; use_time seconds (whole, rounded down)
    run(assert_imported_exactly(store, legacy, channels=False))
    found = run(token_by_key(store, key))
    assert found is not None and found["name"] == "legacy"


def test_rerun_stores_nothing_twice_and_brings_only_new_rows(
    store: ChdbStore, tmp_path: Path, source_data: Any
) -> None:
    logs, tokens = source_data
    head, tail = logs[:1800], logs[1800:]
    path = tmp_path / "growing.db"
    url = sqlite_source(path, head, tokens)
    source = parse_source(url)
    first = run(run_import(store, source, batch_ids=500, progress=False))
    again = run(run_import(store, source, batch_ids=500, progress=False))
    assert (first.logs, again.logs) == (len(head), 0)
    conn = sqlite3.connect(path)
    newapi.insert(conn, "sqlite", "logs", newapi.LOG_COLUMNS,
                  [tuple(r[c] for c in newapi.LOG_COLUMNS) for r in tail])  # fmt: skip
    conn.close()
    third = run(run_import(store, source, batch_ids=500, progress=False))
    assert third.logs == len(tail)
    assert third.resumed_after == head[-1]["id"]
    run(assert_imported_exactly(store, logs))
    run(assert_tokens(store, tokens))  # tokens upserted by id: still one row each


@pytest.mark.parametrize("landed", [True, False], ids=["insert-landed", "insert-lost"])
def test_resume_after_a_crash_inside_a_batch(
    store: ChdbStore, tmp_path: Path, source_data: Any, landed: bool
) -> None:
    """A run that died between recording a window as pending and recording it done:
    whether or not its insert reached the engine, the next run ends with each row once."""
    logs, tokens = source_data
    url = sqlite_source(tmp_path / "crash.db", logs, tokens)
    source = parse_source(url)
    partial = run(run_import(store, source, batch_ids=400, progress=False, tokens=False,
                             stop_after_batches=2))  # fmt: skip
    state = run(read_progress(store, source))
    assert state.state == "done" and partial.logs > 0
    lo, hi = state.batch_to, state.batch_to + 400

    async def crash() -> None:
        await write_progress(store, source, Progress("pending", lo, hi, state.rows))
        if landed:
            reader = open_reader(source)
            select, names = reader.log_select()
            table = to_engine(reader.logs_window(select, names, lo, hi), reader.channels())
            reader.close()
            await insert_table(store, "logs", table, f"import:{source.fingerprint}:{lo}-{hi}")

    run(crash())
    run(run_import(store, source, batch_ids=400, progress=False))
    run(assert_imported_exactly(store, logs))
    final = run(read_progress(store, source))
    assert final.state == "done" and final.rows == len(logs)


def test_sparse_history_is_imported_in_chunks_of_days(store: ChdbStore, tmp_path: Path) -> None:
    """One window of ids spanning 250 days (a quiet gateway's history): the engine takes
    at most 100 new partitions (days) per insert, so the importer cuts the window by
    days; a replay of the window (a crash after its insert) stores nothing twice."""
    day = 86400
    logs = [
        _complete({"user_id": 3, "created_at": END - (250 - i) * day + 7 * i, "type": 2,
                   "model_name": "gpt-4o", "quota": i, "prompt_tokens": i,
                   "completion_tokens": 2 * i, "use_time": 1, "content": f"day {i}"}, i)
        for i in range(1, 251)
    ]  # fmt: skip
    url = sqlite_source(tmp_path / "sparse.db", logs, [])
    source = parse_source(url)
    result = run(run_import(store, source, progress=False))  # one window of 100,000 ids
    assert result.logs == len(logs)
    run(assert_imported_exactly(store, logs))
    days = run(store.query("SELECT uniqExact(toDate(created_at)) FROM logs")).scalar()
    assert days == 250

    async def replay() -> None:  # as if the run had died after the window's insert
        state = await read_progress(store, source)
        await write_progress(store, source, Progress("pending", 0, state.batch_to, 0))

    run(replay())
    run(run_import(store, source, progress=False))
    run(assert_imported_exactly(store, logs))


# Text the three drivers and the CSV path must carry unchanged (PostgreSQL has no NUL).
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=40)  # fmt: skip
log_values = st.fixed_dictionaries(
    {
        "user_id": st.integers(0, 2**31 - 1),
        "created_at": st.integers(0, 2**32 - 1),
        "type": st.integers(0, 7),
        "content": st.one_of(st.none(), texts),
        "username": st.one_of(st.none(), texts),
        "model_name": texts,
        "quota": st.one_of(st.none(), st.integers(-(2**50), 2**50)),
        "prompt_tokens": st.integers(0, 2**40),
        "completion_tokens": st.integers(0, 2**40),
        "use_time": st.integers(0, 2**31 - 1),
        "is_stream": st.one_of(st.none(), st.booleans()),
        "channel_id": st.one_of(st.none(), st.integers(0, 4)),
        "group": st.one_of(st.none(), texts),
        "other": texts,
    }
)


def _complete(values: dict[str, Any], row_id: int) -> dict[str, Any]:
    row = {c: None for c in newapi.LOG_COLUMNS}
    row.update(values)
    row["id"] = row_id
    return row


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(log_values, min_size=1, max_size=30))
def test_property_sqlite_round_trip(
    store: ChdbStore, tmp_path_factory: Any, rows: list[Any]
) -> None:
    run(truncate_all(store))
    logs = [_complete(r, i * 2 + 1) for i, r in enumerate(rows)]
    path = tmp_path_factory.mktemp("prop") / "p.db"
    url = sqlite_source(path, logs, [])
    run(run_import(store, parse_source(url), batch_ids=7, progress=False))
    run(assert_imported_exactly(store, logs))


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(log_values, min_size=1, max_size=30))
def test_property_postgres_csv_round_trip(
    store: ChdbStore, pg_server: Any, rows: list[Any]
) -> None:
    run(truncate_all(store))
    logs = [_complete(r, i + 1) for i, r in enumerate(rows)]
    url = pg_database(pg_server, "newapi_prop")
    with connect(url) as conn:
        fill(conn, "postgresql", logs, [])
    run(run_import(store, parse_source(url), batch_ids=9, progress=False))
    run(assert_imported_exactly(store, logs))


@pytest.mark.parametrize(
    ("url", "kind", "name"),
    [
        ("sqlite:///data/one-api.db", "sqlite", "sqlite:///data/one-api.db"),
        ("sqlite:////tmp/x.db", "sqlite", "sqlite:///tmp/x.db"),
        ("sqlite:rel/x.db", "sqlite", f"sqlite://{os.getcwd()}/rel/x.db"),
        ("postgresql://u:secret@db:5433/newapi", "postgresql", "postgresql://u@db:5433/newapi"),
        ("postgres://u:secret@db/newapi", "postgresql", "postgresql://u@db/newapi"),
        ("mysql://root:pw@127.0.0.1:3306/oneapi", "mysql", "mysql://root@127.0.0.1:3306/oneapi"),
    ],
)
def test_source_urls_are_named_without_passwords(url: str, kind: str, name: str) -> None:
    source = parse_source(url)
    assert (source.kind, source.name) == (kind, name)
    assert "secret" not in source.name and "pw" not in source.name
    assert isinstance(source, Source)


@pytest.mark.parametrize("url", ["redis://x", "sqlite://", "http://host/db", "nonsense"])
def test_unsupported_sources_are_refused(url: str) -> None:
    with pytest.raises(SourceError):
        parse_source(url)


def test_a_database_without_logs_is_refused(store: ChdbStore, tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(SourceError, match="no logs table"):
        run(run_import(store, parse_source(f"sqlite:///{tmp_path}/empty.db"), progress=False))


def test_command_line_import(tmp_path: Path, source_data: Any) -> None:
    """The operator's command, in its own process with its own data directory."""
    logs, tokens = source_data
    url = sqlite_source(tmp_path / "cli.db", logs[:300], tokens[:5])
    env = {**os.environ, "GATELOG_DATA_DIR": str(tmp_path / "data"), "GATELOG_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "service", "import", "--from", url, "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported 300 logs and 5 tokens" in done.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "imported 0 logs after id" in again.stdout
    bad = subprocess.run([*command[:4], "--from", "ftp://x"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "unsupported source" in bad.stderr


def test_sqlite_columnar_reader_reads_what_sqlite3_reads(tmp_path: Path, source_data: Any) -> None:
    # Log windows come through SQLite's ADBC driver (Arrow columns); the same SQL through
    # the standard library's rows must give the same table, awkward rows and numbers
    # stored in text columns included.
    try:
        import adbc_driver_sqlite  # noqa: F401
    except ImportError:
        missing("adbc-driver-sqlite is not installed: pip install -e '.[test]'")
    logs, tokens = source_data
    odd = {**awkward_logs(10**6)[0], "id": 2 * 10**6, "username": 12345, "other": 7.5}
    url = sqlite_source(tmp_path / "one-api.db", [*logs, odd], tokens)
    reader = open_reader(parse_source(url))
    try:
        assert reader.arrow is not None  # type: ignore[attr-defined]
        select, names = reader.log_select()
        columnar = [reader.logs_window(select, names, lo, lo + 700) for lo in (0, 1400, 10**6)]
        columnar.append(reader.logs_window(select, names, 2 * 10**6 - 1, 2 * 10**6))
        arrow, reader.arrow = reader.arrow, None  # type: ignore[attr-defined]
        rows = [reader.logs_window(select, names, lo, lo + 700) for lo in (0, 1400, 10**6)]
        rows.append(reader.logs_window(select, names, 2 * 10**6 - 1, 2 * 10**6))
        reader.arrow = arrow  # type: ignore[attr-defined]
    finally:
        reader.close()
    assert columnar[0].num_rows > 0 and columnar[2].num_rows == 0
    for a, b in zip(columnar, rows, strict=True):
        assert a.equals(b)
    assert columnar[-1].column("username").to_pylist() == ["12345"]
