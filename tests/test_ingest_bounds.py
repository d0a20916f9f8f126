"""Ingest bounds (hostile writers): text lengths, invalid Unicode, all-or-nothing batches,
future timestamps, days per batch, per-row bounds of summed figures, blank token keys.
Each case is refused with a 400 naming the row (counted from 1) and field, and nothing of
the batch is stored."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from service.ingest import DEFAULT_MAX_QUOTA, DEFAULT_MAX_TOKENS
from tests.conftest import ADMIN, WRITER, log_row

DAY = 86400


async def count(store: Any) -> int:
    return int((await store.query("SELECT count() FROM logs")).scalar())


async def post(
    client: Any, body: Any, path: str = "/api/internal/logs", ndjson: bool = False
) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    content_type = "application/x-ndjson" if ndjson else "application/json"
    response = await client.post(path, data=data, headers={**WRITER, "Content-Type": content_type})
    return response.status, await response.json()


def with_raw(row: dict[str, Any], field: str, raw_json: str) -> str:
    """``row`` as JSON with ``field`` set to the literal JSON text ``raw_json``."""
    return (
        json.dumps({k: v for k, v in row.items() if k != field})[:-1] + f', "{field}": {raw_json}}}'
    )


async def test_text_over_the_limits_is_refused(make_client: Any, store: Any) -> None:
    client = await make_client(ingest_max_content_chars=20, ingest_max_text_chars=14)
    for field, value, limit in (("content", "x" * 21, 20), ("model_name", "x" * 15, 14)):
        status, body = await post(client, [log_row(), log_row(**{field: value})])
        assert status == 400 and body["data"] is None
        assert body["message"] == f"row 2: field '{field}' is longer than {limit} characters"
    assert (await post(client, [log_row(content="x" * 20, model_name="x" * 14)]))[0] == 200
    assert await count(store) == 1


async def test_default_content_limit(client: Any, store: Any) -> None:
    status, body = await post(client, [log_row(content="x" * 65_537)])
    assert (status, body["message"]) == (
        400,
        "row 1: field 'content' is longer than 65536 characters",
    )
    assert await count(store) == 0


@pytest.mark.parametrize("field", ["content", "username", "other"])
@pytest.mark.parametrize("ndjson", [False, True])
async def test_lone_surrogate_is_a_400_naming_row_and_field(
    client: Any, store: Any, field: str, ndjson: bool
) -> None:
    raw = '{"a": "\\ud800"}' if field == "other" else '"ok\\udfff"'
    rows = [json.dumps(log_row()), with_raw(log_row(), field, raw)]
    body_text = "\n".join(rows) if ndjson else "[" + ", ".join(rows) + "]"
    status, body = await post(client, body_text, ndjson=ndjson)
    assert status == 400 and body["success"] is False
    assert body["message"] == f"row 2: field '{field}' is not valid Unicode (a lone surrogate)"
    assert await count(store) == 0


async def test_lone_surrogate_in_a_token_is_a_400(client: Any) -> None:
    for field, raw in (("key", '"sk-abc\\ud800"'), ("name", '"\\udc00"')):
        row = {"id": 1, "key": "sk-abcdef", "name": "t", "user_id": 7}
        status, body = await post(
            client, "[" + with_raw(row, field, raw) + "]", "/api/internal/tokens"
        )
        assert status == 400, body
        assert body["message"] == f"row 1: field '{field}' is not valid Unicode (a lone surrogate)"


async def test_many_day_batch_with_a_bad_row_stores_nothing(make_client: Any, store: Any) -> None:
    # The attack of issue 17: 100 rows on 100 days, a lone surrogate on day 95.
    client = await make_client(ingest_max_days_per_batch=366)
    base = int(time.time()) - 200 * DAY
    rows = [json.dumps(log_row(created_at=base + d * DAY)) for d in range(100)]
    rows[94] = with_raw(log_row(created_at=base + 94 * DAY), "content", '"\\ud800"')
    status, body = await post(client, "[" + ",".join(rows) + "]")
    assert (status, body["message"]) == (
        400, "row 95: field 'content' is not valid Unicode (a lone surrogate)"
    )  # fmt: skip
    assert await count(store) == 0
    good = [log_row(created_at=base + d * DAY) for d in range(100)]
    for _ in range(2):  # stored whole, and a retry stores nothing twice
        assert (await post(client, good))[0] == 200
        assert await count(store) == 100


async def test_days_per_batch_limit(client: Any, store: Any) -> None:
    base = int(time.time()) - 400 * DAY
    status, body = await post(client, [log_row(created_at=base + d * DAY) for d in range(32)])
    assert status == 400 and body["message"].startswith(
        "body: the batch spans 32 days, more than the limit of 31"
    )
    assert await count(store) == 0
    assert (await post(client, [log_row(created_at=base + d * DAY) for d in range(31)]))[0] == 200
    assert await count(store) == 31


async def test_future_created_at_is_refused(make_client: Any, store: Any) -> None:
    client = await make_client(ingest_clock_skew_seconds=600)
    now = int(time.time())
    for future in (now + 3600, 2**32 - 1, 4102444800):  # an hour ahead, the maximum, 2100
        status, body = await post(client, [log_row(), log_row(created_at=future)])
        assert status == 400
        assert body["message"].startswith("row 2: field 'created_at' must be between 1 and ")
    assert await count(store) == 0
    assert (await post(client, [log_row(created_at=now + 300)]))[0] == 200  # inside the skew
    assert await count(store) == 1


@pytest.mark.parametrize(
    ("field", "bound"),
    [("quota", DEFAULT_MAX_QUOTA), ("prompt_tokens", DEFAULT_MAX_TOKENS),
     ("completion_tokens", DEFAULT_MAX_TOKENS)],
)  # fmt: skip
async def test_summed_figures_are_bounded_per_row(
    client: Any, store: Any, field: str, bound: int
) -> None:
    for value in (2**63 - 1, bound + 1, -bound - 1):
        status, body = await post(client, [log_row(**{field: value})])
        assert (status, body["message"]) == (
            400, f"row 1: field '{field}' must be between {-bound} and {bound}"
        )  # fmt: skip
    assert await count(store) == 0


async def test_sums_at_the_bound_agree_between_stat_and_export(client: Any, store: Any) -> None:
    rows = [
        log_row(quota=DEFAULT_MAX_QUOTA, user_id=9),
        log_row(quota=DEFAULT_MAX_QUOTA, user_id=9),
    ]
    assert (await post(client, rows))[0] == 200
    response = await client.get("/api/log/stat", params={"type": "2"}, headers=ADMIN)
    assert (await response.json())["data"]["quota"] == 2 * DEFAULT_MAX_QUOTA
    response = await client.get("/api/log/export", params={"format": "csv"}, headers=ADMIN)
    text = await response.text()
    assert f"#totals,rows=2,quota={2 * DEFAULT_MAX_QUOTA}," in text


@pytest.mark.parametrize("key", ["", "   ", "sk-", " sk- ", "\t", "sk-   ", "sk-\t "])
async def test_blank_token_keys_are_refused(client: Any, key: str) -> None:
    tokens = [{"id": 1, "key": "sk-good", "user_id": 7}, {"id": 2, "key": key, "user_id": 7}]
    status, body = await post(client, tokens, "/api/internal/tokens")
    assert status == 400 and body["message"].startswith(
        "row 2: field 'key' must have at least 1 characters"
    )
    response = await client.get("/api/log/token", params={"key": "sk-"})
    assert response.status in (400, 404)


@pytest.mark.parametrize("key", ["", "sk-", "sk-   "])
async def test_a_blank_key_stored_before_the_bound_finds_nothing(
    make_client: Any, key: str
) -> None:
    # As a service without the bound (or an import of such a token) stored it: the key's
    # hash is that of the blank key, which any caller could send.
    lenient = await make_client(ingest_min_token_key_chars=0)
    tokens = [{"id": 5, "key": key, "name": "blank", "user_id": 7, "status": 1}]
    assert (await post(lenient, tokens, "/api/internal/tokens"))[0] == 200
    assert (await post(lenient, [log_row(token_id=5, content="private")]))[0] == 200
    client = await make_client()
    for given in ("", "sk-", " sk- ", "sk-   "):
        response = await client.get("/api/log/token", params={"key": given})
        body = await response.json()
        assert response.status == 400 and body["data"] is None, (given, body)
        assert "key" in body["message"]
    response = await client.get("/api/log/token", headers={"Authorization": "Bearer sk-"})
    assert response.status in (400, 401), await response.text()
    assert "private" not in await response.text()


async def test_keys_shorter_than_the_minimum_are_not_looked_up(make_client: Any) -> None:
    lenient = await make_client()
    tokens = [{"id": 6, "key": "sk-abc", "name": "short", "user_id": 7, "status": 1}]
    assert (await post(lenient, tokens, "/api/internal/tokens"))[0] == 200
    assert (await post(lenient, [log_row(token_id=6, content="private")]))[0] == 200
    found = await lenient.get("/api/log/token", params={"key": "sk-abc"})
    assert found.status == 200  # the default minimum (1) admits it
    strict = await make_client(ingest_min_token_key_chars=8)
    response = await strict.get("/api/log/token", params={"key": "sk-abc"})
    body = await response.json()
    assert response.status == 404 and body["data"] is None, body


async def test_minimum_token_key_length_is_a_setting(make_client: Any) -> None:
    client = await make_client(ingest_min_token_key_chars=8)
    tokens = [{"id": 1, "key": "sk-1234567", "user_id": 7}]
    status, body = await post(client, tokens, "/api/internal/tokens")
    assert status == 400 and "row 1: field 'key' must have at least 8" in body["message"]
    tokens = [{"id": 1, "key": "sk-12345678", "user_id": 7}]
    assert (await post(client, tokens, "/api/internal/tokens"))[0] == 200
