"""The seed's example requests, end to end on the embedded engine."""

from __future__ import annotations

from tests.conftest import ADMIN, ingest, log_row, user_headers


async def test_admin_list_returns_seed_fields(client):  # type: ignore[no-untyped-def]
    await ingest(client, [log_row()])
    response = await client.get("/api/log/?p=1&page_size=20&type=2", headers=ADMIN)
    body = await response.json()
    assert response.status == 200
    assert body["success"] is True and body["message"] == ""
    item = body["data"]["items"][0]
    for field in (
        "id", "user_id", "created_at", "type", "content", "username", "token_name",
        "model_name", "quota", "prompt_tokens", "completion_tokens", "use_time",
        "is_stream", "channel_id", "channel_name", "token_id", "group", "ip", "other",
    ):  # fmt: skip
        assert field in item, field
    assert body["data"]["total"] == 1
    assert body["data"]["page"] == 1 and body["data"]["page_size"] == 20


async def test_user_sees_only_own_rows(client):  # type: ignore[no-untyped-def]
    await ingest(client, [log_row(user_id=7), log_row(user_id=8)])
    response = await client.get("/api/log/self", headers=user_headers(7))
    body = await response.json()
    assert [item["user_id"] for item in body["data"]["items"]] == [7]
    assert "channel_id" not in body["data"]["items"][0]
