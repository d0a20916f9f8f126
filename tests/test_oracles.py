"""The brute-force oracles and the service against examples worked out by hand.

``tests/brute*.py`` state the rules (which keyword names a type, which bucket a second
falls in) in their own code; the property tests then compare the service with them. A
rule both got wrong in the same way would pass every property test, so here each rule
is pinned by literal examples, checked against the oracle and against the service.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import brute, brute_stats
from tests.conftest import ADMIN, ingest, log_row

BASE = 1_790_000_000  # 2026-09-21 14:13:20 UTC
# A keyword, and the ids it finds among ROWS (id i: type i up to 7, then 3; content
# "call <i>").
KEYWORD_EXAMPLES = [
    ("2", [2]),  # a type number is the type, not the digit in "call 2" or "call 12"
    (" 5 ", [5]),  # trimmed
    ("consume", [2]),
    ("Consumption", [2]),
    ("top-up", [1]),
    ("退款", [6]),
    ("ERROR", [5]),
    ("login", [7]),
    ("management", [10, 9, 8, 3]),
    ("8", [8]),  # not a type: the substring "8" (content "call 8")
    ("0002", []),  # four digits are text; no content has "0002"
    ("002", [2]),  # fewer than four digits: the number 2
    ("call 1", [10, 1]),  # text: "call 1" and "call 10", newest first
    ("GPT", [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),  # case-insensitive, over model_name too
    ("%", []),  # LIKE characters are literal
]
ROWS = [
    dict(
        id=i, type=i if i <= 7 else 3, content=f"call {i}", model_name="gpt-4", created_at=BASE + i
    )
    for i in range(1, 11)
]
# (interval, a second, the start of its bucket): UTC-aligned, the end second inclusive.
BUCKET_EXAMPLES = [
    ("minute", 1_790_000_000, 1_789_999_980),
    ("minute", 1_789_999_980, 1_789_999_980),
    ("minute", 1_790_000_039, 1_789_999_980),
    ("hour", 1_790_000_000, 1_789_999_200),
    ("hour", 1_790_002_799, 1_789_999_200),
    ("hour", 1_790_002_800, 1_790_002_800),
    ("day", 1_790_000_000, 1_789_948_800),  # 2026-09-21 00:00 UTC
    ("day", 1_790_035_199, 1_789_948_800),  # 23:59:59 the same day
    ("day", 1_790_035_200, 1_790_035_200),
]


def oracle_rows() -> list[dict[str, Any]]:
    return [log_row(**r) for r in ROWS]


@pytest.mark.parametrize(("keyword", "ids"), KEYWORD_EXAMPLES)
def test_the_keyword_oracle_reads_keywords_as_worked_out(keyword: str, ids: list[int]) -> None:
    found = [
        r["id"] for r in brute.newest_first(oracle_rows()) if brute.keyword_matches(r, keyword)
    ]
    assert found == ids


async def test_the_service_reads_keywords_as_worked_out(make_client: Any) -> None:
    client = await make_client()
    await ingest(client, oracle_rows())
    for keyword, ids in KEYWORD_EXAMPLES:
        response = await client.get(
            "/api/log/search", params={"keyword": keyword, "page_size": "50"}, headers=ADMIN
        )
        body = await response.json()
        assert response.status == 200, body
        assert [i["id"] for i in body["data"]] == ids, keyword


@pytest.mark.parametrize(("interval", "second", "start"), BUCKET_EXAMPLES)
def test_the_bucket_oracle_puts_seconds_where_worked_out(
    interval: str, second: int, start: int
) -> None:
    row = log_row(id=1, created_at=second, type=2, quota=7)
    total, _ = brute_stats.series(
        [row], {"start_timestamp": start - 1, "end_timestamp": second}, None, second, interval,
        None,
    )  # fmt: skip
    assert [b["timestamp"] for b in total if b["requests"]] == [start]


async def test_the_service_puts_seconds_in_buckets_as_worked_out(make_client: Any) -> None:
    client = await make_client()
    rows = [
        log_row(id=i + 1, created_at=second, type=2, quota=i + 1, user_id=1)
        for i, (_, second, _) in enumerate(BUCKET_EXAMPLES)
    ]
    await ingest(client, rows)
    for i, (interval, second, start) in enumerate(BUCKET_EXAMPLES):
        size = brute_stats.SIZES[interval]
        query = {"interval": interval, "start_timestamp": str(start),
                 "end_timestamp": str(start + size - 1)}  # fmt: skip
        response = await client.get("/api/log/series", params=query, headers=ADMIN)
        body = await response.json()
        assert response.status == 200, body
        buckets = body["data"]["buckets"]
        assert [b["timestamp"] for b in buckets] == [start], (interval, second)
        # the bucket [start, start + size) holds exactly the examples' rows in it
        inside = [r for r in rows if start <= r["created_at"] < start + size]
        assert i + 1 in [r["id"] for r in inside]
        assert buckets[0]["quota"] == sum(r["quota"] for r in inside), (interval, second)
