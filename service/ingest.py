"""Ingest: validate a whole batch, assign ids, store it once.

A batch is a JSON array or NDJSON. It is validated whole before anything is written:
the first bad row and field are named in the 400. Rows without an ``id`` get one from
:mod:`service.ids` (53 bits, time-ordered). The insert carries an ``insert_deduplication_token``
derived from the body, so a retried identical batch is stored once (the raw table and
the rollups carry a deduplication window). The answer comes after the insert returns,
with ``async_insert`` off: an acknowledged row is stored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .columns import LOGS, TOKENS, Column
from .errors import BadRequest
from .ids import IdGenerator as IdGenerator
from .store import Store

KEY_SPACE = " \t\r\n\f\v"  # as service/handlers/logs.py strips a looked-up key
MAX_UINT64 = 2**64 - 1
MAX_INT63 = 2**63 - 1
MAX_DAYS_PER_INSERT = 90  # under the engine's max_partitions_per_insert_block (100)

# Defaults of the ingest bounds (each a GATELOG_INGEST_* setting, docs/ingest.md).
DEFAULT_MAX_CONTENT_CHARS = 65_536
DEFAULT_MAX_OTHER_CHARS = 65_536
DEFAULT_MAX_TEXT_CHARS = 1_024
# Per-row bounds of the summed figures: they keep one batch's sum inside Int64 (the
# views add an insert block in Int64); sums over ranges are Int128 (schema/055-058).
DEFAULT_MAX_QUOTA = 10**12
DEFAULT_MAX_TOKENS = 10**9
DEFAULT_CLOCK_SKEW_SECONDS = 300
DEFAULT_MAX_DAYS_PER_BATCH = 31
DEFAULT_MIN_TOKEN_KEY_CHARS = 1


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "int" | "str" | "bool" | "json"
    required: bool = False
    minimum: int = 0
    maximum: int = MAX_INT63
    max_len: int = 1 << 20
    default: Any = None


def log_fields(
    *,
    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
    max_other_chars: int = DEFAULT_MAX_OTHER_CHARS,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    max_quota: int = DEFAULT_MAX_QUOTA,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_created_at: int = 2**32 - 1,
) -> tuple[Field, ...]:
    """The columns of an ingested log with their bounds (from :mod:`service.columns`)."""
    bounds = {
        "content": max_content_chars,
        "other": max_other_chars,
        "text": max_text_chars,
        "quota": max_quota,
        "tokens": max_tokens,
        "created_at": max_created_at,
    }
    return tuple(_field(column, bounds) for column in LOGS)


def _field(column: Column, bounds: dict[str, int]) -> Field:
    """A column's ingest field: its type's range or length, narrowed by its bound."""
    bound = bounds[column.bound] if isinstance(column.bound, str) else column.bound
    if column.kind != "int":
        return Field(column.name, column.kind, column.required, max_len=bound or 1 << 20)
    low, high = column.value_range
    if bound is not None:
        low, high = (-bound if low < 0 else low), bound
    return Field(column.name, "int", column.required, minimum=low, maximum=high)


def log_fields_for(settings: Any, now: float | None = None) -> tuple[Field, ...]:
    """The log columns bounded by ``settings``; ``created_at`` at most now + the skew."""
    now = time.time() if now is None else now
    return log_fields(
        max_content_chars=settings.ingest_max_content_chars,
        max_other_chars=settings.ingest_max_other_chars,
        max_text_chars=settings.ingest_max_text_chars,
        max_quota=settings.ingest_max_quota,
        max_tokens=settings.ingest_max_tokens,
        max_created_at=min(2**32 - 1, int(now) + settings.ingest_clock_skew_seconds),
    )


LOG_FIELDS: tuple[Field, ...] = log_fields()
LOG_COLUMNS = tuple(f.name for f in LOG_FIELDS)

TOKEN_FIELDS: tuple[Field, ...] = (
    Field("id", "int", required=True, minimum=1),
    Field("key", "str", required=True, max_len=256),
    Field("name", "str", max_len=1024),
    Field("user_id", "int", required=True),
    Field("status", "int", minimum=0, maximum=255, default=1),
)
_DEFAULTS = {"int": 0, "str": "", "bool": False, "json": ""}


def parse_body(body: bytes, content_type: str) -> list[Any]:
    """A JSON array, or NDJSON (one object per line)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body: not valid UTF-8") from None
    if content_type in ("application/x-ndjson", "application/jsonl", "application/ndjson"):
        rows = []
        # Lines end at "\n" only: str.splitlines() would also cut at U+0085, U+2028 and
        # friends, which JSON strings may hold unescaped.
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip(" \t\r"):
                try:
                    rows.append(json.loads(line))
                except RecursionError:
                    raise BadRequest(f"body: line {number} is nested too deeply") from None
                except ValueError:
                    raise BadRequest(f"body: line {number} is not valid JSON") from None
        return rows
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    except ValueError:
        raise BadRequest("body: not valid JSON (expected an array of objects, or NDJSON)") from None
    if not isinstance(value, list):
        raise BadRequest("body: expected a JSON array of objects")
    return value


def validate(rows: list[Any], fields: Iterable[Field], max_rows: int) -> list[list[Any]]:
    """Rows as value lists in field order; the first bad row and field raise a 400."""
    fields = tuple(fields)
    if not rows:
        raise BadRequest("body: the batch is empty")
    if len(rows) > max_rows:
        raise BadRequest(f"body: {len(rows)} rows is more than the limit of {max_rows} per batch")
    out: list[list[Any]] = []
    for index, row in enumerate(rows, start=1):  # rows numbered as a person counts them
        if not isinstance(row, dict):
            raise BadRequest(f"row {index}: expected a JSON object")
        values: list[Any] = []
        for f in fields:
            value = row.get(f.name)
            if value is None:
                if f.required:
                    raise BadRequest(f"row {index}: field '{f.name}' is required")
                if f.name == "id":
                    values.append(None)
                else:
                    values.append(_DEFAULTS[f.kind] if f.default is None else f.default)
                continue
            values.append(_check(index, f, value))
        out.append(values)
    return out


def _check(index: int, f: Field, value: Any) -> Any:
    where = f"row {index}: field '{f.name}'"
    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise BadRequest(f"{where} must be an integer")
        if not f.minimum <= value <= f.maximum:
            raise BadRequest(f"{where} must be between {f.minimum} and {f.maximum}")
        return value
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise BadRequest(f"{where} must be true or false")
        return value
    if f.kind == "json":
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if not isinstance(value, str):
            raise BadRequest(f"{where} must be a JSON string")
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string")
    if len(value) > f.max_len:
        raise BadRequest(f"{where} is longer than {f.max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800" in JSON) decodes but cannot be stored: refused
        # here, before anything of the batch is written.
        raise BadRequest(f"{where} is not valid Unicode (a lone surrogate)") from None
    return value


def check_days(rows: list[list[Any]], max_days: int) -> None:
    """A batch spans at most ``max_days`` days (each day is a partition of ``logs``)."""
    at = LOG_COLUMNS.index("created_at")
    days = len({row[at] // 86400 for row in rows})
    if days > max_days:
        raise BadRequest(
            f"body: the batch spans {days} days, more than the limit of {max_days} "
            "(GATELOG_INGEST_MAX_DAYS_PER_BATCH); send one batch per day, "
            "or import history with the import command"
        )


def check_token_keys(rows: list[list[Any]], min_chars: int) -> None:
    """Keys count without surrounding whitespace and the ``sk-`` prefix: no blank keys."""
    for index, row in enumerate(rows, start=1):
        key = row[1].strip(KEY_SPACE)
        if key.startswith("sk-"):
            key = key[3:]
        if len(key) < min_chars:
            raise BadRequest(
                f"row {index}: field 'key' must have at least {min_chars} "
                "characters besides the 'sk-' prefix and surrounding whitespace"
            )


class IdSource(Protocol):
    """Where ids come from: :class:`~service.ids.NodeIds` in the service."""

    async def take(self, count: int) -> list[int]: ...


def batch_token(body: bytes, kind: str) -> str:
    return hashlib.sha256(kind.encode() + b"\0" + body).hexdigest()


async def store_logs(store: Store, rows: list[list[Any]], token: str, ids: IdSource) -> int:
    """Insert validated rows; returns how many. Rows spanning many days go in chunks of
    at most ``MAX_DAYS_PER_INSERT`` days, each with its own deterministic dedup token."""
    missing = [row for row in rows if row[0] is None]
    for row, new_id in zip(missing, await ids.take(len(missing)) if missing else [], strict=True):
        row[0] = new_id
    day_index = LOG_COLUMNS.index("created_at")
    days = sorted({row[day_index] // 86400 for row in rows})
    chunks: list[list[list[Any]]]
    if len(days) <= MAX_DAYS_PER_INSERT:
        chunks = [rows]
    else:
        chunk_of = {day: i // MAX_DAYS_PER_INSERT for i, day in enumerate(days)}
        chunks = [[] for _ in range(chunk_of[days[-1]] + 1)]
        for row in rows:
            chunks[chunk_of[row[day_index] // 86400]].append(row)
    for number, chunk in enumerate(chunks):
        await store.insert(
            "logs",
            chunk,
            LOG_COLUMNS,
            settings={"insert_deduplication_token": f"{token}:{number}", "async_insert": 0},
        )
    return len(rows)


async def store_tokens(store: Store, rows: list[list[Any]], hash_key: Callable[[str], str]) -> int:
    version = time.time_ns()
    values = [[row[0], hash_key(row[1]), row[2], row[3], row[4], version] for row in rows]
    await store.insert(
        "tokens",
        values,
        tuple(c.name for c in TOKENS),
        settings={"async_insert": 0},
    )
    return len(values)
