"""The columnar ingest path (msgspec + Arrow) against the reference path (stdlib json and
per-field validation): for any body, the same table or the same 400 message. No engine."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import BadRequest
from tests.conftest import missing

try:
    import msgspec  # noqa: F401  (a dependency; the columnar path needs it)
except ImportError:
    missing("msgspec is not installed: pip install -e '.[test]'")
from service.ingest import _fast_logs, log_fields, log_table, parse_body, parse_logs, validate

FIELDS = log_fields(max_content_chars=40, max_text_chars=12, max_created_at=2_000_000_000)
NDJSON = "application/x-ndjson"
ARRAY = "application/json"

# text up to 2 characters past the text bound (12), and text within it
text = st.text(st.characters(codec="utf-8"), max_size=14) | st.sampled_from(["", "ü", "中文", "😀"])
short = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "ü", "中文", "😀"]
)
integer = st.integers(-(2**64), 2**64) | st.integers(-5, 300)
value = st.one_of(
    st.none(),
    st.booleans(),
    integer,
    st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([12.0, 1e16, -0.0]),
    text,
    st.lists(integer | text, max_size=3),
    st.dictionaries(text, integer | text | st.floats(allow_nan=False), max_size=3),
)
good = st.fixed_dictionaries(
    {
        "user_id": st.integers(0, 2**63 - 1),
        "created_at": st.integers(1, 2_000_000_000),
        "type": st.integers(0, 255),
    },
    optional={
        "id": st.integers(1, 2**63 - 1) | st.none(),
        "content": short,
        "quota": st.integers(-(10**12), 10**12),
        "is_stream": st.booleans(),
        "channel_id": st.integers(0, 2**32 - 1),
        "group": short,
        "other": short | st.dictionaries(short, st.integers(-5, 300) | short, max_size=1),
        "unknown": value,
    },
)
# a good row with one field possibly anything at all
names = [f.name for f in FIELDS] + ["unknown"]
row = st.one_of(
    good, st.tuples(good, st.sampled_from(names), value).map(lambda t: {**t[0], t[1]: t[2]})
)


def reference(body: bytes, content_type: str) -> Any:
    try:
        return log_table(validate(parse_body(body, content_type), FIELDS, 50)).to_pylist()
    except BadRequest as exc:
        return exc.message


def columnar(body: bytes, content_type: str) -> Any:
    try:
        return parse_logs(body, content_type, FIELDS, 50).to_pylist()
    except BadRequest as exc:
        return exc.message


def bodies(rows: list[Any]) -> list[tuple[bytes, str]]:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    return [
        (("[" + ",".join(lines) + "]").encode(), ARRAY),
        ("\n".join(lines).encode(), NDJSON),
        (("\r\n \n".join(lines) + "\r\n").encode(), NDJSON),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, min_size=0, max_size=6))
def test_same_answer_as_the_reference_path(rows: list[Any]) -> None:
    for body, content_type in bodies(rows):
        assert columnar(body, content_type) == reference(body, content_type)


@settings(max_examples=60, deadline=None)
@given(st.lists(good, min_size=1, max_size=6))
def test_good_batches_take_the_columnar_path(rows: list[Any]) -> None:
    for body, content_type in bodies(rows):
        fast = _fast_logs(body, content_type, FIELDS, 50)
        assert fast is not None
        assert fast.to_pylist() == reference(body, content_type)


@pytest.mark.parametrize(
    "body",
    [
        b'{"user_id": 1, "created_at": 5, "type": 2}{"user_id": 1, "created_at": 5, "type": 2}',
        b'{"user_id": 1, "created_at": 5, "type": 2, "x": "\xff"}',
        b'{"user_id": 1, "created_at": 5, "type": 2, "content": "\\ud800"}',
        b'{"user_id": 1, "created_at": 5, "type": 2, "x": NaN}',
        b'{"user_id": 1, "created_at": 5.0, "type": 2}',
        b'{"user_id": 1, "created_at": 5, "type": 2, "other": {"a": 1e16}}',
        b'\xef\xbb\xbf{"user_id": 1, "created_at": 5, "type": 2}',
        b'{"user_id": 1, "created_at": 5, "type": 2}\n\x0c\n',
        b'{"user_id": 1, "created_at": 5, "type": 2, "quota": 123456789012345678901234567890}',
        b"",
        b"\n \r\n",
    ],
)
def test_odd_bodies_get_the_reference_answer(body: bytes) -> None:
    for content_type in (NDJSON, ARRAY):
        for wrapped in (body, b"[" + body + b"]"):
            assert columnar(wrapped, content_type) == reference(wrapped, content_type)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, min_size=1, max_size=7))
def test_same_answer_when_decoded_in_chunks(rows: list[Any]) -> None:
    # A batch is decoded a few rows at a time: a bad row in any chunk, and good rows
    # across chunk boundaries, give the reference path's answer.
    import service.ingest as ingest

    chunk = ingest.DECODE_CHUNK_ROWS
    ingest.DECODE_CHUNK_ROWS = 2
    try:
        for body, content_type in bodies(rows):
            assert columnar(body, content_type) == reference(body, content_type)
    finally:
        ingest.DECODE_CHUNK_ROWS = chunk
