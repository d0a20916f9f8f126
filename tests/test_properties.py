"""Property tests: for random ingested rows and random filters, every list, search and
token answer (items, order, total) equals a brute-force Python filter of the same rows,
through each backend (the embedded engine, and the HTTP client against a ClickHouse HTTP
interface with the deployed account's grants).

The draws make the hard cases common, not merely possible: many rows share a second
(their order then follows the id), filter bounds land on those seconds and on the ones
next to them, pages run deep and past the end, and filters that match nothing are
frequent. The app's clock is fixed near the rows, so the last minute (rpm, tpm) holds
rows too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import service.logs
from service.app import create_app
from tests import brute, brute_stats
from tests.conftest import ADMIN, BACKENDS, WRITER, open_backend, truncate_all, user_headers
from tests.expected import TOKEN_FIELDS, assert_user_view

BASE = 1_790_000_000  # a fixed instant; rows spread over three days after it
END = BASE + 3 * 86400
NOW = END + 30  # the apps' clock: rows from END - 30 on are in the last minute
# Seconds that many rows share and that bounds land on (and just beside): the ends of
# the range, minute and day edges, the edge of the last minute.
EDGES = sorted(
    {BASE, BASE + 1, BASE + 59, BASE + 60, BASE + 86399, BASE + 86400, BASE + 86401,
     END - 61, END - 31, END - 30, END - 29, END - 1, END}
)  # fmt: skip
USERS = [1, 2, 3]
CONTENTS = [
    "API call succeeded", "api CALL failed: upstream 502", "GPT-4 调用成功", "余额不足",
    "100% done_ok", "quote ' and \\ backslash", "emoji 🚀 ok", "system restart",
]  # fmt: skip
MODELS = ["gpt-4", "gpt-4o", "claude-3-opus", "qwen_max"]
NAMES = ["alice", "bob", "Ünïcode"]
TOKEN_NAMES = ["t1", "t2", "t%"]
GROUPS = ["default", "vip"]
REQUEST_IDS = ["", "req-1", "req-2"]

row_strategy = st.fixed_dictionaries(
    {
        "user_id": st.sampled_from(USERS),
        # half the rows on a few shared seconds: ties are common
        "created_at": st.sampled_from(EDGES) | st.integers(BASE, END),
        "type": st.sampled_from([1, 2, 2, 2, 4, 5]),
        "content": st.sampled_from(CONTENTS),
        "username": st.sampled_from(NAMES),
        "token_name": st.sampled_from(TOKEN_NAMES),
        "model_name": st.sampled_from(MODELS),
        "quota": st.integers(0, 10**9),
        "prompt_tokens": st.integers(0, 10**6),
        "completion_tokens": st.integers(0, 10**6),
        "use_time": st.integers(0, 100),
        "is_stream": st.booleans(),
        "channel_id": st.sampled_from([1, 2]),
        "channel_name": st.just("ch"),
        "token_id": st.sampled_from([1, 2, 3]),
        "group": st.sampled_from(GROUPS),
        "ip": st.just("10.0.0.1"),
        "request_id": st.sampled_from(REQUEST_IDS),
        "other": st.just('{"model_ratio":1.5,"admin_info":{"node":"a"}}'),
    }
)


@st.composite
def rows_strategy(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = draw(st.just([]) | st.lists(row_strategy, min_size=1, max_size=60))
    # Ties on created_at are common on purpose: the order must then follow the id (small
    # ids and ids past 2**53, which a float would round, both).
    ids = draw(
        st.lists(
            st.integers(1, 50) | st.integers(2**53 - 5, 2**63 - 1),
            min_size=len(rows), max_size=len(rows), unique=True,
        )
    )  # fmt: skip
    for row, row_id in zip(rows, ids, strict=True):
        row["id"] = row_id
    return rows


# A bound: on a shared second or beside it, or anywhere (also before and after the rows).
bound = st.sampled_from(EDGES).flatmap(lambda s: st.sampled_from([s - 1, s, s + 1])) | (
    st.integers(BASE - 10, END + 10)
)
filter_strategy = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([1, 2, 4, 5, 7]),  # 7: no row has it
        "start_timestamp": bound,
        "end_timestamp": bound,
        "username": st.sampled_from(NAMES + ["nobody"]),
        "token_name": st.sampled_from(TOKEN_NAMES),
        "model_name": st.sampled_from(MODELS + ["gpt-4%", "%o%", "%_max", "gpt", "nobody%"]),
        "channel": st.sampled_from([1, 2, 3]),
        "group": st.sampled_from(GROUPS),
        "request_id": st.sampled_from(REQUEST_IDS[1:]),
        # deep pages and pages past the end, small and large page sizes
        "p": st.integers(1, 3) | st.integers(4, 80),
        "page_size": st.integers(1, 3) | st.integers(4, 100),
    },
).filter(
    lambda q: (
        not ("start_timestamp" in q and "end_timestamp" in q)
        or q["start_timestamp"] <= q["end_timestamp"]
    )
)

keyword_strategy = st.sampled_from(
    ["call", "CALL", "调用", "100%", "done_ok", "'", "\\", "🚀", "gpt-4O", "qwen_", "2",
     "consume", "error", "系统", "nothing-matches", "_", "%"]
)  # fmt: skip

HYPOTHESIS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_client(
    kind: str, store: Any, app_settings: Any, body: Any, two_step: bool = False
) -> Any:
    """``body`` against a fresh app on empty tables through backend ``kind``;
    ``two_step``: pages read as deep pages are (their keys first, then the rows by key;
    service.logs.page_sql), which the rows drawn here would otherwise rarely reach."""
    await truncate_all(store)
    lazy_limit = service.logs.LAZY_LIMIT
    service.logs.LAZY_LIMIT = 0 if two_step else lazy_limit
    try:
        async with open_backend(kind, store) as backend:
            app = create_app(app_settings, store=backend, clock=lambda: NOW)
            async with TestClient(TestServer(app)) as client:
                return await body(client)
    finally:
        service.logs.LAZY_LIMIT = lazy_limit


async def _ingest(client: TestClient[Any, Any], rows: list[dict[str, Any]]) -> None:
    if rows:
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        assert response.status == 200, await response.text()


def _params(q: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in q.items()}


@pytest.mark.parametrize("kind", BACKENDS)
@HYPOTHESIS
@given(
    rows=rows_strategy(),
    queries=st.lists(filter_strategy, min_size=1, max_size=4),
    two_step=st.booleans(),
)
def test_lists_equal_brute_force(
    kind: str, engine: Any, settings: Any, rows: Any, queries: Any, two_step: bool
) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        await _ingest(client, rows)
        for q in queries:
            p, size = q.get("p", 1), q.get("page_size", 20)
            # admin
            response = await client.get("/api/log/", params=_params(q), headers=ADMIN)
            data = (await response.json())["data"]
            expected = brute.newest_first(r for r in rows if brute.matches(r, q, user_id=None))
            assert data["total"] == len(expected)
            assert [i["id"] for i in data["items"]] == [
                r["id"] for r in brute.page(expected, p, size)
            ]
            by_id = {r["id"]: r for r in rows}
            for item in data["items"]:
                source = by_id[item["id"]]
                assert {k: item[k] for k in source} == source
            # each user: own rows only, user view
            for uid in USERS:
                user_q = {k: v for k, v in q.items() if k not in ("username", "channel")}
                response = await client.get(
                    "/api/log/self", params=_params(user_q), headers=user_headers(uid)
                )
                data = (await response.json())["data"]
                expected = brute.newest_first(
                    r for r in rows if brute.matches(r, user_q, user_id=uid)
                )
                assert data["total"] == len(expected)
                assert [i["id"] for i in data["items"]] == [
                    r["id"] for r in brute.page(expected, p, size)
                ]
                for item in data["items"]:
                    assert_user_view(item, by_id[item["id"]])

    run(_with_client(kind, engine, settings, body, two_step))


@pytest.mark.parametrize("kind", BACKENDS)
@HYPOTHESIS
@given(
    rows=rows_strategy(),
    keywords=st.lists(keyword_strategy, min_size=1, max_size=4),
    uid=st.sampled_from(USERS),
    log_type=st.sampled_from([None, None, 1, 2]),
    two_step=st.booleans(),
)
def test_search_equals_brute_force(
    kind: str,
    engine: Any,
    settings: Any,
    rows: Any,
    keywords: Any,
    uid: int,
    log_type: int | None,
    two_step: bool,
) -> None:
    # A type filter narrows the search too, also when the keyword names a type.
    q = {} if log_type is None else {"type": log_type}

    async def body(client: TestClient[Any, Any]) -> None:
        await _ingest(client, rows)
        for keyword in keywords:
            params = {"keyword": keyword, **_params(q)}
            response = await client.get("/api/log/search", params=params, headers=ADMIN)
            assert response.status == 200
            got = [i["id"] for i in (await response.json())["data"]]
            expected = brute.newest_first(
                r for r in rows
                if brute.keyword_matches(r, keyword) and brute.matches(r, q, user_id=None)
            )  # fmt: skip
            assert got == [r["id"] for r in expected][:100]
            response = await client.get(
                "/api/log/self/search", params=params, headers=user_headers(uid)
            )
            got = [i["id"] for i in (await response.json())["data"]]
            expected = [r for r in expected if r["user_id"] == uid]
            assert got == [r["id"] for r in expected][:100]

    run(_with_client(kind, engine, settings, body, two_step))


token_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(USERS),
            "status": st.sampled_from([1, 1, 2, 3]),
            "with_prefix": st.booleans(),
        }
    ),
    min_size=3,
    max_size=3,
)


@pytest.mark.parametrize("kind", BACKENDS)
@HYPOTHESIS
@given(
    rows=rows_strategy(),
    tokens=token_strategy,
    p=st.integers(1, 3) | st.integers(4, 60),
    size=st.integers(1, 3) | st.integers(4, 100),
    two_step=st.booleans(),
)
def test_token_lookup_equals_brute_force(
    kind: str,
    engine: Any,
    settings: Any,
    rows: Any,
    tokens: Any,
    p: int,
    size: int,
    two_step: bool,
) -> None:
    keys = {i + 1: hashlib.sha1(str(i).encode()).hexdigest()[:24] for i in range(len(tokens))}

    async def body(client: TestClient[Any, Any]) -> None:
        await _ingest(client, rows)
        payload = [
            {"id": tid, "key": keys[tid], "name": f"t{tid}", "user_id": t["user_id"],
             "status": t["status"]}
            for tid, t in zip(keys, tokens, strict=True)
        ]  # fmt: skip
        response = await client.post("/api/internal/tokens", json=payload, headers=WRITER)
        assert response.status == 200
        for tid, token in zip(keys, tokens, strict=True):
            key = ("sk-" if token["with_prefix"] else "") + keys[tid]
            response = await client.get(
                "/api/log/token", params={"key": key, "p": str(p), "page_size": str(size)}
            )
            body = await response.json()
            if token["status"] == 2:
                assert response.status == 404
                assert body["message"] == "Token does not exist or no permission"
                continue
            assert response.status == 200
            expected = brute.newest_first(
                r for r in rows if r["token_id"] == tid and r["user_id"] == token["user_id"]
            )
            assert [i["id"] for i in body["data"]] == [
                r["id"] for r in brute.page(expected, p, size)
            ]
            for item in body["data"]:
                assert list(item) == list(TOKEN_FIELDS)

    run(_with_client(kind, engine, settings, body, two_step))


HOSTILE_ALPHABET = st.sampled_from(
    list("aAbB%_\\'\"`;-()*/ \t\n\x00") + ["\u202e", "שלום", "مرحبا", "🚀", "调用", "DROP"]
)
hostile_text = st.lists(HOSTILE_ALPHABET, min_size=1, max_size=12).map("".join)


@pytest.mark.parametrize("kind", BACKENDS)
@settings(HYPOTHESIS, max_examples=15)
@given(
    rows=rows_strategy(),
    texts=st.lists(hostile_text, min_size=1, max_size=3),
    uid=st.sampled_from(USERS),
)
def test_hostile_text_in_every_filter_and_keyword(
    kind: str, engine: Any, settings: Any, rows: Any, texts: Any, uid: int
) -> None:
    """SQL fragments, quotes, backslashes, %/_, NUL, RTL and emoji are plain values (in
    model_name, a pattern when it holds %, as the engine reads LIKE)."""
    # A hostile row too, so that matches are possible, not only empty answers.
    hostile_rows = [
        {**row, "content": row["content"] + texts[i % len(texts)],
         "token_name": texts[i % len(texts)], "username": texts[-1],
         "model_name": texts[(i + 1) % len(texts)] + ("\\" if i == 2 else "")}
        for i, row in enumerate(rows[:5])
    ] + rows[5:]  # fmt: skip

    async def body(client: TestClient[Any, Any]) -> None:
        await _ingest(client, hostile_rows)
        for text in texts:
            # model_name is a LIKE pattern when it holds %: hostile patterns included.
            for name in ("username", "token_name", "group", "request_id", "model_name"):
                q = {name: text}
                response = await client.get("/api/log/", params=q, headers=ADMIN)
                assert response.status == 200, await response.text()
                data = (await response.json())["data"]
                expected = [r for r in hostile_rows if brute.matches(r, q, user_id=None)]
                assert data["total"] == len(expected)
                # Stats read the rollup with the same filters: the same rows count.
                response = await client.get("/api/log/stat", params=q, headers=ADMIN)
                assert (await response.json())["data"] == brute_stats.stat(
                    hostile_rows, q, None, NOW
                ), q
            response = await client.get(
                "/api/log/export", params={"model_name": text, "format": "ndjson"},
                headers=ADMIN,
            )  # fmt: skip
            lines = (await response.text()).split("\n")[:-2]  # the totals, then the end
            expected_rows = brute.newest_first(
                r for r in hostile_rows if brute.matches(r, {"model_name": text}, user_id=None)
            )
            assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in expected_rows]
            response = await client.get("/api/log/search", params={"keyword": text}, headers=ADMIN)
            assert response.status == 200
            got = [i["id"] for i in (await response.json())["data"]]
            expected_rows = brute.newest_first(
                r for r in hostile_rows if brute.keyword_matches(r, text)
            )
            assert got == [r["id"] for r in expected_rows][:100]
            response = await client.get(
                "/api/log/self/search", params={"keyword": text}, headers=user_headers(uid)
            )
            got = [i["id"] for i in (await response.json())["data"]]
            assert got == [r["id"] for r in expected_rows if r["user_id"] == uid][:100]
            response = await client.get("/api/log/token", params={"key": text})
            assert response.status == (404 if text.strip(" \t\r\n\f\v") else 400)

    run(_with_client(kind, engine, settings, body))


MODEL_PATTERNS = [
    "%\\", "a%\\", "%\\\\", "%\\\\\\", "%\\x", "%\\%", "%\\_", "%_%", "_%", "%\x00%", "%'%",
    "%🚀%", "%\u202e%", "%;DROP%", "%\\%\\", "100\\%%",
]  # fmt: skip
MODEL_NAMES = ["a\\", "ax", "a\\x", "a%", "a_", "a\\\\", "🚀", "\u202e", "100%", "x\x00y", "'"]


async def test_model_name_patterns_as_the_engine_reads_like(client: Any) -> None:
    """Backslashes in a model_name pattern: before %, _ or \\ an escape, else (also at the
    end, which the engine refuses) a literal backslash; every answer equals brute force."""
    rows = [
        {"id": i + 1, "user_id": 1, "created_at": BASE + i, "type": 2, "model_name": name}
        for i, name in enumerate(MODEL_NAMES)
    ]
    response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
    assert response.status == 200
    for pattern in MODEL_PATTERNS:
        response = await client.get(
            "/api/log/", params={"model_name": pattern, "page_size": "100"}, headers=ADMIN
        )
        assert response.status == 200, (pattern, await response.text())
        got = {item["model_name"] for item in (await response.json())["data"]["items"]}
        expected = {
            r["model_name"] for r in rows if brute.matches(r, {"model_name": pattern}, user_id=None)
        }
        assert got == expected, pattern
