"""Engine errors as a ClickHouse server reports them, and what callers get.

The test server (tests/support/chhttp.py) fails chosen statements with a chosen engine
code, before the answer (an HTTP error status) or in the middle of it (200, part of the
rows, then the exception in the stream). The expected answers are written here from
what each code means, not read from the service's tables: overload and unavailability
are a 503 to retry, a value the engine cannot store is the client's 400, anything else
is our bug, a bare 500 that leaks nothing. An export cut short never ends with its
totals line; its last line is the error line (README "Export").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.settings import Settings
from service.store import ChdbStore, HttpStore
from tests.conftest import ADMIN, WRITER, log_row
from tests.support.chhttp import ClickHouseHTTPServer

BASE = 1_790_000_000
# Engine codes and the status each must give (ClickHouse's ErrorCodes).
UNAVAILABLE = {
    159: "TIMEOUT_EXCEEDED",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",
    252: "TOO_MANY_PARTS",
    319: "UNKNOWN_STATUS_OF_INSERT",
    394: "QUERY_WAS_CANCELLED",
    999: "KEEPER_EXCEPTION",
}
BAD_VALUE = {
    6: "CANNOT_PARSE_TEXT",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
}
OUR_BUG = {
    47: "UNKNOWN_IDENTIFIER",
    60: "UNKNOWN_TABLE",
    62: "SYNTAX_ERROR",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    1001: "STD_EXCEPTION",
}
# An answer larger than the configured bound (max_result_bytes): the caller asks for less.
TOO_LARGE = {396: "TOO_MANY_ROWS_OR_BYTES"}
EXPECTED = (
    dict.fromkeys(UNAVAILABLE, 503)
    | dict.fromkeys(BAD_VALUE, 400)
    | dict.fromkeys(TOO_LARGE, 400)
    | dict.fromkeys(OUR_BUG, 500)
)
# The statements of a list page and of an export's windows (clickhouse-connect adds the
# FORMAT clause); the export's carry no LIMIT.
PAGE_SQL = r"FROM logs WHERE .*ORDER BY created_at DESC, id DESC\s+LIMIT"
EXPORT_SQL = r"FROM logs WHERE .*ORDER BY created_at DESC, id DESC\s+FORMAT"


@pytest.fixture
async def served(store: ChdbStore) -> AsyncIterator[tuple[ClickHouseHTTPServer, HttpStore]]:
    server = ClickHouseHTTPServer(store.path)
    port = await server.start()
    http = HttpStore(f"http://default:@127.0.0.1:{port}/{store.database}", timeout=10.0)
    try:
        yield server, http
    finally:
        await http.close()
        await server.stop()
        server.close()


@pytest.fixture
async def api(
    served: tuple[ClickHouseHTTPServer, HttpStore], settings: Settings
) -> AsyncIterator[tuple[ClickHouseHTTPServer, TestClient[Any, Any]]]:
    server, http = served
    # Small export windows: an export of a few days is several window queries.
    app = create_app(
        replace(settings, export_window_rows=2, export_block_rows=2), store=http,
        clock=lambda: BASE + 10 * 86400,
    )  # fmt: skip
    async with TestClient(TestServer(app)) as client:
        rows = [
            log_row(id=i + 1, user_id=7, created_at=BASE + i * 86400, quota=i + 1) for i in range(6)
        ]
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        assert response.status == 200, await response.text()
        yield server, client


async def envelope(response: Any) -> dict[str, Any]:
    body = await response.json()
    assert set(body) == {"success", "message", "data"}, body
    assert body["success"] is False and body["data"] is None
    return dict(body)


async def test_every_engine_code_before_the_answer(
    api: tuple[ClickHouseHTTPServer, TestClient[Any, Any]],
) -> None:
    server, client = api
    for code in sorted(EXPECTED):  # one app for all codes: the suite's time is short
        fault = server.inject(code, match=PAGE_SQL, times=0)
        response = await client.get("/api/log/", params={"page_size": "3"}, headers=ADMIN)
        assert fault.hits, "the page query reached the engine"
        assert response.status == EXPECTED[code], (code, await response.text())
        body = await envelope(response)
        assert "INJECTED" not in body["message"] and "DB::Exception" not in body["message"]
        server.faults.clear()
    response = await client.get("/api/log/", params={"page_size": "3"}, headers=ADMIN)
    assert response.status == 200  # nothing stays broken


async def test_engine_codes_in_the_middle_of_the_answer(
    api: tuple[ClickHouseHTTPServer, TestClient[Any, Any]],
) -> None:
    server, client = api
    for code in (241, 202, 252, 319, 53, 6, 62, 60):
        for tagged in (True, False):  # servers from 25.11 tag the exception; older ones not
            fault = server.inject(code, match=PAGE_SQL, times=0, when="during", tagged=tagged)
            response = await client.get("/api/log/", params={"page_size": "6"}, headers=ADMIN)
            assert fault.hits
            assert response.status == EXPECTED[code], (code, tagged, await response.text())
            await envelope(response)
            server.faults.clear()


async def test_ingest_refused_by_the_engine_stores_nothing(
    api: tuple[ClickHouseHTTPServer, TestClient[Any, Any]],
) -> None:
    server, client = api
    for code in (53, 6, 319, 252, 241, 62):
        fault = server.inject(code, match=r"^\s*INSERT INTO `?logs`?", times=0)
        rows = [log_row(id=100 + i, created_at=BASE + i) for i in range(3)]
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        assert fault.hits
        assert response.status == EXPECTED[code], (code, await response.text())
        await envelope(response)
        server.faults.clear()
        response = await client.get("/api/log/", params={"page_size": "1"}, headers=ADMIN)
        assert (await response.json())["data"]["total"] == 6, ("stored after", code)


def ndjson_lines(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n"), "every line is whole"
    return [json.loads(line) for line in text.splitlines()]


# 159 (a timeout), not 241: a window past the memory bound is read again in halves
# (tests/test_limits.py), so a single 241 does not cut the export short.
@pytest.mark.parametrize(("code", "when"), [(159, "before"), (62, "during")])
async def test_an_export_cut_short_ends_with_the_error_line_not_the_totals(
    api: tuple[ClickHouseHTTPServer, TestClient[Any, Any]], code: int, when: str
) -> None:
    server, client = api
    # The first window is sent; the second fails.
    fault = server.inject(code, match=EXPORT_SQL, skip=1, when=when)
    response = await client.get("/api/log/export", params={"format": "ndjson"}, headers=ADMIN)
    assert response.status == 200  # the answer had started
    text = await response.text()
    assert fault.hits == 1 and fault.seen == 2, text
    lines = ndjson_lines(text)
    assert not any("totals" in line for line in lines), text
    *items, last = lines
    assert set(last) == {"error"}, last
    assert "incomplete" in last["error"] and "INJECTED" not in last["error"]
    assert response.headers["X-Request-Id"] in last["error"]
    # what was sent is the newest rows, in order, each whole
    assert 0 < len(items) < 6
    assert [i["id"] for i in items] == list(range(6, 6 - len(items), -1))

    server.faults.clear()
    fault = server.inject(code, match=EXPORT_SQL, skip=1, when=when)
    response = await client.get("/api/log/export", params={"format": "csv"}, headers=ADMIN)
    text = await response.text()
    assert fault.hits == 1
    lines = text.splitlines()
    assert not any(line.startswith("#totals") for line in lines), text
    assert lines[-1].startswith("#error,") and "incomplete" in lines[-1], text
    assert lines[0].startswith("id,user_id,")
    assert 0 < len(lines) - 2 < 6

    server.faults.clear()
    response = await client.get("/api/log/export", params={"format": "ndjson"}, headers=ADMIN)
    *items, last = ndjson_lines(await response.text())
    assert last == {"totals": {"rows": 6, "quota": 21, "prompt_tokens": 300,
                               "completion_tokens": 600}}  # fmt: skip
    assert len(items) == 6


async def test_an_export_failing_before_its_first_row_is_an_envelope(
    api: tuple[ClickHouseHTTPServer, TestClient[Any, Any]],
) -> None:
    server, client = api
    fault = server.inject(241, match=EXPORT_SQL, when="during", times=0)
    response = await client.get("/api/log/export", params={"format": "ndjson"}, headers=ADMIN)
    assert fault.hits
    assert response.status == 503
    await envelope(response)
