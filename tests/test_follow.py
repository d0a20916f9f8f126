"""Following a gateway database (new-api's own schema) on the real SQLite, PostgreSQL and
MariaDB: what is there is imported, rows the gateway adds later arrive exactly once, a
token the gateway disables stops working, rows the gateway deletes stay, a source that
is down is retried, and ``serve`` with GATELOG_FOLLOW_FROM does it in the background."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service import follow
from service.app import create_app
from service.follow import Follower
from service.importer import parse_source
from service.settings import Settings, SettingsError
from service.store import ChdbStore
from tests.conftest import truncate_all
from tests.expected import token_by_key
from tests.test_import import connect, maria_database, maria_server, pg_database, pg_server
from tools.bench import newapi

__all__ = ["maria_server", "pg_server"]  # fixtures used by name below

END = 1_790_000_000
KEY = "k" * 20 + "FollowKey0123456789abcdefghij"


def log(row_id: int, user_id: int = 7, quota: int = 10) -> tuple[Any, ...]:
    values = {
        "id": row_id, "user_id": user_id, "created_at": END - 1000 + row_id, "type": 2,
        "content": f"call {row_id}", "username": f"user{user_id}", "token_name": "t",
        "model_name": "gpt-4o", "quota": quota, "prompt_tokens": 3, "completion_tokens": 4,
        "use_time": 1, "is_stream": False, "channel_id": 1, "token_id": 5, "group": "default",
        "ip": "", "request_id": f"req-{row_id}", "upstream_request_id": "", "other": "{}",
    }  # fmt: skip
    return tuple(values[c] for c in newapi.LOG_COLUMNS)


def token(status: int = 1) -> tuple[Any, ...]:
    return (5, 7, KEY, status, "t", END, END, -1, 0, True, 0, "", None)


class Gateway:
    """new-api's database, written to as the gateway writes it."""

    def __init__(self, url: str, dialect: str, conn: Any) -> None:
        self.url, self.dialect, self.conn = url, dialect, conn
        newapi.create(conn, dialect)
        self.commit()

    def commit(self) -> None:
        self.conn.commit()

    def add_logs(self, rows: list[tuple[Any, ...]]) -> None:
        newapi.insert(self.conn, self.dialect, "logs", newapi.LOG_COLUMNS, rows)
        self.commit()

    def add_token(self, row: tuple[Any, ...]) -> None:
        newapi.insert(self.conn, self.dialect, "tokens", newapi.TOKEN_COLUMNS, [row])
        self.commit()

    def execute(self, sql: str) -> None:
        cursor = self.conn.cursor()
        cursor.execute(sql)
        self.commit()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def gateway_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    kind = str(request.param)
    if kind == "sqlite":
        path = tmp_path / "one-api.db"
        conn = sqlite3.connect(path)
        gw = Gateway(f"sqlite:///{path}", "sqlite", conn)
    elif kind == "postgresql":
        url = pg_database(request.getfixturevalue("pg_server"), "follow")
        gw = Gateway(url, "postgresql", connect(url))
    else:
        url = maria_database(request.getfixturevalue("maria_server"), "follow")
        gw = Gateway(url, "mysql", connect(url))
    yield gw
    gw.conn.close()


async def ids_in(store: ChdbStore) -> list[int]:
    return [int(r[0]) for r in (await store.query("SELECT id FROM logs ORDER BY id")).rows]


class Clock:
    def __init__(self) -> None:
        self.now = float(END)

    def __call__(self) -> float:
        return self.now


async def lookup(store: ChdbStore, settings: Settings, key: str) -> tuple[int, Any]:
    """The public token lookup of ``key``, as a client of the service sees it."""
    app = create_app(settings, store=store)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/log/token", params={"key": key})
        return response.status, await response.json()


def test_follow_brings_new_rows_once_and_token_changes(
    store: ChdbStore, settings: Settings, gateway_db: Gateway
) -> None:
    gateway_db.add_logs([log(i) for i in range(1, 6)])
    gateway_db.add_token(token())
    # a second key of the same user, which the gateway deletes (soft: deleted_at set)
    other_key = "d" * 19 + "DeletedKey0123456789abcdefghij"
    gateway_db.add_token((6, 7, other_key, 1, "t2", END, END, -1, 0, True, 0, "", None))
    clock = Clock()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    follower = Follower(store, parse_source(gateway_db.url), clock=clock, registry=registry)

    async def body() -> None:
        assert await follower.poll() == 5
        assert await ids_in(store) == [1, 2, 3, 4, 5]
        found = await token_by_key(store, KEY)
        assert found is not None and found["status"] == 1
        # the key works in gatelog: its owner's client sees the token's logs
        status, body = await lookup(store, settings, KEY)
        assert status == 200 and len(body["data"]) == 5, body
        assert (await lookup(store, settings, other_key))[0] == 200
        assert await follower.poll() == 0  # nothing new: nothing twice
        # the gateway goes on writing; it also deletes an old row, disables one key and
        # deletes the other (new-api's soft delete)
        gateway_db.add_logs([log(i) for i in range(6, 9)])
        gateway_db.execute("DELETE FROM logs WHERE id = 2")
        gateway_db.execute("UPDATE tokens SET status = 2 WHERE id = 5")
        gateway_db.execute("UPDATE tokens SET deleted_at = '2026-12-01 00:00:00' WHERE id = 6")
        clock.now += follow.TOKEN_INTERVAL
        assert await follower.poll() == 3
        assert await ids_in(store) == [1, 2, 3, 4, 5, 6, 7, 8]  # the delete stays there
        found = await token_by_key(store, KEY)
        assert found is not None and found["status"] == 2
        # both keys stop working in gatelog: the same 404 as an unknown key
        for key in (KEY, other_key):
            status, body = await lookup(store, settings, key)
            assert status == 404 and body["success"] is False, body
        quota = (await store.query("SELECT sum(quota) FROM logs")).scalar()
        assert quota == 80
        assert registry.get_sample_value("gatelog_follow_rows_total") == 8
        clock.now += 5
        assert registry.get_sample_value("gatelog_follow_lag_seconds") == 5

    asyncio.run(truncate_all(store))
    asyncio.run(body())


def test_a_source_that_is_down_is_retried(store: ChdbStore, tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    follower = Follower(store, parse_source(f"sqlite:///{path}"), interval=0)

    async def body() -> None:
        task = asyncio.create_task(follower.run())
        while follower.failures < 2:  # the loop keeps trying
            await asyncio.sleep(0.01)
        conn = sqlite3.connect(path)
        Gateway(f"sqlite:///{path}", "sqlite", conn).add_logs([log(1), log(2)])
        conn.close()
        while follower.rows < 2:  # and follows by itself once the source is back
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await ids_in(store) == [1, 2]

    asyncio.run(truncate_all(store))
    asyncio.run(asyncio.wait_for(body(), 60))


async def test_serve_follows_and_stays_ready(
    store: ChdbStore, settings: Settings, tmp_path: Path
) -> None:
    await truncate_all(store)
    path = tmp_path / "one-api.db"
    conn = sqlite3.connect(path)
    gw = Gateway(f"sqlite:///{path}", "sqlite", conn)
    gw.add_logs([log(1), log(2)])
    app = create_app(
        replace(settings, follow_from=gw.url, follow_interval_seconds=0.05), store=store
    )
    async with TestClient(TestServer(app)) as client:
        deadline = time.monotonic() + 60
        while await ids_in(store) != [1, 2] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await ids_in(store) == [1, 2]
        gw.add_logs([log(3)])
        path.rename(tmp_path / "moved.db")  # the source goes away for a while
        response = await client.get("/readyz")
        assert response.status == 200
        (tmp_path / "moved.db").rename(path)

        async def followed() -> float:
            metrics = await (await client.get("/metrics")).text()
            samples = dict(
                line.rsplit(" ", 1)
                for line in metrics.splitlines()
                if line.startswith("gatelog_follow")
            )
            assert "gatelog_follow_lag_seconds" in samples
            assert "gatelog_follow_rows_per_second" in samples
            return float(samples["gatelog_follow_rows_total"])

        while await followed() < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await followed() == 3
        assert await ids_in(store) == [1, 2, 3]
    conn.close()


def test_a_bad_follow_url_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="GATELOG_FOLLOW_FROM"):
        create_app(replace(settings, follow_from="oracle://db/x"))


CHECK_SCRIPT = """
import asyncio, json, sys
from service.store import ChdbStore

async def main():
    store = ChdbStore(sys.argv[1])
    ids = [int(r[0]) for r in (await store.query("SELECT id FROM logs ORDER BY id")).rows]
    status = (await store.query("SELECT status FROM tokens FINAL WHERE id = 5")).rows
    await store.close()
    print(json.dumps({"ids": ids, "status": [int(r[0]) for r in status]}))

asyncio.run(main())
"""


def test_import_follow_as_its_own_process(tmp_path: Path) -> None:
    """``python -m service import --from URL --follow``: rows and a token change written
    while it runs are picked up exactly once; SIGTERM stops it cleanly."""
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    from tests.dbservers import free_port

    path = tmp_path / "one-api.db"
    conn = sqlite3.connect(path)
    gw = Gateway(f"sqlite:///{path}", "sqlite", conn)
    gw.add_logs([log(1), log(2), log(3)])
    gw.add_token(token(status=1))
    data = tmp_path / "data"
    env = {
        **os.environ,
        "GATELOG_DATA_DIR": str(data),
        "GATELOG_FOLLOW_INTERVAL_SECONDS": "0.2",
        "GATELOG_FOLLOW_TOKENS_INTERVAL_SECONDS": "0",
        "GATELOG_LOG_LEVEL": "INFO",
    }
    env["GATELOG_HOST"] = "127.0.0.1"
    port = free_port()
    command = [sys.executable, "-m", "service", "import", "--from", gw.url, "--follow"]
    errors = tmp_path / "stderr.log"
    with errors.open("wb") as err:
        child = subprocess.Popen(
            [*command, "--metrics-port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )

    def followed() -> int:
        text = errors.read_text(errors="replace")
        return sum(int(n) for n in re.findall(r"(\d+) new logs", text))

    def wait_for(rows: int) -> None:
        deadline = time.monotonic() + 90
        while followed() < rows and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert followed() == rows, errors.read_text(errors="replace")[-2000:]

    try:
        wait_for(3)
        # the gateway disables the key, then logs two more calls, while the follower runs
        gw.execute("UPDATE tokens SET status = 2 WHERE id = 5")
        gw.add_logs([log(4), log(5)])
        wait_for(5)
        time.sleep(0.5)  # a few more polls find nothing new
        assert followed() == 5
        # the follower's own metrics, as serve's /metrics has them
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            metrics = r.read().decode()
        samples = dict(
            line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("gatelog_")
        )
        assert float(samples["gatelog_follow_rows_total"]) == 5
        assert float(samples["gatelog_follow_lag_seconds"]) >= 0
        assert "gatelog_follow_rows_per_second" in samples
    finally:
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=60)
    conn.close()
    assert child.returncode == 0, errors.read_text(errors="replace")[-2000:]
    assert b"stopped following" in out
    check = subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT, str(data)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    stored = json.loads(check.stdout.decode().strip().splitlines()[-1])
    assert stored == {"ids": [1, 2, 3, 4, 5], "status": [2]}


@pytest.mark.parametrize("extra", [["--metrics-port", "9464"], ["--follow", "--metrics-port", "0"]])
def test_metrics_port_needs_follow_and_a_port(tmp_path: Path, extra: list[str]) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "GATELOG_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "service", "import", "--from", "sqlite:///nowhere.db", *extra],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 2 and b"--metrics-port" in done.stderr
