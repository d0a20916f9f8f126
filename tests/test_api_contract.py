"""The seed document's example requests as contract tests, on both backends."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import ADMIN, WRITER, ingest, log_row, user_headers

SEED_ADMIN_ITEM_FIELDS = {
    "id", "user_id", "created_at", "type", "content", "username", "token_name", "model_name",
    "quota", "prompt_tokens", "completion_tokens", "use_time", "is_stream", "channel_id",
    "channel_name", "token_id", "group", "ip", "other",
}  # fmt: skip
SEED_USER_ITEM_FIELDS = {
    "id", "user_id", "created_at", "type", "content", "token_name", "model_name", "quota",
    "prompt_tokens", "completion_tokens",
}  # fmt: skip
SEED_RANGE = {"start_timestamp": "1640908800", "end_timestamp": "1640995200"}


def seed_rows() -> list[dict[str, Any]]:
    """Rows shaped like the seed's examples, inside the seed's time range."""
    return [
        log_row(id=1, user_id=1, created_at=1640995000, username="testuser", model_name="gpt-4",
                content="API call succeeded", other='{"model_ratio":15.0,"admin_info":{"n":1}}'),
        log_row(id=2, user_id=1, created_at=1640994000, type=4, username="testuser",
                content="API call error"),
        log_row(id=3, user_id=2, created_at=1640993000, username="other", token_name="x"),
        log_row(id=4, user_id=1, created_at=1640000000, username="testuser"),  # before range
    ]  # fmt: skip


async def get(client: Any, path: str, headers: dict[str, str] | None = None, **params: str) -> Any:
    response = await client.get(path, params=params, headers=headers or {})
    return response.status, await response.json()


async def test_get_all_logs_as_in_the_seed(client: Any) -> None:
    await ingest(client, seed_rows())
    status, body = await get(
        client, "/api/log/", ADMIN, p="1", page_size="20", type="2", username="testuser",
        token_name="api_token", model_name="gpt-4", channel="1", group="default", **SEED_RANGE,
    )  # fmt: skip
    assert status == 200 and body["success"] is True and body["message"] == ""
    assert body["data"]["total"] == 1 and body["data"]["page"] == 1
    assert body["data"]["page_size"] == 20
    (item,) = body["data"]["items"]
    assert set(item) >= SEED_ADMIN_ITEM_FIELDS
    assert item["id"] == 1 and item["channel_name"] == "OpenAI channel"
    assert json.loads(item["other"])["admin_info"] == {"n": 1}
    assert item["is_stream"] is False and item["created_at"] == 1640995000


async def test_get_my_logs_as_in_the_seed(client: Any) -> None:
    await ingest(client, seed_rows())
    status, body = await get(
        client, "/api/log/self", user_headers(1), p="1", page_size="20", type="2",
        token_name="api_token", model_name="gpt-4", group="default", **SEED_RANGE,
    )  # fmt: skip
    assert status == 200
    (item,) = body["data"]["items"]
    assert set(item) >= SEED_USER_ITEM_FIELDS
    assert not {"channel_id", "channel_name"} & set(item)
    assert json.loads(item["other"]) == {"model_ratio": 15.0}
    assert body["data"]["total"] == 1


async def test_user_filters_for_admin_fields_are_ignored_not_leaked(client: Any) -> None:
    await ingest(client, seed_rows())
    _, body = await get(client, "/api/log/self", user_headers(1), channel="99", username="zz")
    assert body["data"]["total"] == 3  # user 1's rows; channel/username are admin-only


async def test_search_all_logs_as_in_the_seed(client: Any) -> None:
    await ingest(client, seed_rows())
    status, body = await get(client, "/api/log/search", ADMIN, keyword="error")
    assert status == 200
    # "error" names log type 5 in the gateway's source; no row has it
    assert body["data"] == []
    _, body = await get(client, "/api/log/search", ADMIN, keyword="call ERROR")
    assert [item["id"] for item in body["data"]] == [2]
    assert {"id", "type", "content", "username", "created_at"} <= set(body["data"][0])


async def test_search_my_logs_as_in_the_seed(client: Any) -> None:
    await ingest(client, seed_rows())
    status, body = await get(client, "/api/log/self/search", user_headers(1), keyword="gpt-4")
    assert status == 200
    assert [item["id"] for item in body["data"]] == [1, 2, 4]
    assert all(item["user_id"] == 1 for item in body["data"])
    _, body = await get(client, "/api/log/self/search", user_headers(1), keyword="4")
    assert [item["id"] for item in body["data"]] == [2]  # a type number matches the type


async def test_token_lookup_as_in_the_seed(client: Any) -> None:
    await ingest(client, seed_rows())
    tokens = [{"id": 1, "key": "1234567890abcdef", "name": "api_token", "user_id": 1,
               "status": 1}]  # fmt: skip
    response = await client.post("/api/internal/tokens", json=tokens, headers=WRITER)
    assert (await response.json())["data"] == 1
    for key in ("sk-1234567890abcdef", "1234567890abcdef"):
        status, body = await get(client, "/api/log/token", key=key)
        assert status == 200 and body["success"] is True
        assert [item["id"] for item in body["data"]] == [1, 2, 4]
        assert {"id", "type", "content", "model_name", "quota", "created_at"} <= set(
            body["data"][0]
        )
        assert "channel_id" not in body["data"][0] and "other" not in body["data"][0]


async def test_token_lookup_paginates_past_the_classic_cap(client: Any) -> None:
    await ingest(client, [log_row(id=i, created_at=1640990000 + i) for i in range(1, 1201)])
    tokens = [{"id": 1, "key": "k" * 48, "name": "t", "user_id": 7, "status": 1}]
    await client.post("/api/internal/tokens", json=tokens, headers=WRITER)
    _, first = await get(client, "/api/log/token", key="k" * 48, page_size="1000")
    _, second = await get(client, "/api/log/token", key="k" * 48, p="2", page_size="1000")
    ids = [item["id"] for item in first["data"] + second["data"]]
    assert ids == list(range(1200, 0, -1))


async def test_unknown_and_disabled_keys_answer_the_same(client: Any) -> None:
    tokens = [{"id": 5, "key": "disabled-key", "name": "t", "user_id": 7, "status": 2}]
    await client.post("/api/internal/tokens", json=tokens, headers=WRITER)
    answers = [await get(client, "/api/log/token", key=k) for k in ("disabled-key", "unknown")]
    assert answers[0] == answers[1]
    assert answers[0] == (
        404,
        {"success": False, "message": "Token does not exist or no permission", "data": None},
    )


async def test_token_upsert_by_id_replaces_key_and_status(client: Any) -> None:
    await ingest(client, [log_row(id=1, token_id=9)])
    first = [{"id": 9, "key": "old-key", "name": "t", "user_id": 7, "status": 1}]
    second = [{"id": 9, "key": "new-key", "name": "t", "user_id": 7, "status": 1}]
    await client.post("/api/internal/tokens", json=first, headers=WRITER)
    await client.post("/api/internal/tokens", json=second, headers=WRITER)
    assert (await get(client, "/api/log/token", key="old-key"))[0] == 404
    assert (await get(client, "/api/log/token", key="new-key"))[0] == 200


async def test_token_keys_are_stored_only_hashed(client: Any, store: Any) -> None:
    secret = "sk-" + "s3cr3t" * 8
    tokens = [{"id": 3, "key": secret, "name": "t", "user_id": 7, "status": 1}]
    await client.post("/api/internal/tokens", json=tokens, headers=WRITER)
    rows = await store.query("SELECT * FROM tokens")
    flat = " ".join(str(value) for row in rows.rows for value in row)
    assert secret[3:] not in flat and len(rows.rows) == 1


async def test_cors_only_on_the_token_route(client: Any) -> None:
    origin = {"Origin": "https://third.party"}
    preflight = {**origin, "Access-Control-Request-Method": "GET"}
    response = await client.options("/api/log/token", headers=preflight)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    response = await client.get("/api/log/token", params={"key": "nope"}, headers=origin)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    response = await client.get("/api/log/", headers={**ADMIN, **origin})
    assert "Access-Control-Allow-Origin" not in response.headers
    response = await client.options("/api/log/", headers=preflight)
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_every_response_is_an_envelope_with_a_request_id(client: Any) -> None:
    for path, headers in (("/api/log/", {}), ("/nope", {}), ("/api/log/self", ADMIN)):
        response = await client.get(path, headers=headers)
        body = await response.json()
        assert set(body) == {"success", "message", "data"}
        assert response.headers["X-Request-Id"]
    response = await client.get("/no/such/route")
    assert response.status == 404 and (await response.json())["success"] is False


async def test_unknown_and_disabled_keys_do_the_same_engine_work(
    make_client: Any, engine_calls: list[str]
) -> None:
    client = await make_client()
    tokens = [{"id": 5, "key": "disabled-key", "name": "t", "user_id": 7, "status": 2}]
    await client.post("/api/internal/tokens", json=tokens, headers=WRITER)
    work = []
    for key in ("disabled-key", "unknown-key"):
        engine_calls.clear()
        assert (await client.get("/api/log/token", params={"key": key})).status == 404
        work.append(list(engine_calls))
    assert work[0] == work[1] == ["query"]  # one lookup by hash, nothing after it


async def test_bad_input_never_reaches_the_engine(
    make_client: Any, engine_calls: list[str]
) -> None:
    client = await make_client()
    engine_calls.clear()
    huge = "x" * 20_000
    for path, params in (
        ("/api/log/", {"username": huge}),
        ("/api/log/search", {"keyword": huge}),
        ("/api/log/", {"p": "x"}),
        ("/api/log/token", {"key": huge}),
    ):
        response = await client.get(path, params=params, headers=ADMIN)
        assert response.status == 400
        assert (await response.json())["success"] is False
    response = await client.post(
        "/api/internal/logs",
        data="[" * 50_000,
        headers={**WRITER, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert engine_calls == []
