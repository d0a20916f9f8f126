"""Log reads: list pages, search and token lookups, and the views users may see.

Each function takes a :class:`~service.params.LogFilter` (already scoped to the caller)
and returns plain dicts in the API's field names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from .params import LogFilter, Page, like_escape
from .store import Store

ADMIN_FIELDS: tuple[str, ...] = (
    "id", "user_id", "created_at", "type", "content", "username", "token_name",
    "model_name", "quota", "prompt_tokens", "completion_tokens", "use_time", "is_stream",
    "channel_id", "channel_name", "token_id", "group", "ip", "request_id", "other",
)  # fmt: skip
# Users never see which upstream channel served them.
USER_FIELDS: tuple[str, ...] = tuple(
    f for f in ADMIN_FIELDS if f not in ("channel_id", "channel_name")
)
TOKEN_FIELDS: tuple[str, ...] = (
    "id", "type", "content", "model_name", "quota", "created_at", "token_name",
    "prompt_tokens", "completion_tokens", "use_time", "is_stream",
)  # fmt: skip
# Keys of `other` that only admins see (the gateway's formatUserLogs, and audit data).
ADMIN_ONLY_OTHER_KEYS = ("admin_info", "reject_reason", "audit_info")

_EXPRESSIONS = {"created_at": "toUnixTimestamp(created_at)", "group": "`group`"}
ORDER = "ORDER BY created_at DESC, id DESC"


def select_list(fields: Sequence[str]) -> str:
    return ", ".join(_EXPRESSIONS.get(name, name) for name in fields)


def scrub_other(raw: str) -> str:
    """``other`` without the admin-only keys; unparseable text is withheld entirely."""
    if not raw:
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(value, dict):
        return raw if isinstance(value, int | float | str) or value is None else ""
    if not any(key in value for key in ADMIN_ONLY_OTHER_KEYS):
        return raw
    for key in ADMIN_ONLY_OTHER_KEYS:
        value.pop(key, None)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def shape(
    rows: list[tuple[Any, ...]], fields: Sequence[str], user_view: bool
) -> list[dict[str, Any]]:
    items = [dict(zip(fields, row, strict=True)) for row in rows]
    if user_view and "other" in fields:
        for item in items:
            item["other"] = scrub_other(item["other"])
    return items


def with_channel(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Admin list items as the gateway serializes them: the channel id also as
    ``channel`` (its struct tag), the name its own UI reads."""
    for item in items:
        item["channel"] = item["channel_id"]
    return items


async def list_page(
    store: Store,
    flt: LogFilter,
    page: Page,
    fields: Sequence[str],
    user_view: bool,
    keyword: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page newest first, and the exact total (two queries run side by side);
    ``keyword`` as in :func:`search`."""
    flt, extra = keyword_filter(flt, keyword)
    where, params = flt.where()
    params.update(extra)
    page_sql = (
        f"SELECT {select_list(fields)} FROM logs WHERE {where} {ORDER} "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    count_sql = f"SELECT count() FROM logs WHERE {where}"
    rows, count = await asyncio.gather(
        store.query(page_sql, {**params, "limit": page.size, "offset": page.offset}),
        store.query(count_sql, params),
    )
    return shape(rows.rows, fields, user_view), int(count.scalar() or 0)


def keyword_filter(flt: LogFilter, keyword: str | None) -> tuple[LogFilter, dict[str, Any]]:
    """A keyword that names a log type matches that type; any other is a substring
    match, case-insensitive, over content and model_name (served by n-gram indexes)."""
    from .params import LOG_TYPES, TYPE_BY_NAME

    extra: dict[str, Any] = {}
    if keyword is None:
        return flt, extra
    text = keyword.strip()
    number = int(text) if text.isascii() and text.isdigit() and len(text) < 4 else None
    log_type = number if number in LOG_TYPES else TYPE_BY_NAME.get(text.lower())
    if log_type is not None:
        if flt.type is not None and flt.type != log_type:
            flt.extra.append("0")  # the type filter and the keyword's type disagree
        flt.type = log_type
        return flt, extra
    flt.extra.append(
        "(lowerUTF8(content) LIKE lowerUTF8({kw_pattern:String})"
        " OR lowerUTF8(model_name) LIKE lowerUTF8({kw_pattern:String}))"
    )
    extra["kw_pattern"] = "%" + like_escape(keyword) + "%"
    return flt, extra


async def search(
    store: Store,
    flt: LogFilter,
    keyword: str | None,
    page: Page,
    fields: Sequence[str],
    user_view: bool,
) -> list[dict[str, Any]]:
    flt, extra = keyword_filter(flt, keyword)
    where, params = flt.where()
    sql = (
        f"SELECT {select_list(fields)} FROM logs WHERE {where} {ORDER} "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    rows = await store.query(sql, {**params, **extra, "limit": page.size, "offset": page.offset})
    return shape(rows.rows, fields, user_view)


async def find_token(store: Store, key_hash: str) -> dict[str, Any] | None:
    rows = await store.query(
        "SELECT id, user_id, status, name FROM tokens FINAL "
        "WHERE key_hash = {key_hash:String} ORDER BY id LIMIT 1",
        {"key_hash": key_hash},
    )
    found = rows.dicts()
    return found[0] if found else None


async def token_logs(store: Store, token: dict[str, Any], page: Page) -> list[dict[str, Any]]:
    flt = LogFilter(user_id=int(token["user_id"]), token_id=int(token["id"]))
    where, params = flt.where()
    sql = (
        f"SELECT {select_list(TOKEN_FIELDS)} FROM logs WHERE {where} {ORDER} "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    rows = await store.query(sql, {**params, "limit": page.size, "offset": page.offset})
    return shape(rows.rows, TOKEN_FIELDS, user_view=False)
