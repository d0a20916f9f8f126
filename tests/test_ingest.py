"""Ingest: JSON and NDJSON, whole-batch validation, ids, idempotent retries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.ingest import IdGenerator
from tests.conftest import ADMIN, WRITER, bearer, log_row, make_token


async def count(store: Any) -> int:
    return int((await store.query("SELECT count() FROM logs")).scalar())


async def post(
    client: Any, body: Any, content_type: str = "application/json", headers: Any = None
) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    response = await client.post(
        "/api/internal/logs",
        data=data,
        headers={**(WRITER if headers is None else headers), "Content-Type": content_type},
    )
    return response.status, await response.json()


async def test_json_array_and_ndjson(client: Any, store: Any) -> None:
    assert await post(client, [log_row(), log_row()]) == (
        200, {"success": True, "message": "", "data": 2}
    )  # fmt: skip
    ndjson = "\n".join(json.dumps(log_row(content=f"n{i}")) for i in range(3)) + "\n"
    status, body = await post(client, ndjson, "application/x-ndjson")
    assert (status, body["data"]) == (200, 3)
    assert await count(store) == 5


async def test_ndjson_lines_end_only_at_newline(client: Any, store: Any) -> None:
    # JSON strings may hold these unescaped; they do not end an NDJSON line.
    texts = ["next\x85line", "line\u2028separator", "para\u2029graph", "fs\x1cgs\x1d", "cr\r"]
    lines = [
        json.dumps(log_row(id=i + 1, content=t), ensure_ascii=False) for i, t in enumerate(texts)
    ]
    status, body = await post(client, "\r\n".join(lines) + "\r\n", "application/x-ndjson")
    assert (status, body["data"]) == (200, len(texts))
    rows = await store.query("SELECT content FROM logs ORDER BY id")
    assert [row[0] for row in rows.rows] == texts


async def test_identical_batch_retried_is_stored_once(client: Any, store: Any) -> None:
    batch = [log_row(content=f"row {i}") for i in range(50)]  # no ids: assigned each time
    for _ in range(10):
        status, body = await post(client, batch)
        assert (status, body["data"]) == (200, 50)
    assert await count(store) == 50
    status, _ = await post(client, [*batch, log_row(content="one more")])
    assert await count(store) == 101  # a different batch is a different insert


async def test_assigned_ids_are_unique_and_grow(client: Any) -> None:
    await post(client, [log_row(content="a", created_at=1700000000)])
    await post(client, [log_row(content="b", created_at=1700000000)])
    response = await client.get("/api/log/", headers=ADMIN)
    items = (await response.json())["data"]["items"]
    assert [i["content"] for i in items] == ["b", "a"]  # same second: the later id first
    assert items[0]["id"] > items[1]["id"]


def test_id_generator_is_monotonic_across_a_clock_step_back() -> None:
    times = iter([1.8e9, 1.8e9, 1.8e9 - 1, 1.8e9 + 1])
    gen = IdGenerator(node=3, clock=lambda: next(times))
    ids = gen.next_ids(1) + gen.next_ids(1) + gen.next_ids(1) + gen.next_ids(1)
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert all((i >> 6) & 63 == 3 for i in ids)  # 6 node bits above 6 sequence bits


async def test_batch_spanning_many_days_is_stored_whole(make_client: Any, store: Any) -> None:
    # More days than an insert may create partitions: stored in chunks, each with its own
    # deduplication token, so a retry completes it exactly once. (The default day limit
    # refuses such a batch: tests/test_ingest_bounds.py.)
    client = await make_client(ingest_max_days_per_batch=366)
    rows = [log_row(created_at=1600000000 + day * 86400) for day in range(250)]
    status, body = await post(client, rows)
    assert (status, body["data"]) == (200, 250)
    assert await count(store) == 250
    await post(client, rows)
    assert await count(store) == 250


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([log_row(), log_row(quota="12")], "row 2: field 'quota' must be an integer"),
        ([log_row(), {**log_row(), "user_id": None}], "row 2: field 'user_id' is required"),
        ([log_row(created_at=-5)], "row 1: field 'created_at' must be between"),
        ([log_row(is_stream="yes")], "row 1: field 'is_stream' must be true or false"),
        ([log_row(type=True)], "row 1: field 'type' must be an integer"),
        ([log_row(other=5)], "row 1: field 'other' must be a JSON string"),
        ([log_row(username=["x"])], "row 1: field 'username' must be a string"),
        ([log_row(), 3], "row 2: expected a JSON object"),
        ([], "body: the batch is empty"),
        ({"user_id": 1}, "body: expected a JSON array of objects"),
    ],
)
async def test_malformed_batch_is_rejected_whole(
    client: Any, store: Any, rows: Any, message: str
) -> None:
    status, body = await post(client, rows)
    assert status == 400 and body["success"] is False
    assert body["message"].startswith(message)
    assert await count(store) == 0


async def test_broken_json_and_ndjson(client: Any, store: Any) -> None:
    assert (await post(client, "[{"))[0] == 400
    status, body = await post(client, '{"a":1}\n{oops', "application/x-ndjson")
    assert status == 400 and "line 2" in body["message"]
    status, body = await post(client, "[" * 100000 + "]" * 100000)
    assert status == 400
    assert await count(store) == 0


@pytest.mark.parametrize("depth", [2_000, 100_000])
async def test_deeply_nested_json_is_a_clean_400(
    client: Any, store: Any, engine_calls: list[str], depth: int
) -> None:
    # Well-formed, only deep: at the top, inside `other`, and on an NDJSON line.
    nested = "[" * depth + "]" * depth
    row = json.dumps(log_row())[:-1] + ', "other": ' + nested + "}"
    engine_calls.clear()
    for body, content_type, message in (
        (nested, "application/json", "body: JSON nested too deeply"),
        ("[" + row + "]", "application/json", "body: JSON nested too deeply"),
        (
            json.dumps(log_row()) + "\n" + row,
            "application/x-ndjson",
            "body: line 2 is nested too deeply",
        ),
    ):
        status, answer = await post(client, body, content_type)
        assert (status, answer["message"], answer["data"]) == (400, message, None)
    assert engine_calls == [] and await count(store) == 0


async def test_body_over_the_limit_is_413(make_client: Any, store: Any) -> None:
    client = await make_client(max_body_bytes=10_000)
    status, body = await post(client, [log_row(content="x" * 20_000)])
    assert status == 413 and body["success"] is False
    assert await count(store) == 0


async def test_ingest_needs_the_write_scope(client: Any, store: Any) -> None:
    admin_without_scope = bearer(make_token(1, 100, "root"))
    assert (await post(client, [log_row()], headers=admin_without_scope))[0] == 403
    assert (await post(client, [log_row()], headers={}))[0] == 401
    assert await count(store) == 0


async def test_tokens_validation(client: Any) -> None:
    response = await client.post(
        "/api/internal/tokens", json=[{"id": 1, "name": "t", "user_id": 1}], headers=WRITER
    )
    body = await response.json()
    assert response.status == 400 and body["message"] == "row 1: field 'key' is required"
