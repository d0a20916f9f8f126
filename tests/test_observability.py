"""Observability: Prometheus metrics per app, the probes, and one structured log line
per request carrying the request id that the response returns."""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.jsonlog import JsonFormatter
from service.keys import METRICS
from service.metrics import ERROR_KINDS
from service.store import HttpStore
from tests.conftest import ADMIN, WRITER, held_clock, log_row, user_headers


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_seen(samples: dict[Any, float], route: str, method: str, status: int) -> float:
    name = "gatelog_http_request_duration_seconds_count"
    return value(samples, name, route=route, method=method, status=str(status))


async def test_metrics_count_requests_by_route_rows_and_errors(
    make_client: Any, engine_calls: list[str]
) -> None:
    client = await make_client()
    # what the app's own start-up asked of the engine (its id lease) is counted before
    started = await scrape(client)
    logs = [log_row(user_id=7), log_row(user_id=7), log_row(user_id=8)]
    engine_calls.clear()
    assert (await client.post("/api/internal/logs", json=logs, headers=WRITER)).status == 200
    tokens = [{"id": 1, "key": "sk-a", "user_id": 7}, {"id": 2, "key": "sk-b", "user_id": 8}]
    assert (await client.post("/api/internal/tokens", json=tokens, headers=WRITER)).status == 200
    for _ in range(3):
        assert (await client.get("/api/log/", headers=ADMIN)).status == 200
    assert (await client.get("/api/log/self")).status == 401
    assert (await client.get("/api/log/", headers=user_headers(7))).status == 403
    assert (await client.get("/api/log/self?p=x", headers=user_headers(7))).status == 400
    assert (await client.get("/api/log/token?key=sk-unknown")).status == 404
    assert (await client.get("/no/such/path/12345")).status == 404
    assert (await client.post("/api/log/self", headers=user_headers(7))).status == 405
    inserts = engine_calls.count("insert")
    queries = engine_calls.count("query")

    samples = await scrape(client)
    assert requests_seen(samples, "/api/log/", "GET", 200) == 3
    assert requests_seen(samples, "/api/log/", "GET", 403) == 1
    assert requests_seen(samples, "/api/log/self", "GET", 401) == 1
    assert requests_seen(samples, "/api/internal/logs", "POST", 200) == 1
    assert requests_seen(samples, "/api/log/token", "GET", 404) == 1
    # Paths no route serves share one label value: clients cannot mint series.
    assert requests_seen(samples, "unmatched", "GET", 404) == 1
    assert requests_seen(samples, "unmatched", "POST", 405) == 1
    assert not any("12345" in str(labels) for _, labels in samples)

    assert value(samples, "gatelog_ingested_rows_total", kind="logs") == 3
    assert value(samples, "gatelog_ingested_rows_total", kind="tokens") == 2
    assert value(samples, "gatelog_deleted_rows_total", source="api") == 0
    errors = {
        kind: value(samples, "gatelog_errors_total", kind=kind) for kind in ERROR_KINDS.values()
    }
    assert errors == {
        "bad_request": 1, "unauthorized": 1, "forbidden": 1, "not_found": 2,
        "method_not_allowed": 1, "payload_too_large": 0, "rate_limited": 0,
        "engine_unavailable": 0, "internal": 0,
    }  # fmt: skip
    # Every engine call of this app is timed, by kind, as the store reports them.
    name = "gatelog_engine_query_duration_seconds_count"
    since = {kind: value(samples, name, kind=kind) - value(started, name, kind=kind)
             for kind in ("insert", "query")}  # fmt: skip
    # the logs, the tokens, and the id node the first ingest leases (a row of id_leases)
    assert since["insert"] == inserts == 3
    assert since["query"] >= queries >= 3 * 2 + 1


async def test_each_app_has_its_own_registry(make_client: Any) -> None:
    first, second = await make_client(), await make_client(token_lookup_rate=1, clock=held_clock())
    for _ in range(2):
        await second.get("/api/log/token?key=sk-unknown")
    assert first.app[METRICS].registry is not second.app[METRICS].registry
    mine, theirs = await scrape(second), await scrape(first)
    assert value(mine, "gatelog_errors_total", kind="rate_limited") == 1
    assert value(mine, "gatelog_errors_total", kind="not_found") == 1
    assert value(theirs, "gatelog_errors_total", kind="rate_limited") == 0
    assert requests_seen(theirs, "/api/log/token", "GET", 404) == 0


async def test_deleted_rows_are_counted_through_the_apps_metrics(make_client: Any) -> None:
    client = await make_client()
    client.app[METRICS].rows_deleted(1500)
    client.app[METRICS].rows_deleted(20, source="retention")
    client.app[METRICS].rows_deleted(0)
    samples = await scrape(client)
    assert value(samples, "gatelog_deleted_rows_total", source="api") == 1500
    assert value(samples, "gatelog_deleted_rows_total", source="retention") == 20


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_readiness_fails_fast_when_the_engine_is_unreachable(settings: Any) -> None:
    dead = HttpStore(f"http://127.0.0.1:{unused_port()}/gatelog", timeout=2.0)
    app = create_app(settings, store=dead)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        # how fast is the client's timeout's business (2 s here), not asserted: a
        # duration fails on a loaded machine, not on a broken service
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 503
        assert body == {"success": False, "message": "the log engine is unreachable", "data": None}
        assert (await client.get("/api/log/", headers=ADMIN)).status == 503
        samples = await scrape(client)
        assert value(samples, "gatelog_errors_total", kind="engine_unavailable") == 2
        assert requests_seen(samples, "/readyz", "GET", 503) == 1
    await dead.close()


async def test_readiness_fails_until_every_schema_file_is_applied(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from service.migrate import schema_dir

    client = await make_client(readyz_cache_seconds=0)  # probed afresh on each call
    assert (await client.get("/readyz")).status == 200
    for path in schema_dir().glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "999_new.sql").write_text("CREATE TABLE IF NOT EXISTS x (a Int8) ENGINE = Log")
    monkeypatch.setenv("GATELOG_SCHEMA_DIR", str(tmp_path))  # a release with a new file
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["message"] == "the schema is not applied yet"
    assert (await client.get("/healthz")).status == 200  # alive, just not ready


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if hasattr(r, "fields")]
    assert all("\n" not in line for line in lines)
    return [json.loads(line) for line in lines]


async def test_one_json_line_per_request_with_the_returned_request_id(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatelog.request")
    response = await client.get("/api/log/self?p=2", headers=user_headers(7))
    generated = response.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    given = await client.get("/api/log/token?key=sk-secret-key", headers={"X-Request-Id": "gw-1.2"})
    assert given.headers["X-Request-Id"] == "gw-1.2"
    hostile = await client.get("/healthz", headers={"X-Request-Id": 'a"b c' + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-Id"])

    first, second, third = request_lines(caplog)
    assert first["request_id"] == generated
    assert first | {"ms": 0, "remote": ""} == {
        "time": first["time"], "level": "INFO", "logger": "gatelog.request",
        "request_id": generated, "method": "GET", "route": "/api/log/self",
        "path": "/api/log/self", "status": 200, "ms": 0, "remote": "",
    }  # fmt: skip
    assert first["ms"] >= 0
    assert (second["request_id"], second["status"], second["error"]) == ("gw-1.2", 404, "not_found")
    assert "sk-secret-key" not in json.dumps(second)  # query strings are never logged
    assert third["request_id"] == hostile.headers["X-Request-Id"]


def test_a_record_with_an_exception_is_still_one_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("a",), None)
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed a" and "ValueError: bad\nthing" in parsed["exception"]


def test_an_unparseable_request_is_one_warning_without_a_traceback() -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    from service.jsonlog import MalformedRequests

    def record_of(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
        message = "Error handling request from %s"
        return logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, message, ("203.0.113.9",), exc_info
        )

    malformed = record_of(BadHttpMessage("Invalid header value char: b'X: \\x00'"))
    assert MalformedRequests().filter(malformed)
    line = json.loads(JsonFormatter().format(malformed))
    assert line["level"] == "WARNING" and "exception" not in line
    assert line["message"] == "malformed HTTP request from 203.0.113.9: BadHttpMessage"
    # Any other failure keeps its level and traceback.
    other = record_of(RuntimeError("boom"))
    assert MalformedRequests().filter(other)
    assert other.levelno == logging.ERROR and other.exc_info is not None


async def test_an_unexpected_failure_is_counted_and_logged_with_the_request_id(
    store: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def boom(request: Any) -> Any:
        raise RuntimeError("secret detail")

    app = create_app(settings, store=store)
    app.router.add_get("/boom", boom)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/boom")
        body = await response.json()
        request_id = response.headers["X-Request-Id"]
        samples = await scrape(client)
    assert response.status == 500 and "secret" not in body["message"]
    assert request_id in body["message"]
    assert value(samples, "gatelog_errors_total", kind="internal") == 1
    (line,) = [line for line in request_lines(caplog) if line["route"] == "/boom"]
    assert (line["request_id"], line["error"]) == (request_id, "internal")
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)
