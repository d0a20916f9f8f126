"""Delegated sign-in: callers signed in at the gateway (new-api) are recognised by asking
its ``GET /api/user/self`` (a stand-in that behaves as the spec says, tests/gateway.py),
for both of its schemes; the answers are cached with a TTL on an injected clock, in a
bounded cache, with one gateway call for concurrent identical credentials; a gateway
that is down is a 503 for delegated callers while gatelog JWTs keep working."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.errors import Unauthorized
from service.gateway_auth import GatewayAuth, GatewayUnavailable, cache_key, credentials_of
from service.settings import Settings, SettingsError
from tests.conftest import ADMIN, ingest, log_row, user_headers
from tests.gateway import Gateway, User

NOW = 1_790_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    gw.add(User(7, "bob", access_token="legacy-access-token-bob"))
    gw.add(User(8, "carol"))
    gw.add(User(1, "root", role=100))
    gw.add(User(9, "mallory", status=2, access_token="legacy-access-token-mallory"))
    await gw.start()
    yield gw
    await gw.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def app_client(
    store: Any, settings: Settings, clock: Clock, **changes: Any
) -> TestClient[Any, Any]:
    app = create_app(replace(settings, **changes), store=store, clock=clock)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def seeded(store: Any, settings: Settings) -> Any:
    """Logs of users 7 and 8 in the engine."""
    client = await app_client(store, settings, Clock())
    try:
        await ingest(
            client,
            [log_row(user_id=7, username="bob", created_at=int(NOW) - 60)]
            + [log_row(user_id=8, username="carol", created_at=int(NOW) - 30)] * 2,
        )
    finally:
        await client.close()
    return store


async def status_and_body(client: TestClient[Any, Any], path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    response = await client.get(path, headers=headers)
    return response.status, await response.json()


# ---- both schemes over HTTP ------------------------------------------------------------


async def test_legacy_session_cookie_and_access_token(
    seeded: Any, settings: Settings, gateway: Gateway
) -> None:
    bob = gateway.users[7]
    client = await app_client(seeded, settings, Clock(), gateway_url=gateway.url)
    try:
        cookie = {"Cookie": gateway.session_cookie(bob), "New-Api-User": "7"}
        status, body = await status_and_body(client, "/api/log/self", cookie)
        assert status == 200, body
        assert body["data"]["total"] == 1
        assert {item["username"] for item in body["data"]["items"]} == {"bob"}
        # the classic UI's spelling of the header
        status, body = await status_and_body(
            client, "/api/log/self", {"Cookie": gateway.session_cookie(bob), "New-API-User": "7"}
        )
        assert status == 200, body
        # access token, raw and with Bearer
        for value in ("legacy-access-token-bob", "Bearer legacy-access-token-bob"):
            status, body = await status_and_body(
                client, "/api/log/self", {"Authorization": value, "New-Api-User": "7"}
            )
            assert status == 200, body
            assert body["data"]["total"] == 1
        # a common user is no admin
        status, body = await status_and_body(client, "/api/log/", cookie)
        assert status == 403 and body["success"] is False and body["data"] is None
        # the root user of the gateway is an admin here
        root = {"Cookie": gateway.session_cookie(gateway.users[1]), "New-Api-User": "1"}
        status, body = await status_and_body(client, "/api/log/", root)
        assert status == 200 and body["data"]["total"] == 3
    finally:
        await client.close()


@pytest.mark.parametrize(
    "case",
    [
        "no New-Api-User",
        "wrong New-Api-User",
        "non-integer New-Api-User",
        "invalid access token",
        "forged cookie",
        "disabled user",
        "no credentials",
    ],
)
async def test_legacy_refusals_are_401(
    seeded: Any, settings: Settings, gateway: Gateway, case: str
) -> None:
    bob = gateway.users[7]
    headers = {
        "no New-Api-User": {"Cookie": gateway.session_cookie(bob)},
        "wrong New-Api-User": {"Cookie": gateway.session_cookie(bob), "New-Api-User": "8"},
        "non-integer New-Api-User": {"Cookie": gateway.session_cookie(bob), "New-Api-User": "7a"},
        "invalid access token": {"Authorization": "Bearer not-a-token", "New-Api-User": "7"},
        "forged cookie": {"Cookie": gateway.session_cookie(bob)[:-4] + "0000", "New-Api-User": "7"},
        "disabled user": {"Authorization": "legacy-access-token-mallory", "New-Api-User": "9"},
        "no credentials": {},
    }[case]
    client = await app_client(seeded, settings, Clock(), gateway_url=gateway.url)
    try:
        status, body = await status_and_body(client, "/api/log/self", headers)
        assert status == 401, body
        assert body["success"] is False and body["data"] is None
    finally:
        await client.close()
    # no credentials: nothing to ask the gateway about
    assert len(gateway.received) == (0 if case == "no credentials" else 1)


async def test_jwt_scheme(seeded: Any, settings: Settings, gateway: Gateway) -> None:
    gateway.scheme = "jwt"
    bob, carol = gateway.users[7], gateway.users[8]
    bob.access_token = "pat-of-bob"
    clock = Clock()
    client = await app_client(seeded, settings, clock, gateway_url=gateway.url)
    try:
        valid = {"Authorization": "Bearer " + gateway.access_jwt(bob)}
        status, body = await status_and_body(client, "/api/log/self", valid)
        assert status == 200 and body["data"]["total"] == 1, body
        # a personal access token needs no New-Api-User in this scheme
        status, body = await status_and_body(
            client, "/api/log/self", {"Authorization": "pat-of-bob"}
        )
        assert status == 200 and body["data"]["total"] == 1, body

        expired = {"Authorization": "Bearer " + gateway.access_jwt(bob, now=NOW - 3600)}
        assert (await status_and_body(client, "/api/log/self", expired))[0] == 401

        carol_token = {"Authorization": "Bearer " + gateway.access_jwt(carol)}
        gateway.revoke_all()
        # a revoked session is refused (not cached before: a fresh answer)
        status, body = await status_and_body(client, "/api/log/self", carol_token)
        assert status == 401 and body["data"] is None
        # bob's earlier answer is reused until the TTL passes, then the revocation shows
        assert (await status_and_body(client, "/api/log/self", valid))[0] == 200
        clock.now += settings.gateway_auth_ttl_seconds
        assert (await status_and_body(client, "/api/log/self", valid))[0] == 401

        carol.auth_version += 1  # e.g. a password change: older tokens stop working
        fresh_after_change = {"Authorization": "Bearer " + gateway.access_jwt(carol)}
        carol.status = 2
        assert (await status_and_body(client, "/api/log/self", fresh_after_change))[0] == 401
        # a gatelog-looking JWT of another key is asked about too, and refused
        bogus = {"Authorization": "Bearer " + gateway.access_jwt(bob)[:-3] + "abc"}
        assert (await status_and_body(client, "/api/log/self", bogus))[0] == 401
    finally:
        await client.close()


async def test_disabled_user_reported_as_success_is_refused(
    seeded: Any, settings: Settings, gateway: Gateway
) -> None:
    gateway.reports_disabled = True
    client = await app_client(seeded, settings, Clock(), gateway_url=gateway.url)
    try:
        headers = {"Authorization": "legacy-access-token-mallory", "New-Api-User": "9"}
        status, body = await status_and_body(client, "/api/log/self", headers)
        assert status == 401 and "disabled" in body["message"]
    finally:
        await client.close()


async def test_only_the_three_headers_reach_the_gateway(
    seeded: Any, settings: Settings, gateway: Gateway
) -> None:
    bob = gateway.users[7]
    client = await app_client(seeded, settings, Clock(), gateway_url=gateway.url)
    sent = {
        "Cookie": gateway.session_cookie(bob),
        "New-Api-User": "7",
        "X-Forwarded-For": "10.0.0.1",
        "X-Api-Key": "must-not-leave",
        "Referer": "https://ui.example/secret-page",
    }
    try:
        assert (await status_and_body(client, "/api/log/self", sent))[0] == 200
    finally:
        await client.close()
    (received,) = gateway.received
    assert received["Cookie"] == sent["Cookie"]
    assert received["New-Api-User"] == "7"
    assert "Authorization" not in received
    for name in ("X-Forwarded-For", "X-Api-Key", "Referer"):
        assert name not in received
    # what aiohttp's client adds by itself, and nothing of the caller's
    assert set(received) <= {
        "Cookie",
        "New-Api-User",
        "Host",
        "Accept",
        "Accept-Encoding",
        "User-Agent",
    }


async def test_gatelog_jwt_needs_no_gateway(seeded: Any, settings: Settings) -> None:
    """Gateway down: a delegated caller gets 503, gatelog JWTs still work."""
    down = f"http://127.0.0.1:{free_port()}"
    client = await app_client(seeded, settings, Clock(), gateway_url=down)
    try:
        status, body = await status_and_body(client, "/api/log/self", user_headers(7))
        assert status == 200 and body["data"]["total"] == 1
        assert (await status_and_body(client, "/api/log/", ADMIN))[0] == 200
        status, body = await status_and_body(
            client, "/api/log/self", {"Cookie": "session=abc", "New-Api-User": "7"}
        )
        assert status == 503, body
        assert body["success"] is False and body["data"] is None
        assert "gateway" in body["message"]
    finally:
        await client.close()


async def test_slow_gateway_is_503_and_not_cached(gateway: Gateway) -> None:
    gateway.hold = asyncio.Event()
    auth = GatewayAuth(gateway.url, timeout=0.2, clock=Clock())
    headers = {"Cookie": gateway.session_cookie(gateway.users[7]), "New-Api-User": "7"}
    try:
        with pytest.raises(GatewayUnavailable):
            await auth.authenticate(headers)
        assert len(auth) == 0
        gateway.hold.set()
        assert (await auth.authenticate(headers)).user_id == 7
        assert auth.calls == 2
    finally:
        await auth.close()


async def test_gateway_5xx_is_503() -> None:
    from aiohttp import web

    app = web.Application()

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    app.router.add_get("/api/user/self", broken)
    server = TestServer(app)
    await server.start_server()
    auth = GatewayAuth(str(server.make_url("/")), clock=Clock())
    try:
        with pytest.raises(GatewayUnavailable):
            await auth.authenticate({"Authorization": "x"})
        assert len(auth) == 0
    finally:
        await auth.close()
        await server.close()


# ---- the cache ---------------------------------------------------------------------------


async def test_cache_ttl_and_negative_ttl(gateway: Gateway) -> None:
    clock = Clock()
    auth = GatewayAuth(gateway.url, ttl=10, negative_ttl=2, clock=clock)
    good = {"Authorization": "legacy-access-token-bob", "New-Api-User": "7"}
    bad = {"Authorization": "wrong", "New-Api-User": "7"}
    try:
        assert (await auth.authenticate(good)).username == "bob"
        assert (await auth.authenticate(good)).user_id == 7
        assert auth.calls == 1
        for _ in range(2):
            with pytest.raises(Unauthorized):
                await auth.authenticate(bad)
        assert auth.calls == 2
        clock.now += 2  # the refusal expires, the success does not
        with pytest.raises(Unauthorized):
            await auth.authenticate(bad)
        await auth.authenticate(good)
        assert auth.calls == 3
        clock.now += 8  # ten seconds after the first answer
        await auth.authenticate(good)
        assert auth.calls == 4
        # an answer is per credentials: another New-Api-User is another question
        with pytest.raises(Unauthorized):
            await auth.authenticate({**good, "New-Api-User": "8"})
        assert auth.calls == 5
    finally:
        await auth.close()


async def test_cache_is_bounded_lru(gateway: Gateway) -> None:
    for user_id in range(20, 25):
        gateway.add(User(user_id, f"u{user_id}", access_token=f"token-{user_id}"))
    auth = GatewayAuth(gateway.url, max_entries=3, clock=Clock())

    def creds(user_id: int) -> dict[str, str]:
        return {"Authorization": f"token-{user_id}", "New-Api-User": str(user_id)}

    try:
        for user_id in (20, 21, 22):
            await auth.authenticate(creds(user_id))
        await auth.authenticate(creds(20))  # 20 is now the most recent
        assert auth.calls == 3
        await auth.authenticate(creds(23))  # evicts 21, the least recent
        assert len(auth) == 3
        await auth.authenticate(creds(20))
        await auth.authenticate(creds(22))
        assert auth.calls == 4
        await auth.authenticate(creds(21))
        assert auth.calls == 5
        assert len(auth) == 3
    finally:
        await auth.close()


async def test_concurrent_identical_credentials_make_one_call(gateway: Gateway) -> None:
    gateway.hold = asyncio.Event()
    auth = GatewayAuth(gateway.url, clock=Clock())
    headers = {"Cookie": gateway.session_cookie(gateway.users[7]), "New-Api-User": "7"}
    try:
        tasks = [asyncio.ensure_future(auth.authenticate(headers)) for _ in range(10)]
        # Every task runs to its first await (past the cache) before the first call
        # reaches the gateway, which holds it until released.
        await gateway.arrived.wait()
        gateway.hold.set()
        answers = await asyncio.gather(*tasks)
        assert {who.user_id for who in answers} == {7}
        assert auth.calls == 1 and len(gateway.received) == 1
        # other credentials at the same time are their own call
        gateway.hold = asyncio.Event()
        gateway.arrived.clear()
        other = {"Authorization": "legacy-access-token-bob", "New-Api-User": "7"}
        tasks = [asyncio.ensure_future(auth.authenticate(h)) for h in [other, other, headers]]
        await gateway.arrived.wait()
        gateway.hold.set()
        await asyncio.gather(*tasks)
        assert auth.calls == 2  # `headers` was cached, `other` asked once
    finally:
        await auth.close()


async def test_a_cancelled_caller_does_not_fail_the_others(gateway: Gateway) -> None:
    gateway.hold = asyncio.Event()
    auth = GatewayAuth(gateway.url, clock=Clock())
    headers = {"Authorization": "legacy-access-token-bob", "New-Api-User": "7"}
    try:
        first = asyncio.ensure_future(auth.authenticate(headers))
        second = asyncio.ensure_future(auth.authenticate(headers))
        await gateway.arrived.wait()
        first.cancel()
        gateway.hold.set()
        assert (await second).user_id == 7
        assert auth.calls == 1
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await auth.close()


async def test_credentials_are_never_logged_nor_kept(
    seeded: Any, settings: Settings, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bob = gateway.users[7]
    cookie = gateway.session_cookie(bob)
    client = await app_client(seeded, settings, Clock(), gateway_url=gateway.url)
    try:
        for headers in (
            {"Cookie": cookie, "New-Api-User": "7"},
            {"Authorization": "Bearer legacy-access-token-bob", "New-Api-User": "7"},
            {"Authorization": "Bearer wrong-secret-token", "New-Api-User": "7"},
        ):
            await client.get("/api/log/self", headers=headers)
        auth = client.server.app[__import__("service.keys").keys.GATEWAY]
        kept = repr(list(auth._cache.items()))
    finally:
        await client.close()
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    for secret in (cookie.split("=", 1)[1], "legacy-access-token-bob", "wrong-secret-token"):
        assert secret not in logged
        assert secret not in kept


def test_cache_key_tells_headers_apart() -> None:
    assert cache_key({"Cookie": "a", "Authorization": "b"}) != cache_key({"Cookie": "ab"})
    assert cache_key({"Authorization": "x"}) != cache_key({"New-Api-User": "x"})
    assert credentials_of({"Cookie": "c", "X-Other": "o"}) == {"Cookie": "c"}


@pytest.mark.parametrize("url", ["new-api:3000", "ftp://new-api", "http://u:p@new-api:3000"])
def test_bad_gateway_url_is_refused_at_start(settings: Settings, url: str) -> None:
    with pytest.raises(SettingsError, match="GATELOG_GATEWAY_URL"):
        create_app(replace(settings, gateway_url=url))


def test_settings_from_env() -> None:
    parsed = Settings.from_env(
        {
            "GATELOG_GATEWAY_URL": "http://new-api:3000",
            "GATELOG_GATEWAY_AUTH_TTL_SECONDS": "30",
            "GATELOG_TIME_ZONE": "Asia/Shanghai",
        }
    )
    assert parsed.gateway_url == "http://new-api:3000"
    assert parsed.gateway_auth_ttl_seconds == 30
    assert parsed.time_zone == "Asia/Shanghai"
    assert Settings().gateway_auth_ttl_seconds == 10
