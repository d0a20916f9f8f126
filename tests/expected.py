"""What the API promises, written out here from the spec, not imported from the service.

A test that takes its expectation from the code under test passes whatever that code
does: drop ``reject_reason`` from the service's list of admin-only keys and a check
that reads the same list still finds nothing to complain about. So the views' field
lists, the admin-only keys of ``other`` and the stored form of a token key are
literals (or hashlib) here, and the tests compare the service with them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# The admin log item, in the API's order (spec/log-api.md, contract "Ingest"; the newer
# gateway's upstream_request_id, spec/newapi-compat.md).
ADMIN_FIELDS = (
    "id", "user_id", "created_at", "type", "content", "username", "token_name",
    "model_name", "quota", "prompt_tokens", "completion_tokens", "use_time", "is_stream",
    "channel_id", "channel_name", "token_id", "group", "ip", "request_id",
    "upstream_request_id", "other",
)  # fmt: skip
# The user's view: the same without the upstream channel (id and name).
USER_FIELDS = (
    "id", "user_id", "created_at", "type", "content", "username", "token_name",
    "model_name", "quota", "prompt_tokens", "completion_tokens", "use_time", "is_stream",
    "token_id", "group", "ip", "request_id", "upstream_request_id", "other",
)  # fmt: skip
# The public token lookup: no user, channel, group, ip or `other` at all.
TOKEN_FIELDS = (
    "id", "type", "content", "model_name", "quota", "created_at", "token_name",
    "prompt_tokens", "completion_tokens", "use_time", "is_stream",
)  # fmt: skip
# Keys of `other` that users never see (the gateway's formatUserLogs removes the first
# two; audit data is admin-only too).
ADMIN_ONLY_OTHER_KEYS = ("admin_info", "reject_reason", "audit_info")
CHANNEL_FIELDS = ("channel_id", "channel_name", "channel")


def stored_hash(bare_key: str) -> str:
    """How a token key is stored: the SHA-256 hex of the key without ``sk-``."""
    assert not bare_key.startswith("sk-"), "pass the key without its sk- prefix"
    return hashlib.sha256(bare_key.encode()).hexdigest()


def user_other(raw: str) -> Any:
    """The ``other`` a user may see of a stored ``other``, parsed (``None``: nothing,
    the text is withheld or empty): a JSON object loses the admin-only keys, a JSON
    scalar stays, anything else (not JSON, a list) is withheld."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in ADMIN_ONLY_OTHER_KEYS}
    if isinstance(value, list):
        return None
    return value


def assert_user_view(item: dict[str, Any], source: dict[str, Any]) -> None:
    """``item`` is what a user may see of the stored row ``source``: exactly the user
    fields, no channel, ``other`` scrubbed of the admin-only keys and otherwise kept."""
    assert list(item) == list(USER_FIELDS), list(item)
    assert not set(item) & set(CHANNEL_FIELDS)
    raw = item["other"]
    for key in ADMIN_ONLY_OTHER_KEYS:
        assert key not in raw, (key, raw)
    got = json.loads(raw) if raw else None
    assert got == user_other(source["other"]), (raw, source["other"])


async def token_by_key(store: Any, bare_key: str) -> dict[str, Any] | None:
    """The stored token whose key is ``bare_key``, looked up by :func:`stored_hash`
    (so a key stored in any other form is not found)."""
    rows = await store.query(
        "SELECT id, user_id, status, name FROM tokens FINAL "
        "WHERE key_hash = {h:String} ORDER BY id LIMIT 1",
        {"h": stored_hash(bare_key)},
    )
    found = rows.dicts()
    return found[0] if found else None
