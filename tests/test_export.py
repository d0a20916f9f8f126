"""Export: every matching row, newest first, in CSV or NDJSON, with a totals line; user
exports carry the user view only; windows planned from the rollup tile the range; a
client that hangs up frees the engine."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.export import plan_windows
from service.params import LogFilter
from tests import brute
from tests.conftest import ADMIN, WRITER, log_row, truncate_all, user_headers
from tests.expected import ADMIN_FIELDS, USER_FIELDS, assert_user_view

BASE = 1_790_000_000
_ids = itertools.count(1)


def row(**fields: Any) -> dict[str, Any]:
    fields.setdefault("id", next(_ids))
    return log_row(**fields)


async def post_rows(client: TestClient[Any, Any], rows: list[dict[str, Any]]) -> None:
    if rows:
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        assert response.status == 200, await response.text()


def parse_ndjson(text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines()]
    assert "totals" in lines[-1], "the last line is the totals"
    return lines[:-1], lines[-1]["totals"]


def parse_csv(text: str) -> tuple[list[str], list[list[str]], str]:
    lines = text.splitlines(keepends=True)
    assert lines[-1].startswith("#totals,")
    records = list(csv.reader(io.StringIO("".join(lines[:-1]))))
    return records[0], records[1:], lines[-1].strip()


def totals_of(rows: list[Any]) -> dict[str, int]:
    return {
        "rows": len(rows),
        "quota": sum(r["quota"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
    }


SAMPLE = [
    dict(user_id=7, created_at=BASE - 5, content='multi\nline, "quoted"', quota=3,
         other='{"admin_info":{"node":"n1"},"model_ratio":2}', is_stream=True),
    dict(user_id=7, created_at=BASE - 5, token_name="=HYPERLINK(1)", quota=-4),
    dict(user_id=8, created_at=BASE - 86400, model_name="claude", quota=10**12),
    dict(user_id=7, created_at=BASE - 3 * 86400, type=5, username="Ünïcode 用户",
         other='{"reject_reason":"quota","audit_info":{"by":1},"x":1}'),
]  # fmt: skip


async def test_ndjson_export_is_every_row_newest_first_with_totals(client: Any) -> None:
    rows = [row(**fields) for fields in SAMPLE]
    await post_rows(client, rows)
    response = await client.get("/api/log/export", params={"format": "ndjson"}, headers=ADMIN)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["Content-Disposition"]
    assert ".ndjson" in response.headers["Content-Disposition"]
    items, totals = parse_ndjson(await response.text())
    expected = brute.newest_first(rows)
    assert items == [dict(r) for r in expected]
    assert totals == totals_of(rows)


async def test_csv_export_round_trips_with_header_and_totals(client: Any) -> None:
    rows = [row(**fields) for fields in SAMPLE]
    await post_rows(client, rows)
    response = await client.get("/api/log/export", headers=ADMIN)  # csv is the default
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    header, records, totals = parse_csv(await response.text())
    assert header == list(ADMIN_FIELDS)
    expected = brute.newest_first(rows)
    assert [int(r[0]) for r in records] == [r["id"] for r in expected]
    for record, source in zip(records, expected, strict=True):
        got = dict(zip(header, record, strict=True))
        assert got["content"] == source["content"]
        assert got["is_stream"] == ("true" if source["is_stream"] else "false")
        assert int(got["quota"]) == source["quota"]
        assert got["username"] == source["username"]
        # text that a spreadsheet would run as a formula is defused
        name = source["token_name"]
        assert got["token_name"] == ("'" + name if name.startswith("=") else name)
    t = totals_of(rows)
    assert totals == (
        f"#totals,rows={t['rows']},quota={t['quota']},"
        f"prompt_tokens={t['prompt_tokens']},completion_tokens={t['completion_tokens']}"
    )


async def test_user_export_has_the_user_view_only(client: Any) -> None:
    rows = [row(**fields) for fields in SAMPLE]
    await post_rows(client, rows)
    response = await client.get(
        "/api/log/self/export", params={"format": "ndjson", "username": "x", "channel": "9"},
        headers=user_headers(7),
    )  # fmt: skip
    items, totals = parse_ndjson(await response.text())
    mine = brute.newest_first(r for r in rows if r["user_id"] == 7)
    assert [i["id"] for i in items] == [r["id"] for r in mine]
    by_id = {r["id"]: r for r in rows}
    for item in items:
        assert_user_view(item, by_id[item["id"]])
    assert totals == totals_of(mine)
    response = await client.get("/api/log/self/export", headers=user_headers(7))
    header, records, _ = parse_csv(await response.text())
    assert header == list(USER_FIELDS) and len(records) == len(mine)
    for record in records:
        item = dict(zip(header, record, strict=True))
        item["id"] = int(item["id"])
        assert_user_view(item, by_id[item["id"]])


async def test_export_filters_and_rules(client: Any) -> None:
    rows = [row(**fields) for fields in SAMPLE]
    await post_rows(client, rows)
    q = {"format": "ndjson", "start_timestamp": str(BASE - 86400), "type": "2"}
    items, _ = parse_ndjson(await (await client.get("/api/log/export", params=q,
                                                    headers=ADMIN)).text())  # fmt: skip
    assert sorted(i["id"] for i in items) == sorted(
        r["id"] for r in rows if r["created_at"] >= BASE - 86400 and r["type"] == 2
    )
    response = await client.get("/api/log/export", params={"format": "xlsx"}, headers=ADMIN)
    body = await response.json()
    assert response.status == 400 and "'format'" in body["message"]
    assert (await client.get("/api/log/export", headers=user_headers(7))).status == 403
    assert (await client.get("/api/log/self/export")).status == 401


async def test_empty_export_still_has_header_and_totals(client: Any) -> None:
    response = await client.get("/api/log/export", headers=ADMIN)
    assert await response.text() == (
        ",".join(ADMIN_FIELDS) + "\n#totals,rows=0,quota=0,prompt_tokens=0,completion_tokens=0\n"
    )


# --- many windows: property against brute force ----------------------------------------

HYPOTHESIS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

export_rows = st.lists(
    st.builds(
        lambda user_id, created_at, quota, type_: row(
            user_id=user_id, created_at=created_at, quota=quota, type=type_
        ),
        st.sampled_from([1, 2]),
        # busy minutes (ties on created_at too), sparse days, and the first second of a
        # minute or a day (where windows are cut)
        st.one_of(
            st.integers(BASE - 300, BASE),
            st.integers(BASE - 5 * 86400, BASE),
            st.builds(lambda m: (BASE // 60 - m) * 60, st.integers(0, 5)),
            st.builds(lambda d: (BASE // 86400 - d) * 86400, st.integers(0, 4)),
        ),
        st.integers(0, 1000),
        st.sampled_from([2, 5]),
    ),
    max_size=60,
)


@HYPOTHESIS
@given(
    rows=export_rows,
    window=st.integers(1, 7),
    q=st.fixed_dictionaries(
        {},
        optional={
            "start_timestamp": st.integers(BASE - 5 * 86400, BASE),
            "end_timestamp": st.integers(BASE - 86400, BASE),
            "type": st.sampled_from([2, 5]),
            "request_id": st.just(""),
        },
    ),
)
def test_windowed_export_equals_brute_force(
    engine: Any, settings: Any, rows: Any, window: int, q: dict[str, Any]
) -> None:
    if q.get("start_timestamp", 0) > q.get("end_timestamp", 2**32):
        q["start_timestamp"], q["end_timestamp"] = q["end_timestamp"], q["start_timestamp"]
    app_settings = replace(settings, export_window_rows=window, export_block_rows=3)

    async def body() -> None:
        await truncate_all(engine)
        async with TestClient(TestServer(create_app(app_settings, store=engine))) as client:
            await post_rows(client, rows)
            params = {k: str(v) for k, v in q.items()} | {"format": "ndjson"}
            for path, headers, uid in (
                ("/api/log/export", ADMIN, None),
                ("/api/log/self/export", user_headers(1), 1),
            ):
                response = await client.get(path, params=params, headers=headers)
                items, totals = parse_ndjson(await response.text())
                expected = brute.newest_first(r for r in rows if brute.matches(r, q, user_id=uid))
                assert [i["id"] for i in items] == [r["id"] for r in expected]
                assert totals == totals_of(expected)

    asyncio.run(body())


@pytest.mark.parametrize(("lo", "hi"), [(None, None), (BASE - 86400 - 7, BASE + 1), (None, BASE)])
async def test_plan_windows_tile_the_range(store: Any, lo: Any, hi: Any) -> None:
    client_rows = [
        (i, 1, BASE - (i * 37) % (3 * 86400)) for i in range(1, 400)
    ]  # (id, user, created_at)
    await store.insert("logs", client_rows, ["id", "user_id", "created_at"])
    windows = await plan_windows(store, LogFilter(), lo, hi, window_rows=50)
    assert len(windows) > 3
    assert windows[0][1] == hi and windows[-1][0] == lo
    for (newer_lo, _), (_, older_hi) in itertools.pairwise(windows):
        assert newer_lo == older_hi, "consecutive windows share their bound"
    for w_lo, w_hi in windows:
        assert w_lo is None or w_hi is None or w_lo < w_hi


# --- a client that hangs up ----------------------------------------------------------------


async def test_client_hanging_up_frees_the_engine(make_client: Any, store: Any) -> None:
    await store.command(
        "INSERT INTO logs (id, user_id, created_at, content) "
        "SELECT number + 1, 1, toDateTime({base:UInt32} - number, 'UTC'), repeat('x', 500) "
        "FROM numbers(60000)",
        {"base": BASE},
    )
    client = await make_client(export_block_rows=500, export_window_rows=20_000)
    for _ in range(6):  # more than the engine's worker threads
        response = await client.get("/api/log/export", headers=ADMIN)
        assert response.status == 200
        await response.content.readexactly(10_000)  # a few blocks, then hang up
        response.close()
    # every stream was released: the engine still answers, on every worker
    for _ in range(8):
        response = await asyncio.wait_for(client.get("/api/log/", headers=ADMIN), timeout=20)
        assert response.status == 200
    response = await client.get("/api/log/export", params={"format": "ndjson"}, headers=ADMIN)
    items, totals = parse_ndjson(await response.text())
    assert totals["rows"] == len(items) == 60000
