"""A stand-in for new-api's ``GET /api/user/self``, behaving as spec/newapi-compat.md says
for both of its sign-in schemes.

Legacy (up to v1.0.0-rc.10): a signed ``session`` cookie or an access token in
``Authorization`` (raw or ``Bearer``), either way with ``New-Api-User`` equal to the
user's id (missing, non-integer or different: 401); an invalid token, a disabled user:
HTTP 200 with ``success: false``.

Current (JWT scheme): ``Authorization: Bearer <HS256 JWT>`` whose key is
HMAC-SHA256(SESSION_SECRET, "new-api/auth/access/v1"), checked against a session row and
the user's auth version on every call (expired, revoked, disabled, invalid: 401 with an
``AUTH_*`` code); a non-JWT ``Authorization`` is a personal access token, no
``New-Api-User`` needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

SESSION_SECRET = "stand-in-session-secret"
ACCESS_KEY = hmac.new(SESSION_SECRET.encode(), b"new-api/auth/access/v1", hashlib.sha256).digest()


@dataclass
class User:
    id: int
    username: str
    role: int = 1
    status: int = 1
    access_token: str = ""
    auth_version: int = 1


@dataclass
class Gateway:
    scheme: str = "legacy"  # or "jwt"
    users: dict[int, User] = field(default_factory=dict)
    sessions: dict[str, bool] = field(default_factory=dict)  # sid -> revoked
    received: list[dict[str, str]] = field(default_factory=list)
    #: when set, /api/user/self waits for it (a slow gateway, or a held call)
    hold: asyncio.Event | None = None
    #: set when a call arrives (tests wait for the first one)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    #: a fork that reports a disabled user as success with its status
    reports_disabled: bool = False
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, user: User) -> User:
        self.users[user.id] = user
        return user

    # ---- credentials as the gateway issues them -----------------------------------
    def session_cookie(self, user: User) -> str:
        payload = (
            json.dumps(
                {"id": user.id, "username": user.username, "role": user.role, "status": user.status}
            )
            .encode()
            .hex()
        )
        mac = hmac.new(SESSION_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return f"session={payload}|{mac}"

    def access_jwt(self, user: User, ttl: int = 900, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        sid = uuid.uuid4().hex
        self.sessions[sid] = False
        claims = {
            "iss": "new-api",
            "aud": "new-api-dashboard",
            "sub": str(user.id),
            "token_use": "access",
            "sid": sid,
            "uv": user.auth_version,
            "sv": 1,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, ACCESS_KEY, algorithm="HS256")

    def revoke_all(self) -> None:
        for sid in self.sessions:
            self.sessions[sid] = True

    # ---- the endpoint --------------------------------------------------------------
    async def user_self(self, request: web.Request) -> web.Response:
        self.received.append(dict(request.headers))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return self._jwt_scheme(request) if self.scheme == "jwt" else self._legacy(request)

    def _answer(self, user: User) -> web.Response:
        if user.status != 1 and not self.reports_disabled:
            return _failure(200, "用户已被封禁")
        data = {
            "id": user.id,
            "username": user.username,
            "display_name": user.username.title(),
            "role": user.role,
            "status": user.status,
            "group": "default",
            "quota": 1000,
        }
        return web.json_response({"success": True, "message": "", "data": data})

    def _legacy(self, request: web.Request) -> web.Response:
        user = self._from_cookie(request) or self._from_access_token(request)
        if user is None:
            if request.headers.get("Authorization"):
                return _failure(200, "无权进行此操作，access token 无效")
            return _failure(401, "无权进行此操作，未登录且未提供 access token")
        given = request.headers.get("New-Api-User", "")
        if not given:
            return _failure(401, "无权进行此操作，未提供 New-Api-User")
        if not given.isdigit() or int(given) != user.id:
            return _failure(401, "无权进行此操作，New-Api-User 与登录用户不匹配")
        return self._answer(user)

    def _from_cookie(self, request: web.Request) -> User | None:
        raw = request.cookies.get("session")
        if not raw or "|" not in raw:
            return None
        payload, mac = raw.rsplit("|", 1)
        good = hmac.new(SESSION_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, good):
            return None
        claims = json.loads(bytes.fromhex(payload))
        return self.users.get(int(claims["id"]))

    def _from_access_token(self, request: web.Request) -> User | None:
        token = _bearer(request)
        if not token:
            return None
        for user in self.users.values():
            if user.access_token and hmac.compare_digest(user.access_token, token):
                return user
        return None

    def _jwt_scheme(self, request: web.Request) -> web.Response:
        token = _bearer(request)
        if not token:
            return _failure(401, "未登录", code="AUTH_UNAUTHORIZED")
        if token.count(".") != 2:
            user = self._from_access_token(request)  # a personal access token
            if user is None:
                return _failure(401, "access token 无效", code="AUTH_INVALID")
            if user.status != 1:
                return _failure(401, "用户已被封禁", code="AUTH_DISABLED")
            return self._answer(user)
        try:
            claims = jwt.decode(
                token,
                ACCESS_KEY,
                algorithms=["HS256"],
                audience="new-api-dashboard",
                issuer="new-api",
                options={"require": ["exp", "sub", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            return _failure(401, "登录已过期", code="AUTH_EXPIRED")
        except jwt.PyJWTError:
            return _failure(401, "无效的令牌", code="AUTH_INVALID")
        user = self.users.get(int(claims["sub"]))
        if claims.get("token_use") != "access" or user is None:
            return _failure(401, "无效的令牌", code="AUTH_INVALID")
        if self.sessions.get(claims["sid"], True) or claims.get("uv") != user.auth_version:
            return _failure(401, "会话已失效", code="AUTH_REVOKED")
        if user.status != 1 and not self.reports_disabled:
            return _failure(401, "用户已被封禁", code="AUTH_DISABLED")
        return self._answer(user)

    # ---- life cycle ------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/api/user/self", self.user_self)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self.runner is not None:
            await self.runner.cleanup()


def _bearer(request: web.Request) -> str:
    value = request.headers.get("Authorization", "").strip()
    if value.startswith("Bearer "):
        value = value[len("Bearer ") :].strip()
    return value


def _failure(status: int, message: str, code: str | None = None) -> web.Response:
    body: dict[str, Any] = {"success": False, "message": message}
    if code:
        body["code"] = code
    return web.json_response(body, status=status)
