"""Headers of every answer, the token route's CORS, the parser's own 400s and the metrics
token (issue 17, point 9). Each assertion fails on the behaviour the issue measured."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import ADMIN, WRITER, bearer, held_clock, ingest, log_row, user_headers

TOKEN_KEY = "k" * 48


async def _with_token(client: Any) -> None:
    tokens = [{"id": 1, "key": "sk-" + TOKEN_KEY, "name": "t", "user_id": 7, "status": 1}]
    response = await client.post("/api/internal/tokens", json=tokens, headers=WRITER)
    assert response.status == 200


async def test_every_answer_is_nosniff_without_a_version_banner(make_client: Any) -> None:
    client = await make_client()
    await ingest(client, [log_row()])
    answers = [
        await client.get("/api/log/", headers=ADMIN),
        await client.get("/api/log/"),  # 401
        await client.get("/api/log/token", params={"key": "nope"}),
        await client.get(
            "/api/log/self/export", params={"format": "ndjson"}, headers=user_headers(7)
        ),
        await client.get("/no/such/route"),
        await client.get("/healthz"),
    ]
    for response in answers:
        await response.read()
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.url
        server = response.headers.get("Server", "")
        assert "aiohttp" not in server.lower() and "python" not in server.lower(), server


async def test_authenticated_answers_and_the_token_lookup_are_not_stored(
    make_client: Any,
) -> None:
    client = await make_client()
    await _with_token(client)
    for path, params, headers in (
        ("/api/log/", {}, ADMIN),
        ("/api/log/self/stat", {}, user_headers(7)),
        ("/api/log/token", {"key": TOKEN_KEY}, {}),
        ("/api/log/token", {"key": "unknown"}, {}),
        ("/api/log/self", {}, {}),
    ):
        response = await client.get(path, params=params, headers=headers)
        assert response.headers.get("Cache-Control") == "no-store", (path, response.status)


async def test_401_says_how_to_authenticate(make_client: Any) -> None:
    client = await make_client()
    for headers in ({}, bearer("not.a.jwt")):
        response = await client.get("/api/log/self", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


async def test_ndjson_export_names_its_charset(make_client: Any) -> None:
    client = await make_client()
    await ingest(client, [log_row(content="naïve ✓")])
    response = await client.get(
        "/api/log/self/export", params={"format": "ndjson"}, headers=user_headers(7)
    )
    assert response.status == 200
    assert response.headers["Content-Type"].replace(" ", "").lower().endswith("charset=utf-8")
    assert "naïve ✓" in (await response.read()).decode("utf-8")


@pytest.mark.parametrize("origin", ["https://third.party", "null"])
async def test_token_route_answers_a_literal_star_never_the_origin(
    make_client: Any, origin: str
) -> None:
    client = await make_client(token_lookup_rate=1, clock=held_clock())
    await _with_token(client)
    ok = await client.get("/api/log/token", params={"key": TOKEN_KEY}, headers={"Origin": origin})
    assert ok.status == 200
    limited = await client.get(
        "/api/log/token", params={"key": TOKEN_KEY}, headers={"Origin": origin}
    )
    assert limited.status == 429  # an error answer carries the CORS headers too
    for response in (ok, limited):
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        exposed = {
            h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
        }
        assert {"retry-after", "x-request-id"} <= exposed
    assert limited.headers["Retry-After"]


async def test_listed_origins_are_named_with_vary_and_null_never(make_client: Any) -> None:
    client = await make_client(cors_origins=("https://a.example", "null"))
    for origin, expected in (
        ("https://a.example", "https://a.example"),
        ("https://b.example", None),
        ("null", None),
    ):
        response = await client.get(
            "/api/log/token", params={"key": "x"}, headers={"Origin": origin}
        )
        assert response.status == 404
        assert response.headers.get("Access-Control-Allow-Origin") == expected, origin
        assert "origin" in response.headers["Vary"].lower()
    preflight = {"Origin": "null", "Access-Control-Request-Method": "GET"}
    response = await client.options("/api/log/token", headers=preflight)
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_preflight_allows_only_the_headers_the_route_reads(make_client: Any) -> None:
    client = await make_client()
    asked = {"Origin": "https://x.example", "Access-Control-Request-Method": "GET"}
    response = await client.options(
        "/api/log/token", headers={**asked, "Access-Control-Request-Headers": "authorization"}
    )
    assert response.status in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert "authorization" in allowed and "x-evil" not in allowed
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert "DELETE" not in methods and "POST" not in methods
    refused = await client.options(
        "/api/log/token",
        headers={**asked, "Access-Control-Request-Headers": "authorization, x-evil"},
    )
    body = await refused.json()
    assert refused.status == 403 and body["success"] is False and "x-evil" in body["message"]
    assert refused.headers["Access-Control-Allow-Origin"] == "*"  # readable by the page
    refused = await client.options(
        "/api/log/token", headers={**asked, "Access-Control-Request-Method": "DELETE"}
    )
    assert refused.status == 403


async def _raw(client: Any, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/log/token?key=sk-SECRETSECRET HTTP/1.1\r\nHost: x\r\nX-A: \x00b\r\n\r\n",
        b"GET /api/log/token?key=sk-SECRETSECRET HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        b"G\x01T /api/log/token?key=sk-SECRETSECRET HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/log/token?key=sk-SECRETSECRET HTTP/7.7\r\nHost: x\r\n\r\n",
    ],
)
async def test_parser_errors_are_envelopes_without_the_request(
    make_client: Any, request_bytes: bytes
) -> None:
    client = await make_client()
    answer = await _raw(client, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    assert b"SECRET" not in answer and b"/api/log/token" not in answer
    assert b"aiohttp" not in head.lower()
    assert b"application/json" in head.lower() and b"nosniff" in head.lower()
    document = json.loads(body)
    assert document["success"] is False and document["data"] is None and document["message"]


async def test_metrics_behind_a_token_when_one_is_set(make_client: Any) -> None:
    open_client = await make_client()
    assert (await open_client.get("/metrics")).status == 200
    scrape = "scrape-" + str(time.time_ns())
    client = await make_client(metrics_token=scrape)
    for headers in ({}, bearer("wrong"), bearer(scrape + "x"), ADMIN):
        response = await client.get("/metrics", headers=headers)
        body = await response.json()
        assert response.status == 401 and body["success"] is False
        assert "gatelog_" not in json.dumps(body)
        assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    response = await client.get("/metrics", headers=bearer(scrape))
    assert response.status == 200 and "gatelog_" in await response.text()
