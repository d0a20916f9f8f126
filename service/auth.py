"""Bearer-token authentication (pyjwt) and the role/scope checks of the contract.

Claims: ``sub`` (user id), ``username``, ``role`` (1 user, 10 admin, 100 root), ``exp``
(required), optional ``scope`` (space-separated; ``logs:write`` allows ingest).
Missing or invalid credentials are 401; valid but not allowed is 403.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import Forbidden, Unauthorized
from .settings import Settings, SettingsError

ROLE_USER = 1
ROLE_ADMIN = 10
ROLE_ROOT = 100
SCOPE_WRITE = "logs:write"
_USER_ID = re.compile(r"0|[1-9][0-9]{0,18}")  # canonical decimal, ASCII digits only
MAX_TOKEN_BYTES = 8192
ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: int
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role >= ROLE_ADMIN


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def public_keys(pem: str) -> list[str]:
    """The PEM blocks of a text holding one public key or several (during a rotation,
    the new key beside the old one), each checked to be a public key. Kept as PEM text:
    pyjwt then reports a key of the wrong family as InvalidKeyError (TypeError for a
    key object)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(pem)]
    if not blocks:
        raise SettingsError("GATELOG_JWT_PUBLIC_KEY holds no PEM public key")
    keys = []
    for number, block in enumerate(blocks, start=1):
        try:
            load_pem_public_key(block.encode())
        except (ValueError, TypeError):
            raise SettingsError(
                f"GATELOG_JWT_PUBLIC_KEY: PEM block {number} is not a public key"
            ) from None
        keys.append(block)
    return keys


#: verified tokens kept, most recently used last (a dashboard polls with one token)
VERIFIED_TOKENS = 4096


class Authenticator:
    """Verifies bearer tokens. A token that verified is remembered until its ``exp``
    (at most :data:`VERIFIED_TOKENS` of them, the least recently used dropped first), so
    a caller polling with one token pays for its signature check once, not on every
    request (pyjwt's HS256 decode took 0.4 ms of a request's 1.8 ms of service time on
    a loaded machine); the token's text is the key, so an altered token is checked
    anew. ``clock`` tells the time the remembered ``exp`` is compared with."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Principal, int]] = OrderedDict()
        settings.check_auth()
        self._keys: list[str]
        if settings.jwt_public_key:
            self._keys = public_keys(settings.jwt_public_key)
            self._algorithms = ASYMMETRIC_ALGORITHMS
        else:
            assert settings.jwt_secret is not None
            self._keys = [settings.jwt_secret]
            self._algorithms = ["HS256"]
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("malformed Authorization header (expected 'Bearer <token>')")
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized("invalid bearer token: too long")
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if self._clock() < expires:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
            raise Unauthorized("invalid bearer token: expired")
        claims = self._claims(token)
        principal = _principal(claims)
        self._verified[token] = (principal, int(claims["exp"]))
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    def _claims(self, token: str) -> dict[str, Any]:
        """The verified claims. With several keys (a rotation), each is tried in turn
        until one verifies the signature; the claims are then checked once."""
        for key in self._keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=self._algorithms,
                    issuer=self._issuer,
                    audience=self._audience,
                    options={
                        "require": ["exp", "sub", "role"],
                        "verify_aud": self._audience is not None,
                        "verify_iss": self._issuer is not None,
                        # The contract allows an integer `sub`; _principal checks it.
                        "verify_sub": False,
                    },
                )
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                # Not this key. InvalidKeyError: the other asymmetric family (an ES256
                # token for an RSA key) or another curve, which pyjwt does not count as
                # an invalid token: it used to escape as a 500.
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthorized("invalid bearer token: expired") from None
            except jwt.ImmatureSignatureError:
                raise Unauthorized("invalid bearer token: not valid yet") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Unauthorized(f"invalid bearer token: missing claim '{exc.claim}'") from None
            except jwt.PyJWTError:
                raise Unauthorized("invalid bearer token") from None
            return claims
        raise Unauthorized("invalid bearer token")


def valid_user_id(sub: str) -> bool:
    """A ``sub`` the service takes as a user id: canonical ASCII decimal below 2^63."""
    return bool(_USER_ID.fullmatch(sub)) and int(sub) < 2**63


def _principal(claims: dict[str, object]) -> Principal:
    sub, role = claims.get("sub"), claims.get("role")
    if isinstance(sub, bool) or not isinstance(sub, int | str):
        raise Unauthorized("invalid bearer token: 'sub' must be a user id")
    # One user, one subject: int() would also take " 7", "07", "+7", "7_0" and "٧" as 7.
    if isinstance(sub, str) and not _USER_ID.fullmatch(sub):
        raise Unauthorized("invalid bearer token: 'sub' must be a user id")
    user_id = int(sub)
    if user_id < 0 or user_id >= 2**63:
        raise Unauthorized("invalid bearer token: 'sub' out of range")
    if isinstance(role, bool) or not isinstance(role, int):
        raise Unauthorized("invalid bearer token: 'role' must be an integer")
    username = claims.get("username", "")
    scope = claims.get("scope", "")
    if not isinstance(username, str) or not isinstance(scope, str):
        raise Unauthorized("invalid bearer token: 'username' and 'scope' must be strings")
    return Principal(user_id, username, role, frozenset(scope.split()))


def require_role(principal: Principal, role: int) -> None:
    if principal.role < role:
        raise Forbidden(
            "this endpoint needs the admin role"
            if role >= ROLE_ADMIN
            else "this endpoint needs a user role"
        )


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden(f"this endpoint needs the '{scope}' scope")


def issue_token(
    settings: Settings,
    *,
    sub: int | str,
    username: str,
    role: int,
    scope: str | None = None,
    ttl: int = 3600,
    private_key: str | None = None,
    algorithm: str = "HS256",
) -> str:
    """Sign a bearer token with the configured secret (the ``token`` subcommand)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(sub),
        "username": username,
        "role": role,
        "iat": now,
        "exp": now + ttl,
    }
    if scope:
        claims["scope"] = scope
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if private_key is not None:
        return jwt.encode(claims, private_key, algorithm=algorithm)
    if not settings.jwt_secret:
        if settings.jwt_public_key:
            raise SettingsError(
                "token signs with GATELOG_JWT_SECRET, and this setup verifies tokens with "
                "GATELOG_JWT_PUBLIC_KEY: tokens come from the identity provider that holds "
                "the private key"
            )
        raise SettingsError(
            "token needs GATELOG_JWT_SECRET, the secret the service runs with: export it "
            "in this shell too (the README's quick start keeps it in ./.env: `. ./.env`)"
        )
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
