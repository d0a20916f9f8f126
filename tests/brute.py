"""Brute-force reference answers over raw rows, for property tests: what the API must
return, computed by plain Python over the rows that were ingested."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

TYPE_NAMES = {
    "topup": 1, "top-up": 1, "充值": 1, "consume": 2, "consumption": 2, "消费": 2,
    "manage": 3, "management": 3, "管理": 3, "system": 4, "系统": 4, "error": 5, "错误": 5,
    "refund": 6, "退款": 6, "login": 7, "登录": 7,
}  # fmt: skip


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE as the engine reads it, as a Python regex: ``%`` any text, ``_`` one
    character, a backslash before ``%``, ``_`` or a backslash escapes it, and any other
    backslash (also a last one) is itself."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def matches(row: Mapping[str, Any], q: Mapping[str, Any], *, user_id: int | None) -> bool:
    if user_id is not None and row["user_id"] != user_id:
        return False
    if q.get("type") and row["type"] != q["type"]:
        return False
    if q.get("start_timestamp") and row["created_at"] < q["start_timestamp"]:
        return False
    if q.get("end_timestamp") and row["created_at"] > q["end_timestamp"]:
        return False
    for name in ("username", "token_name", "group", "request_id"):
        if q.get(name) and row[name] != q[name]:
            return False
    if q.get("channel") and row["channel_id"] != q["channel"]:
        return False
    model = q.get("model_name")
    if model:
        if "%" in model:
            if not like_to_regex(model).fullmatch(row["model_name"]):
                return False
        elif row["model_name"] != model:
            return False
    return True


def keyword_matches(row: Mapping[str, Any], keyword: str | None) -> bool:
    if not keyword:
        return True
    text = keyword.strip()
    if text.isascii() and text.isdigit() and len(text) < 4 and 1 <= int(text) <= 7:
        return bool(row["type"] == int(text))
    if text.lower() in TYPE_NAMES:
        return bool(row["type"] == TYPE_NAMES[text.lower()])
    needle = keyword.lower()
    return needle in row["content"].lower() or needle in row["model_name"].lower()


def newest_first(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)


def page(rows: list[Any], p: int, size: int) -> list[Any]:
    return rows[(p - 1) * size : p * size]
