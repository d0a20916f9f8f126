"""Bad input gets a clear 4xx in the envelope naming the parameter, and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.keys import SETTINGS
from service.openapi import document
from service.ratelimit import RateLimiter
from service.settings import Settings
from service.store import Store
from tests.conftest import ADMIN, WRITER, held_clock, ingest, log_row, user_headers

LONG = "x" * 300

CASES = [
    ("/api/log/", {"p": "abc"}, "'p'"),
    ("/api/log/", {"p": "0"}, "'p'"),
    ("/api/log/", {"p": "-1"}, "'p'"),
    ("/api/log/", {"p": "1.5"}, "'p'"),
    ("/api/log/", {"page_size": "0"}, "'page_size'"),
    ("/api/log/", {"page_size": "101"}, "'page_size'"),
    ("/api/log/", {"type": "9"}, "'type'"),
    ("/api/log/", {"type": "consume"}, "'type'"),
    ("/api/log/", {"start_timestamp": "10", "end_timestamp": "5"}, "'start_timestamp'"),
    ("/api/log/", {"start_timestamp": "1e9"}, "'start_timestamp'"),
    ("/api/log/", {"end_timestamp": "99999999999"}, "'end_timestamp'"),
    ("/api/log/", {"channel": "x"}, "'channel'"),
    ("/api/log/", {"username": LONG}, "'username'"),
    ("/api/log/", {"model_name": LONG}, "'model_name'"),
    ("/api/log/", {"p": "9" * 30}, "'p'"),
    ("/api/log/self", {"token_name": LONG}, "'token_name'"),
    ("/api/log/self", {"group": LONG}, "'group'"),
    ("/api/log/self", {"request_id": LONG}, "'request_id'"),
    ("/api/log/search", {"keyword": LONG}, "'keyword'"),
    ("/api/log/self/search", {"keyword": LONG}, "'keyword'"),
    ("/api/log/search", {"page_size": "1001"}, "'page_size'"),
    ("/api/log/token", {}, "'key'"),
    ("/api/log/token", {"key": LONG}, "'key'"),
    ("/api/log/token", {"key": "k", "page_size": "1001"}, "'page_size'"),
]


@pytest.mark.parametrize(("path", "params", "named"), CASES)
async def test_bad_parameter_is_400_naming_it(
    client: Any, path: str, params: dict[str, str], named: str
) -> None:
    headers = ADMIN if "self" not in path else user_headers(3)
    response = await client.get(path, params=params, headers=headers)
    body = await response.json()
    assert response.status == 400, body
    assert body["success"] is False and body["data"] is None
    assert named in body["message"]


async def test_errors_leak_no_internals(client: Any) -> None:
    response = await client.get(
        "/api/log/", params={"type": "'; DROP TABLE logs; --"}, headers=ADMIN
    )
    body = await response.json()
    assert response.status == 400
    assert "DB::Exception" not in body["message"] and "Traceback" not in body["message"]
    response = await client.get("/api/log/", headers=ADMIN)
    assert response.status == 200  # the table is still there


async def test_wrong_method_is_405_in_the_envelope(client: Any) -> None:
    response = await client.put("/api/log/self", headers=WRITER)
    body = await response.json()
    assert response.status == 405 and body["success"] is False


async def test_token_lookup_rate_limit_per_ip(make_client: Any) -> None:
    client = await make_client(token_lookup_rate=3, clock=held_clock())
    statuses = [
        (await client.get("/api/log/token", params={"key": f"k{i}"})).status for i in range(5)
    ]
    assert statuses == [404, 404, 404, 429, 429]
    response = await client.get("/api/log/token", params={"key": "k"})
    body = await response.json()
    assert body["success"] is False and int(response.headers["Retry-After"]) >= 1


def test_rate_limiter_isolates_clients_and_recovers() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.allow("a")[0] for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")[0] is True  # another client is unaffected
    now[0] += 120  # two windows later the history is gone
    assert limiter.allow("a")[0] is True


def test_rate_limiter_zero_means_off() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.allow("a")[0] for _ in range(1000))


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(5, max_keys=100)
    for i in range(1000):
        limiter.allow(f"ip{i}")
    assert len(limiter._windows) == 100


async def test_burst_from_one_client_does_not_starve_others(make_client: Any) -> None:
    client = await make_client(
        token_lookup_rate=5, trusted_proxies=("127.0.0.0/8",), clock=held_clock()
    )

    async def lookup(ip: str) -> int:
        headers = {"X-Forwarded-For": f"{ip}, 127.0.0.2"}
        response = await client.get("/api/log/token", params={"key": "k"}, headers=headers)
        return response.status

    # All at once: 30 lookups from one address interleaved with one from each of 10 others.
    answers = await asyncio.gather(
        *(lookup("203.0.113.9") for _ in range(30)),
        *(lookup(f"198.51.100.{i}") for i in range(1, 11)),
    )
    burst, others = answers[:30], answers[30:]
    assert burst.count(404) == 5 and burst.count(429) == 25
    assert others == [404] * 10
    assert await lookup("198.51.100.1") == 404  # and they still are afterwards


def test_forwarded_for_is_honoured_only_from_trusted_proxies() -> None:
    from service.ratelimit import client_ip, parse_networks

    trusted = parse_networks(["10.0.0.0/8"])
    assert client_ip("10.1.2.3", "1.2.3.4, 10.9.9.9", trusted) == "1.2.3.4"
    assert client_ip("8.8.8.8", "1.2.3.4", trusted) == "8.8.8.8"  # spoofed header ignored
    assert client_ip("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"
    assert client_ip("10.1.2.3", "garbage, 5.6.7.8", trusted) == "5.6.7.8"


@pytest.mark.parametrize(
    ("path", "name"),
    [("/api/log/", "p"), ("/api/log/", "username"), ("/api/log/self", "type"),
     ("/api/log/search", "keyword"), ("/api/log/token", "key")],
)  # fmt: skip
async def test_a_parameter_given_twice_is_refused(client: Any, path: str, name: str) -> None:
    # A proxy may read the first value and the service the last: neither is guessed.
    headers = user_headers(3) if "self" in path else ADMIN
    params = [(name, "1"), (name, "2")] + ([("key", "k")] if name != "key" else [])
    response = await client.get(path, params=params, headers=headers)
    body = await response.json()
    assert response.status == 400, body
    assert body["message"] == f"invalid parameter '{name}': given more than once"


async def test_empty_optional_parameters_count_as_not_given(
    backend: Store, settings: Settings
) -> None:
    """Every optional parameter sent empty: the same answer (status and body) as not
    sending it, not merely a status that is not a 400."""
    # A held clock: a default range (stat, series) is the same for both requests.
    app = create_app(settings, store=backend, clock=held_clock())
    async with TestClient(TestServer(app)) as client:
        rows = [log_row(user_id=3, token_id=5, type=t) for t in (1, 2, 2, 5)]
        await ingest(client, rows)
        token = [{"id": 5, "key": "sk-empty-params", "name": "t", "user_id": 3, "status": 1}]
        assert (await client.post("/api/internal/tokens", json=token, headers=WRITER)).ok
        doc = document(client.app[SETTINGS])
        parameters = doc["components"]["parameters"]
        served = {(r.method, r.resource.canonical) for r in client.app.router.routes()}
        checked = 0
        for path, item in doc["paths"].items():
            get = item.get("get")
            if get is None or ("GET", path) not in served or not path.startswith("/api/log"):
                continue
            names = [parameters[ref["$ref"].rsplit("/", 1)[1]] for ref in get["parameters"]]
            optional = [p["name"] for p in names if not p["required"]]
            assert all(p.get("allowEmptyValue") for p in names if not p["required"])
            needed = {"key": "sk-empty-params"} if path == "/api/log/token" else {}
            headers = user_headers(3) if "/self" in path else ADMIN
            empty = await client.get(
                path, params={**dict.fromkeys(optional, ""), **needed}, headers=headers
            )
            absent = await client.get(path, params=needed, headers=headers)
            assert empty.status == absent.status == 200, (path, await empty.text())
            assert await empty.text() == await absent.text(), path
            checked += 1
        assert checked >= 5


@pytest.mark.parametrize(
    ("key", "status"),
    [(" \t", 400), ("\x1c", 404), ("\u00a0", 404), (" sk-k ", 404), ("k" * 256, 404),
     (" " + "k" * 256, 400)],
)  # fmt: skip
async def test_the_key_is_trimmed_of_ascii_whitespace_only(
    client: Any, key: str, status: int
) -> None:
    # As the document's pattern says: a key with any other character is a real lookup,
    # and the length limit counts the key as sent.
    response = await client.get("/api/log/token", params={"key": key})
    assert response.status == status, await response.text()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/log/self/search?keyword=" + "x" * 70_000, user_headers(3)),  # request line
        ("/api/log/token?key=" + "k" * 1_000_000, {}),
        ("/api/log/", {"Authorization": "Bearer " + "a" * 20_000}),  # one header
        ("/api/log/", {**ADMIN, **{f"X-H{i}": "v" for i in range(200)}}),  # many headers
    ],
)
async def test_oversized_requests_are_refused_before_any_handler(
    make_client: Any, engine_calls: list[str], path: str, headers: dict[str, str]
) -> None:
    """Past the HTTP parser's limits (request line 64 KiB, header 16 KiB, header count)
    the request is a 400 before routing: no handler, no engine call, no echo of internals."""
    client = await make_client()
    engine_calls.clear()
    response = await client.get(path, headers=headers)
    text = await response.text()
    assert response.status == 400
    assert "Traceback" not in text and len(text) < 200
    assert engine_calls == []
