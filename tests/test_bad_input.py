"""Bad input gets a clear 4xx in the envelope naming the parameter, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from service.ratelimit import RateLimiter
from tests.conftest import ADMIN, WRITER, user_headers

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
    client = await make_client(token_lookup_rate=3)
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
    client = await make_client(token_lookup_rate=5, trusted_proxies=("127.0.0.0/8",))

    async def lookup(ip: str) -> int:
        headers = {"X-Forwarded-For": f"{ip}, 127.0.0.2"}
        response = await client.get("/api/log/token", params={"key": "k"}, headers=headers)
        return response.status

    burst = [await lookup("203.0.113.9") for _ in range(30)]
    assert burst.count(404) == 5 and burst.count(429) == 25
    others = [await lookup(f"198.51.100.{i}") for i in range(1, 11)]
    assert others == [404] * 10


def test_forwarded_for_is_honoured_only_from_trusted_proxies() -> None:
    from service.ratelimit import client_ip, parse_networks

    trusted = parse_networks(["10.0.0.0/8"])
    assert client_ip("10.1.2.3", "1.2.3.4, 10.9.9.9", trusted) == "1.2.3.4"
    assert client_ip("8.8.8.8", "1.2.3.4", trusted) == "8.8.8.8"  # spoofed header ignored
    assert client_ip("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"
    assert client_ip("10.1.2.3", "garbage, 5.6.7.8", trusted) == "5.6.7.8"
