"""Log reads: list pages, search and token lookups, and the views users may see.

Each function takes a :class:`~service.params.LogFilter` (already scoped to the caller)
and returns plain dicts in the API's field names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import orjson

from .columns import ADMIN_FIELDS as ADMIN_FIELDS
from .columns import TOKEN_VIEW
from .columns import USER_FIELDS as USER_FIELDS
from .columns import select_list as select_list
from .params import LogFilter, Page, like_escape
from .stats import bucket_counts, count_bucket, half_open, rollup_serves
from .store import Store
from .timesql import compare

TOKEN_FIELDS = TOKEN_VIEW
# Keys of `other` that only admins see (the gateway's formatUserLogs, and audit data).
ADMIN_ONLY_OTHER_KEYS = ("admin_info", "reject_reason", "audit_info")

ORDER = "ORDER BY created_at DESC, id DESC"


def _writes_as_stdlib(value: Any) -> bool:
    """True when orjson writes ``value`` byte for byte as ``json.dumps`` (compact,
    non-ASCII kept) does: every float in ``[1e-4, 1e16)`` or zero (outside it the two
    spell exponents differently; an integer past 64 bits, which orjson reads as a float,
    is past 1e16 too). Strings, integers, booleans and null they write alike."""
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is float:
            if item != 0.0 and not 1e-4 <= abs(item) < 1e16:
                return False
        elif (kind is dict or kind is list) and not _writes_as_stdlib(item):
            return False
    return True


def scrub_other(raw: str) -> str:
    """``other`` without the admin-only keys; unparseable text is withheld entirely.

    Exactly what ``json.loads`` / ``json.dumps`` give, through orjson where it agrees
    (2.9x less Python time per row: a user's export shapes every row of a window); the
    stdlib reads what orjson refuses (``NaN``, lone surrogates) or reads otherwise."""
    if not raw:
        return raw
    fast = True
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        fast = False
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
    if fast and _writes_as_stdlib(value):
        return orjson.dumps(value).decode()
    if fast:  # orjson read a number the stdlib reads or writes otherwise (an integer
        # past 64 bits became a float): the stdlib reads the text again
        value = json.loads(raw)
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


#: the engine reads the wide columns lazily, for the rows a query returns only, while its
#: LIMIT (with the OFFSET) is at most query_plan_max_limit_for_lazy_materialization
LAZY_LIMIT = 10_000


def page_sql(fields: Sequence[str], where: str, page: Page, since: bool = False) -> str:
    """The newest-first page of ``logs`` (with ``since``: only rows at or after the
    ``{since:UInt32}`` parameter, see :func:`newest_bound`).

    One statement while the engine's lazy materialization covers the page: it finds the
    page's rows from the narrow columns and reads the wide ones (content, other) for
    those rows only (`EXPLAIN`: ``LazilyReadFromMergeTree``). Deeper pages are read in
    two steps in one statement: the page's keys ``(user_id, created_at, id)`` from the
    narrow columns first, then the rows by key. Measured at 1M rows (engine time, both
    ways alternated in one process, same answers): one statement is 1.1-1.7x faster on
    every list, search and token page of the bench, since naming `logs` twice costs the
    engine a second plan of that table (about 5 ms) and saves it nothing lazy reading
    does not already save."""
    bound = f" AND {compare('created_at', '>=', 'since')}" if since else ""
    paging = "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    if page.offset + page.size <= LAZY_LIMIT:
        return f"SELECT {select_list(fields)} FROM logs WHERE {where}{bound} {ORDER} {paging}"
    keys = f"SELECT user_id, created_at, id FROM logs WHERE {where}{bound} {ORDER} {paging}"
    return (
        f"SELECT {select_list(fields)} FROM logs WHERE {where}{bound} "
        f"AND (user_id, created_at, id) IN ({keys}) {ORDER} LIMIT {{limit:UInt32}}"
    )


def newest_bound(counts: Sequence[tuple[int, int]], need: int) -> int | None:
    """The start of the newest bucket such that the buckets from it on hold at least
    ``need`` rows (``counts``: newest first), so the newest ``need`` rows all lie at or
    after it; ``None`` when all buckets together hold fewer."""
    seen = 0
    for start, rows in counts:
        seen += rows
        if seen >= need:
            return start
    return None


#: the first window a page without rollup counts tries, before the whole table: its
#: newest day (from the table's newest row, answered from part metadata), so a common
#: keyword or a busy token's page reads one or two day partitions, not all of them
FIRST_WINDOW_SECONDS = 86400
_NEWEST_DAY = " AND created_at >= (SELECT max(created_at) - {first_window:UInt32} FROM logs)"


async def newest_page(
    store: Store, fields: Sequence[str], where: str, params: dict[str, Any], page: Page
) -> list[tuple[Any, ...]]:
    """The page newest first where no rollup counts bound it (keyword text, token,
    request id): first within the newest day of the table; a full page from there is
    the answer (every row before that day is older than all of its rows), else the page
    is read again without the bound."""
    paging = {"limit": page.size, "offset": page.offset}
    first = await store.query(
        page_sql(fields, where + _NEWEST_DAY, page),
        {**params, **paging, "first_window": FIRST_WINDOW_SECONDS},
    )
    if len(first.rows) >= page.size:
        return first.rows
    return (await store.query(page_sql(fields, where, page), {**params, **paging})).rows


async def counted_page(
    store: Store,
    flt: LogFilter,
    where: str,
    params: dict[str, Any],
    page: Page,
    fields: Sequence[str],
) -> tuple[list[tuple[Any, ...]], int]:
    """The page newest first and the total, where every filter is a rollup dimension:
    the rollups' counts per day give the total and bound the page to the newest days
    that hold it, so the page reads a few partitions, not all of them."""
    counts = await bucket_counts(store, flt, *half_open(flt.start, flt.end), count_bucket(flt))
    total = sum(n for _, n in counts)
    if total <= page.offset:
        return [], total
    since = newest_bound(counts, page.offset + page.size)
    paging = {"limit": page.size, "offset": page.offset, "since": since or 0}
    sql = page_sql(fields, where, page, since is not None)
    rows = await store.query(sql, {**params, **paging})
    return rows.rows, total


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
    """One page newest first, and the exact total; ``keyword`` as in :func:`search`.

    Where every filter is a rollup dimension, the total comes from the rollups' counts
    per hour (or day), and those counts also bound the page to the newest buckets that
    hold its rows, so the page reads a few partitions, not all of them. Otherwise the
    page and a raw ``count()`` run side by side."""
    flt, extra = keyword_filter(flt, keyword)
    where, params = flt.where()
    params.update(extra)
    if rollup_serves(flt):
        found, total = await counted_page(store, flt, where, params, page, fields)
        return shape(found, fields, user_view), total
    rows, count = await asyncio.gather(
        newest_page(store, fields, where, params, page),
        store.query(f"SELECT count() FROM logs WHERE {where}", params),
    )
    return shape(rows, fields, user_view), int(count.scalar() or 0)


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
    params.update(extra)
    if not rollup_serves(flt):  # keyword text
        return shape(await newest_page(store, fields, where, params, page), fields, user_view)
    # a type keyword: bound the page as a list's (list_page)
    found, _ = await counted_page(store, flt, where, params, page, fields)
    return shape(found, fields, user_view)


#: The token lookup does the same engine work whether the key is known or not: the
#: bloom filter on key_hash would skip every granule for an unknown key and read one for
#: a known (disabled) one, 0.8-0.9 ms apart at the median, so it is not used; every
#: lookup reads key_hash of the whole table and answers exactly one row.
#: bench/token_timing.py measures it (SECURITY.md).
TOKEN_LOOKUP = (
    "SELECT count() AS n, argMin(tuple(id, user_id, status, name), id) AS token "
    "FROM tokens FINAL WHERE key_hash = {key_hash:String}"
)
TOKEN_LOOKUP_SETTINGS = {"use_skip_indexes": 0}


async def find_token(store: Store, key_hash: str) -> dict[str, Any] | None:
    rows = await store.query(TOKEN_LOOKUP, {"key_hash": key_hash}, TOKEN_LOOKUP_SETTINGS)
    n, token = rows.rows[0]
    if not n:
        return None
    return dict(zip(("id", "user_id", "status", "name"), token, strict=True))


async def token_logs(store: Store, token: dict[str, Any], page: Page) -> list[dict[str, Any]]:
    flt = LogFilter(user_id=int(token["user_id"]), token_id=int(token["id"]))
    where, params = flt.where()
    return shape(await newest_page(store, TOKEN_FIELDS, where, params, page), TOKEN_FIELDS,
                 user_view=False)  # fmt: skip
