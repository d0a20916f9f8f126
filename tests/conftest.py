"""Shared fixtures: one real embedded engine per test session, the schema applied by the
real migrator (twice), and clients of the real app.

chDB locks its data path per process, so the session opens one ChdbStore on a fresh
temporary directory; each test that uses the database starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.auth import ROLE_ADMIN, ROLE_USER, issue_token
from service.migrate import migrate
from service.settings import Settings
from service.store import ChdbStore, HttpStore, Store

SECRET = "test-secret-that-is-long-enough-for-hs256"
HTTP_PASSWORD = "gatelog-test-password"


def pytest_configure(config: pytest.Config) -> None:
    # One fuzzing seed per run (tests/test_fuzz.py), unless one is given to repeat a run;
    # xdist's workers start after this and inherit it with the environment.
    os.environ.setdefault("GATELOG_FUZZ_SEED", str(random.SystemRandom().randrange(1, 2**32)))


def pytest_report_header(config: pytest.Config) -> str:
    seed = os.environ["GATELOG_FUZZ_SEED"]
    return f"fuzz seed: {seed} (GATELOG_FUZZ_SEED={seed} repeats the fuzzing's inputs)"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def engine(data_dir: Path) -> Iterator[ChdbStore]:
    store = ChdbStore(str(data_dir))

    async def apply_twice() -> None:
        first = await migrate(store)
        second = await migrate(store)
        assert first, "the first run applies the schema"
        assert second == [], "the second run applies nothing"

    asyncio.run(apply_twice())
    yield store
    asyncio.run(store.close())


async def truncate_all(store: Store) -> None:
    rows = await store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND engine LIKE '%MergeTree' AND name != 'schema_migrations'"
    )
    for (name,) in rows.rows:
        await store.command(f"TRUNCATE TABLE IF EXISTS `{name}`")


@pytest.fixture
def store(engine: ChdbStore) -> ChdbStore:
    """The session's engine with every table emptied for this test."""
    asyncio.run(truncate_all(engine))
    return engine


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=str(data_dir), jwt_secret=SECRET, token_lookup_rate=0)


def make_token(
    user_id: int = 1,
    role: int = ROLE_USER,
    username: str | None = None,
    scope: str | None = None,
    ttl: int = 3600,
) -> str:
    settings = Settings(jwt_secret=SECRET)
    name = username if username is not None else f"user{user_id}"
    return issue_token(settings, sub=user_id, username=name, role=role, scope=scope, ttl=ttl)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Headers of each caller, one dict per caller. Modules take them at import (collection),
# which in a long run is more than a token's hour before their tests: the autouse
# fixture below signs every caller's token again before each test, in place.
_CALLERS: dict[tuple[int, int, str | None, str | None], dict[str, str]] = {}


def caller_headers(
    user_id: int, role: int, username: str | None = None, scope: str | None = None
) -> dict[str, str]:
    caller = (user_id, role, username, scope)
    if caller not in _CALLERS:
        _CALLERS[caller] = bearer(make_token(user_id, role, username, scope))
    return _CALLERS[caller]


@pytest.fixture(autouse=True)
def fresh_tokens() -> None:
    """Every caller's token signed now, for this test (valid for its hour)."""
    for (user_id, role, username, scope), headers in _CALLERS.items():
        headers.update(bearer(make_token(user_id, role, username, scope)))


ADMIN = caller_headers(1, ROLE_ADMIN, "root")
WRITER = caller_headers(0, ROLE_USER, "gateway", scope="logs:write")


def user_headers(user_id: int) -> dict[str, str]:
    return caller_headers(user_id, ROLE_USER)


@asynccontextmanager
async def open_backend(kind: str, store: ChdbStore) -> AsyncIterator[Store]:
    """The engine through one backend: ``embedded`` is chDB in-process, ``http``
    clickhouse-connect's async HTTP client talking to a ClickHouse HTTP interface served
    over the same chDB data (tests/support/chhttp.py)."""
    if kind == "embedded":
        yield store
        return
    from tests.support.chhttp import DEPLOY_USERS, ClickHouseHTTPServer, users_from_xml

    # The account the deployment ships (deploy/clickhouse/users.d), its grants enforced:
    # every statement the service sends through this backend must be one they allow.
    users = users_from_xml(DEPLOY_USERS / "gatelog.xml", {"gatelog": HTTP_PASSWORD})
    server = ClickHouseHTTPServer(store.path, users=users)
    port = await server.start()
    url = f"http://gatelog:{HTTP_PASSWORD}@127.0.0.1:{port}/{store.database}"
    http = HttpStore(url, timeout=10.0)
    try:
        yield http
    finally:
        await http.close()
        await server.stop()
        server.close()
    assert users["gatelog"].denied == [], "statements the deployed grants refuse"


BACKENDS = ("embedded", "http")


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def backend(backend_kind: str, store: ChdbStore) -> AsyncIterator[Store]:
    """The engine through each backend (see :func:`open_backend`)."""
    async with open_backend(backend_kind, store) as opened:
        yield opened


@pytest.fixture
async def client(backend: Store, settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the real app, once per backend."""
    app = create_app(settings, store=backend)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def held_clock() -> Callable[[], float]:
    """The wall clock's reading now, held: an app's "now" for a test whose answers must
    not change as time passes (a rate limit's minute window, a default range), while
    rows made relative to the wall clock stay recent to it."""
    now = time.time()
    return lambda: now


@pytest.fixture
async def make_client(store: ChdbStore, settings: Settings) -> AsyncIterator[ClientFactory]:
    """A client of an app with changed settings: ``await make_client(token_lookup_rate=3)``
    (``clock``: the app's fixed "now", see :func:`service.app.create_app`)."""
    clients: list[TestClient[Any, Any]] = []

    async def make(
        store_override: Store | None = None,
        clock: Callable[[], float] | None = None,
        **changes: Any,
    ) -> TestClient[Any, Any]:
        from dataclasses import replace

        app = create_app(replace(settings, **changes), store=store_override or store, clock=clock)
        test_client = TestClient(TestServer(app))
        await test_client.start_server()
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        await test_client.close()


def log_row(**fields: Any) -> dict[str, Any]:
    """A complete log object for ingest, with overridable fields."""
    row: dict[str, Any] = {
        "user_id": 7,
        "created_at": int(time.time()) - 100,
        "type": 2,
        "content": "API call succeeded",
        "username": "bob",
        "token_name": "api_token",
        "model_name": "gpt-4",
        "quota": 1000,
        "prompt_tokens": 50,
        "completion_tokens": 100,
        "use_time": 2,
        "is_stream": False,
        "channel_id": 1,
        "channel_name": "OpenAI channel",
        "token_id": 1,
        "group": "default",
        "ip": "192.168.1.1",
        "request_id": "",
        "upstream_request_id": "",
        "other": '{"model_ratio":15.0}',
    }
    row.update(fields)
    return row


async def ingest(client: TestClient[Any, Any], rows: list[dict[str, Any]]) -> None:
    response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
    body = await response.json()
    assert response.status == 200, body
    assert body["data"] == len(rows)


@pytest.fixture
def engine_calls(engine: ChdbStore) -> Iterator[list[str]]:
    """The kinds of engine calls made during the test (query/command/insert/stream)."""
    calls: list[str] = []
    engine.observer = lambda kind, _seconds: calls.append(kind)
    yield calls
    engine.observer = None


def missing(why: str) -> None:
    """A tool or server a test needs is absent: under CI (which installs everything the
    suite needs) that is a failure, elsewhere a skip that says what to install."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must have it (scripts/test.sh installs it)")
    pytest.skip(why, allow_module_level=True)
