"""Tenant isolation, randomized: many users and tokens whose names collide (two users with
the same username, the same token names, a token id that also appears on another user's
rows), and users who ask for other users' data (``username``, ``channel``, ``user_id``,
``token_id`` in the query, a JWT ``username`` naming someone else). No user endpoint and
no token lookup ever returns or counts a row that is not the caller's (or the token's),
and user views never carry admin-only fields.

Each answer is compared with brute force over the caller's own rows, so a leak shows up
as a wrong item, a wrong total or a wrong sum, not only as a foreign ``user_id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.auth import ROLE_USER
from tests import brute, brute_stats
from tests.conftest import ADMIN, WRITER, bearer, make_token, truncate_all
from tests.expected import TOKEN_FIELDS, assert_user_view

BASE = 1_790_000_000
END = BASE + 3 * 86400
NOW = END + 30  # rows in the last minute count in rpm/tpm too
SUMMED = ("quota", "prompt_tokens", "completion_tokens")
USERS = list(range(1, 11))
TOKENS = list(range(1, 16))
NAMES = ["alice", "bob", "carol"]  # fewer names than users: names collide
TOKEN_NAMES = ["default", "prod", "ci"]
MODELS = ["gpt-4", "gpt-4o", "claude-3"]
SECRET_OTHER = [
    '{"model_ratio":2,"admin_info":{"channel":"upstream-a"},"reject_reason":"r",'
    '"audit_info":{"k":1}}',
    '{"admin_info":null}',
    '{"reject_reason":"quota"}',
    '["a list"]',
    '{"model_ratio":1}',
    "not json at all",
    "",
]


def key_of(token_id: int) -> str:
    return hashlib.sha256(f"isolation-{token_id}".encode()).hexdigest()[:48]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Tokens (each owned by one user, some disabled) and rows; most rows use one of
    their user's tokens, some carry a token id of another user's token."""
    owners = {t: draw(st.sampled_from(USERS)) for t in TOKENS}
    tokens = {
        t: {"id": t, "key": key_of(t), "name": draw(st.sampled_from(TOKEN_NAMES)),
            "user_id": owners[t], "status": draw(st.sampled_from([1, 1, 1, 2]))}
        for t in TOKENS
    }  # fmt: skip
    count = draw(st.integers(0, 120))
    rows = []
    for i in range(count):
        user = draw(st.sampled_from(USERS))
        own = [t for t in TOKENS if owners[t] == user]
        foreign = draw(st.booleans()) and draw(st.booleans())
        token_id = draw(st.sampled_from(TOKENS if foreign or not own else own))
        rows.append(
            {
                "id": i + 1,
                "user_id": user,
                # Some in the last minute before NOW, where rpm and tpm count.
                "created_at": draw(st.integers(BASE, END) | st.integers(END - 50, END)),
                "type": draw(st.sampled_from([1, 2, 2, 2, 5])),
                "content": draw(st.sampled_from(["call ok", "call failed", "top-up"])),
                "username": draw(st.sampled_from(NAMES)),
                "token_name": tokens[token_id]["name"],
                "model_name": draw(st.sampled_from(MODELS)),
                "quota": draw(st.integers(0, 10**6)),
                "prompt_tokens": draw(st.integers(0, 10**4)),
                "completion_tokens": draw(st.integers(0, 10**4)),
                "use_time": 1,
                "is_stream": False,
                "channel_id": draw(st.sampled_from([1, 2, 3])),
                "channel_name": "upstream",
                "token_id": token_id,
                "group": draw(st.sampled_from(["default", "vip"])),
                "ip": "10.0.0.1",
                "request_id": f"r{i}",
                "other": draw(st.sampled_from(SECRET_OTHER)),
            }
        )
    return rows, tokens


# A user's filters: the ones users have, and admin-only or unknown ones naming others.
user_query = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([1, 2, 5]),
        "start_timestamp": st.integers(BASE, BASE + 86400),
        "end_timestamp": st.integers(BASE + 86400, END),
        "token_name": st.sampled_from(TOKEN_NAMES),
        "model_name": st.sampled_from([*MODELS, "%", "gpt%"]),
        "group": st.sampled_from(["default", "vip"]),
        # Not a user's filters: ignored, never widening the scope.
        "username": st.sampled_from(NAMES),
        "channel": st.sampled_from([1, 2, 3]),
        "user_id": st.sampled_from(USERS),
        "token_id": st.sampled_from(TOKENS),
    },
)
USER_FILTERS = ("type", "start_timestamp", "end_timestamp", "token_name", "model_name", "group")


def strs(query: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in query.items()}


def own_filters(query: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in query.items() if k in USER_FILTERS}


def check_user_item(item: dict[str, Any], uid: int, rows_by_id: dict[int, Any]) -> None:
    assert item["user_id"] == uid
    source = rows_by_id[item["id"]]
    assert source["user_id"] == uid
    assert_user_view(item, source)  # non-JSON `other` is withheld from users


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# A failing world is large; its repr is printed anyway, after the assertion that failed.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(
    max_examples=8,
    deadline=None,
    # Shrinking a world of 15 tokens and 120 rows takes minutes; the assertions name the
    # user, query and token instead.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    world=worlds(),
    queries=st.lists(user_query, min_size=len(USERS), max_size=len(USERS)),
    group_bys=st.lists(
        st.sampled_from([None, "model_name", "token_name", "group"]),
        min_size=len(USERS),
        max_size=len(USERS),
    ),
)
def test_no_user_and_no_token_sees_anything_but_its_own(
    engine: Any,
    settings: Any,
    world: Any,
    queries: list[dict[str, Any]],
    group_bys: list[str | None],
) -> None:
    rows, tokens = world
    rows_by_id = {r["id"]: r for r in rows}

    async def body() -> None:
        await truncate_all(engine)
        app = create_app(settings, store=engine, clock=lambda: NOW)
        async with TestClient(TestServer(app)) as client:
            if rows:
                response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
                assert response.status == 200
            response = await client.post(
                "/api/internal/tokens", json=list(tokens.values()), headers=WRITER
            )
            assert response.status == 200
            # The universe is there (an empty answer below is isolation, not absence).
            response = await client.get("/api/log/", params={"page_size": 1}, headers=ADMIN)
            assert (await response.json())["data"]["total"] == len(rows)

            await asyncio.gather(
                *(
                    check_user(client, uid, query, group_by)
                    for uid, query, group_by in zip(USERS, queries, group_bys, strict=True)
                ),
                *(check_token(client, token) for token in tokens.values()),
            )

    async def check_user(
        client: TestClient[Any, Any], uid: int, query: dict[str, Any], group_by: str | None
    ) -> None:
        # The token's username names someone else's rows: it must not matter.
        who = bearer(make_token(uid, ROLE_USER, username=NAMES[uid % len(NAMES)]))
        params = {k: str(v) for k, v in query.items()}
        mine = brute.newest_first(
            r for r in rows if brute.matches(r, own_filters(query), user_id=uid)
        )
        response = await client.get(
            "/api/log/self", params={**params, "page_size": "100"}, headers=who
        )
        data = (await response.json())["data"]
        assert data["total"] == len(mine), (uid, query)
        assert [i["id"] for i in data["items"]] == [r["id"] for r in mine], (uid, query)
        for item in data["items"]:
            check_user_item(item, uid, rows_by_id)

        for keyword in ("call", "2"):
            response = await client.get(
                "/api/log/self/search", params={**params, "keyword": keyword}, headers=who
            )
            items = (await response.json())["data"]
            expected = [r["id"] for r in mine if brute.keyword_matches(r, keyword)]
            assert [i["id"] for i in items] == expected, (uid, query, keyword)
            for item in items:
                check_user_item(item, uid, rows_by_id)

        # Stat and series: the sums of the caller's own rows only.
        stat_q = own_filters(query)
        response = await client.get("/api/log/self/stat", params=params, headers=who)
        assert (await response.json())["data"] == brute_stats.self_stat(rows, stat_q, uid, NOW), (
            uid, query,
        )  # fmt: skip
        series_q = {
            **stat_q,
            "interval": "day",
            "start_timestamp": query.get("start_timestamp", BASE),
            "end_timestamp": query.get("end_timestamp", END),
        }
        if group_by is not None:
            series_q["group_by"] = group_by
        response = await client.get(
            "/api/log/self/series", params={**params, **strs(series_q)}, headers=who
        )
        data = (await response.json())["data"]
        total, groups = brute_stats.series(rows, series_q, uid, NOW, "day", group_by)
        assert data["buckets"] == total, (uid, series_q)
        if group_by is not None:
            assert {s["key"]: s["buckets"] for s in data["series"]} == groups, (uid, series_q)
        # Grouping by what only admins may group by is refused, not answered.
        response = await client.get(
            "/api/log/self/series", params={**strs(series_q), "group_by": "username"},
            headers=who,
        )  # fmt: skip
        assert response.status == 400

        # Export: every own row, the user view, and totals over the own rows only.
        response = await client.get(
            "/api/log/self/export", params={**params, "format": "ndjson"}, headers=who
        )
        lines = [json.loads(line) for line in (await response.text()).split("\n") if line]
        items, totals = lines[:-1], lines[-1]["totals"]
        assert [i["id"] for i in items] == [r["id"] for r in mine], (uid, query)
        for item in items:
            check_user_item(item, uid, rows_by_id)
        assert totals == {
            "rows": len(mine),
            **{name: sum(r[name] for r in mine) for name in SUMMED},
        }

    async def check_token(client: TestClient[Any, Any], token: dict[str, Any]) -> None:
        response = await client.get(
            "/api/log/token", params={"key": "sk-" + token["key"], "page_size": "1000"}
        )
        if token["status"] == 2:
            assert response.status == 404
            return
        items = (await response.json())["data"]
        expected = brute.newest_first(
            r for r in rows if r["token_id"] == token["id"] and r["user_id"] == token["user_id"]
        )
        assert [i["id"] for i in items] == [r["id"] for r in expected], token
        for item in items:
            assert list(item) == list(TOKEN_FIELDS)

    run(body())


# --- the user view of `other`, computed fast, is the stdlib's answer ----------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats() | st.floats(-1e-3, 1e-3) | st.floats(1e15, 1e20) | st.text(max_size=6)
    | st.just("\ud800"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=10,
)  # fmt: skip


def _stdlib_scrub(raw: str) -> str:
    """The user view of ``other`` written with the stdlib only (the reference)."""
    if not raw:
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(value, dict):
        return raw if isinstance(value, int | float | str) or value is None else ""
    if not any(key in value for key in ("admin_info", "reject_reason", "audit_info")):
        return raw
    for key in ("admin_info", "reject_reason", "audit_info"):
        value.pop(key, None)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=1000, deadline=None)
# found by this test once: orjson reads an integer past 64 bits as a float
@example(body={"frt": -(2**63) - 1, "admin_info": 1}, compact=True, ascii_only=False)
@given(
    body=st.builds(
        lambda rest, key, value: {**rest, key: value},
        st.dictionaries(st.sampled_from(["frt", "ratio"]) | st.text(max_size=4), _JSON, max_size=4),
        st.sampled_from(["admin_info", "reject_reason", "audit_info"]),
        _JSON,
    )
    | st.dictionaries(st.text(max_size=4), _JSON, max_size=4)
    | _JSON,
    compact=st.booleans(),
    ascii_only=st.booleans(),
)
def test_the_user_view_of_other_is_exactly_the_stdlibs(
    body: Any, compact: bool, ascii_only: bool
) -> None:
    from service.logs import scrub_other

    separators = (",", ":") if compact else None
    raw = json.dumps(body, ensure_ascii=ascii_only, separators=separators)
    assert scrub_other(raw) == _stdlib_scrub(raw)
    assert scrub_other(raw[:-1]) == _stdlib_scrub(raw[:-1])  # cut short: withheld alike
