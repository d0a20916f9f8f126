"""Authentication and authorization: the contract's claims, 401 versus 403."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.auth import Authenticator
from service.errors import Unauthorized
from service.settings import Settings, SettingsError
from tests.conftest import SECRET, bearer, make_token

NOW = int(time.time())


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "7", "username": "bob", "role": 1, "exp": NOW + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs(payload: dict[str, Any], key: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=headers or None)


def pem_pair(kind: str) -> tuple[str, str]:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP384R1() if kind == "ec384" else ec.SECP256R1())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


AUTH = Authenticator(Settings(jwt_secret=SECRET))


def test_valid_token_gives_the_principal() -> None:
    who = AUTH.authenticate("Bearer " + hs(claims(sub=42, role=10, scope="logs:write x")))
    assert (who.user_id, who.username, who.role, who.is_admin) == (42, "bob", 10, True)
    assert who.scopes == {"logs:write", "x"}


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, "missing Authorization"),
        ("Basic abc", "malformed"),
        ("Bearer ", "malformed"),
        ("Bearer " + hs(claims(exp=NOW - 10)), "expired"),
        ("Bearer " + hs(claims(exp=None)), "missing claim 'exp'"),
        ("Bearer " + hs(claims(sub=None)), "missing claim 'sub'"),
        ("Bearer " + hs(claims(role=None)), "missing claim 'role'"),
        ("Bearer " + hs(claims(nbf=NOW + 600)), "not valid yet"),
        ("Bearer " + hs(claims(role=100), key="someone-else's-secret-0123456789"), "invalid"),
        ("Bearer " + hs(claims(sub="abc")), "'sub' must be a user id"),
        # Other spellings of user 7 are not user 7: one subject per user.
        ("Bearer " + hs(claims(sub="07")), "'sub' must be a user id"),
        ("Bearer " + hs(claims(sub=" 7")), "'sub' must be a user id"),
        ("Bearer " + hs(claims(sub="+7")), "'sub' must be a user id"),
        ("Bearer " + hs(claims(sub="7_0")), "'sub' must be a user id"),
        ("Bearer " + hs(claims(sub="\u0667")), "'sub' must be a user id"),
        ("Bearer " + hs(claims(sub="-1")), "'sub' must be a user id"),
        ("Bearer " + hs(claims(sub=-1)), "'sub' out of range"),
        ("Bearer " + hs(claims(sub=str(2**63))), "'sub' out of range"),
        ("Bearer " + hs(claims(sub=1.5)), "'sub' must be a user id"),
        ("Bearer " + hs(claims(role="10")), "'role' must be an integer"),
        ("Bearer " + jwt.encode(claims(), None, algorithm="none"), "invalid"),
        ("Bearer " + "a" * 9000, "too long"),
    ],
)
def test_bad_credentials_are_401(header: str | None, fragment: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        AUTH.authenticate(header)
    assert fragment in caught.value.message


@pytest.mark.parametrize("kind,algorithm", [("rsa", "RS256"), ("ec", "ES256")])
def test_public_key_verification(kind: str, algorithm: str) -> None:
    private, public = pem_pair(kind)
    auth = Authenticator(Settings(jwt_public_key=public))
    token = jwt.encode(claims(), private, algorithm=algorithm)
    assert auth.authenticate("Bearer " + token).user_id == 7
    # The classic confusion attack: HS256 signed with the public key as the secret.
    with pytest.raises(Unauthorized):
        auth.authenticate("Bearer " + hs256_by_hand(claims(role=100), public.encode()))


def hs256_by_hand(payload: dict[str, Any], key: bytes) -> str:
    """pyjwt refuses to sign with a PEM key as an HMAC secret; an attacker would not."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(payload).encode())
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def test_issuer_and_audience_are_checked_when_set() -> None:
    auth = Authenticator(Settings(jwt_secret=SECRET, jwt_issuer="gw", jwt_audience="gatelog"))
    good = hs(claims(iss="gw", aud="gatelog"))
    assert auth.authenticate("Bearer " + good).user_id == 7
    for bad in (claims(iss="other", aud="gatelog"), claims(iss="gw", aud="x"), claims()):
        with pytest.raises(Unauthorized):
            auth.authenticate("Bearer " + hs(bad))


def test_no_key_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match="GATELOG_JWT_SECRET"):
        Authenticator(Settings())


@pytest.mark.parametrize(
    ("path", "role", "scope", "status"),
    [
        ("/api/log/", 1, None, 403),
        ("/api/log/", 1, "logs:write", 403),  # the write scope does not make an admin
        ("/api/log/", 10, None, 200),
        ("/api/log/", 100, None, 200),
        ("/api/log/self", 1, None, 200),
        ("/api/log/self", 0, None, 403),
        ("/api/log/search", 1, None, 403),
        ("/api/log/self/search", 1, None, 200),
    ],
)
async def test_roles_per_route(
    client: Any, path: str, role: int, scope: str | None, status: int
) -> None:
    response = await client.get(path, headers=bearer(make_token(5, role, scope=scope)))
    body = await response.json()
    assert response.status == status
    assert body["success"] is (status == 200)
    if status != 200:
        assert body["data"] is None


async def test_invalid_token_never_returns_data(client: Any) -> None:
    forged = hs(claims(role=100), key="a-different-secret-of-enough-length")
    for path in ("/api/log/", "/api/log/self", "/api/log/search"):
        response = await client.get(path, headers={"Authorization": "Bearer " + forged})
        assert response.status == 401
        assert (await response.json())["data"] is None


@pytest.mark.parametrize(
    ("configured", "signer", "algorithm"),
    [("rsa", "ec", "ES256"), ("ec", "rsa", "RS256"), ("ec", "ec384", "ES384")],
)
async def test_a_token_of_the_other_key_family_is_401_not_500(
    make_client: Any, configured: str, signer: str, algorithm: str
) -> None:
    # pyjwt raises InvalidKeyError here, which is not an InvalidTokenError.
    _, public = pem_pair(configured)
    private, _ = pem_pair(signer)
    forged = jwt.encode(claims(role=100), private, algorithm=algorithm)
    with pytest.raises(Unauthorized, match="invalid bearer token"):
        Authenticator(Settings(jwt_public_key=public)).authenticate("Bearer " + forged)
    client = await make_client(jwt_secret=None, jwt_public_key=public)
    response = await client.get("/api/log/", headers=bearer(forged))
    assert (response.status, (await response.json())["data"]) == (401, None)


def test_a_key_rotation_accepts_the_old_and_the_new_key_only() -> None:
    """GATELOG_JWT_PUBLIC_KEY may hold several PEM keys: during a rotation, tokens of the
    old and of the new key verify; any other key's do not, and claims are still checked."""
    old_private, old_public = pem_pair("rsa")
    new_private, new_public = pem_pair("ec")
    other_private, _ = pem_pair("ec")
    auth = Authenticator(Settings(jwt_public_key=old_public + "\n" + new_public))
    assert auth.authenticate("Bearer " + jwt.encode(claims(), old_private, "RS256")).user_id == 7
    assert auth.authenticate("Bearer " + jwt.encode(claims(), new_private, "ES256")).user_id == 7
    for token, fragment in (
        (jwt.encode(claims(role=100), other_private, "ES256"), "invalid bearer token"),
        (jwt.encode(claims(exp=NOW - 10), new_private, "ES256"), "expired"),
        (hs256_by_hand(claims(role=100), new_public.encode()), "invalid bearer token"),
    ):
        with pytest.raises(Unauthorized, match=fragment):
            auth.authenticate("Bearer " + token)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", "holds no PEM public key"),
        (pem_pair("rsa")[1] + pem_pair("rsa")[0], "PEM block 2 is not a public key"),
    ],
)
def test_a_public_key_setting_without_valid_keys_refuses_to_start(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Authenticator(Settings(jwt_public_key=text))


ATTACKS = {
    "alg none": jwt.encode(claims(role=100), None, algorithm="none"),
    "wrong key": hs(claims(role=100), key="a-different-secret-of-enough-length"),
    "expired": hs(claims(role=100, exp=NOW - 10)),
    "nbf in the future": hs(claims(role=100, nbf=NOW + 600)),
    "no sub": hs(claims(role=100, sub=None)),
    "no role": hs(claims(role=None)),
    "no exp": hs(claims(role=100, exp=None)),
    # A user's real token with the payload of an admin's: the signature no longer fits.
    "role raised in the payload": ".".join(
        [hs(claims()).split(".")[0], hs(claims(role=100)).split(".")[1], hs(claims()).split(".")[2]]
    ),
    "oversized": hs(claims(role=100, pad="x" * 9000)),
}
ROUTES = [
    ("GET", "/api/log/"), ("GET", "/api/log/search?keyword=a"), ("GET", "/api/log/stat"),
    ("GET", "/api/log/series"), ("GET", "/api/log/export"),
    ("DELETE", "/api/log/?target_timestamp=1"), ("GET", "/api/log/self"),
    ("GET", "/api/log/self/export"), ("GET", "/api/log/self/stat"),
    ("POST", "/api/internal/tokens"),
]  # fmt: skip
ADMIN_ROUTES = [(m, p) for m, p in ROUTES if "/self" not in p and "/internal" not in p]


async def test_no_attack_token_gets_data_on_any_route(client: Any, store: Any) -> None:
    """Each forged, stale, incomplete or oversized token on each protected route, and a
    user token with the write scope on each admin route: 401 or 403 in the envelope,
    never data; nothing is written or deleted."""
    from tests.conftest import ingest, log_row

    await ingest(client, [log_row(user_id=7, created_at=NOW - 86400)])
    writer_user = hs(claims(role=1, scope="logs:write"))
    cases = [(name, token, route) for name, token in ATTACKS.items() for route in ROUTES]
    cases += [("write scope, role 1", writer_user, route) for route in ADMIN_ROUTES]
    body = [{"id": 1, "key": "k", "name": "t", "user_id": 7, "status": 1}]
    for name, token, (method, path) in cases:
        response = await client.request(
            method, path, headers=bearer(token), json=body if method == "POST" else None
        )
        assert response.content_type == "application/json", (name, path)
        answer = await response.json()
        assert response.status in (401, 403), (name, path, response.status)
        assert (answer["success"], answer["data"]) == (False, None), (name, path)
    rows = await store.query("SELECT count() FROM logs")
    tokens = await store.query("SELECT count() FROM tokens")
    assert (rows.scalar(), tokens.scalar()) == (1, 0)


def test_a_remembered_token_still_expires_and_an_altered_one_is_checked_again() -> None:
    start = int(time.time())
    now = [float(start)]
    auth = Authenticator(Settings(jwt_secret=SECRET), clock=lambda: now[0])
    token = hs(claims(sub=7, role=1, exp=start + 600))
    assert auth.authenticate("Bearer " + token).user_id == 7
    assert auth.authenticate("Bearer " + token).user_id == 7  # remembered
    # the same claims signed with another key: a different text, verified (and refused)
    forged = hs(claims(sub=7, role=100, exp=start + 600), key="someone-else's-secret-0123456789")
    with pytest.raises(Unauthorized):
        auth.authenticate("Bearer " + forged)
    now[0] = start + 600  # the second its exp names: expired, as pyjwt counts it
    with pytest.raises(Unauthorized) as caught:
        auth.authenticate("Bearer " + token)
    assert "expired" in caught.value.message


def test_the_remembered_tokens_are_bounded() -> None:
    from service.auth import VERIFIED_TOKENS

    auth = Authenticator(Settings(jwt_secret=SECRET))
    exp = int(time.time()) + 600
    tokens = [hs(claims(sub=sub, role=1, exp=exp)) for sub in range(VERIFIED_TOKENS + 10)]
    for token in tokens:
        auth.authenticate("Bearer " + token)
    assert len(auth._verified) == VERIFIED_TOKENS
    assert tokens[0] not in auth._verified and tokens[-1] in auth._verified  # oldest dropped
