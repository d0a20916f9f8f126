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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

try:
    import msgspec
except ImportError:  # an environment installed before the dependency: the reference path
    msgspec = None  # type: ignore[assignment]

from .columns import LOGS, TOKENS, Column
from .errors import BadRequest
from .ids import IdGenerator as IdGenerator
from .store import Store
from .tokenhash import key_length

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


def check_token_keys(rows: list[list[Any]], min_chars: int) -> None:
    """Keys count without surrounding whitespace and the ``sk-`` prefix: no blank keys."""
    for index, row in enumerate(rows, start=1):
        if key_length(row[1]) < min_chars:
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


# -- the columnar path of logs ------------------------------------------------------------
#
# A batch of logs is decoded by msgspec straight into typed row structs (types checked by
# the decoder), turned into columns, checked per column with Arrow compute (bounds,
# lengths, required fields) and inserted as one Arrow table. A batch the fast path does not
# take as it stands (any bad value, but also a float where an integer goes, which the
# reference path accepts when whole) goes through the reference path above
# (parse_body + validate), which accepts it or names the first bad row and field: what is
# accepted and every message are the reference path's by construction, and the fast path
# only decides how fast a good batch goes. Measured in bench/write.py and docs/benchmarks.md.

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/ndjson")
DECODE_CHUNK_ROWS = 2048

#: the Arrow types `logs` is loaded as (the column catalogue, service/columns.py)
LOG_ARROW_TYPES: dict[str, pa.DataType] = {c.name: getattr(pa, c.arrow_type)() for c in LOGS}

_DECODED: dict[str, Any] = {
    "int": int | None,
    "str": str | None,
    "bool": bool | None,
    "json": str | dict[str, Any] | list[Any] | None,
}
# What the fast path gives up on: the reference path then decides (and names the error).
_NOT_FAST: tuple[type[BaseException], ...] = (
    RecursionError,
    OverflowError,
    TypeError,
    pa.ArrowException,
    *((msgspec.MsgspecError,) if msgspec is not None else ()),
)


def _row_struct(fields: Sequence[Field]) -> Any:
    return msgspec.defstruct("LogRow", [(f.name, _DECODED[f.kind], None) for f in fields], gc=False)


_LOG_SHAPE = tuple((f.name, f.kind) for f in LOG_FIELDS)
if msgspec is not None:
    _LOG_ROW = _row_struct(LOG_FIELDS)
    _LINE_DECODER = msgspec.json.Decoder(_LOG_ROW)
    _RAW_ARRAY_DECODER = msgspec.json.Decoder(list[msgspec.Raw])


def parse_logs(body: bytes, content_type: str, fields: Sequence[Field], max_rows: int) -> pa.Table:
    """A batch of logs as an Arrow table of ``LOG_COLUMNS`` (``id`` null where none was
    given, other absent values their defaults); a bad batch raises the 400 of
    :func:`validate`."""
    if tuple((f.name, f.kind) for f in fields) != _LOG_SHAPE:
        raise ValueError("parse_logs takes the log fields (log_fields / log_fields_for)")
    table = _fast_logs(body, content_type, fields, max_rows) if msgspec is not None else None
    if table is None:
        table = log_table(validate(parse_body(body, content_type), fields, max_rows))
    return table


def log_table(rows: list[list[Any]]) -> pa.Table:
    """Validated rows (:func:`validate` of the log fields) as an Arrow table."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in LOG_COLUMNS]
    return pa.table(
        {
            name: pa.array(values, LOG_ARROW_TYPES[name])
            for name, values in zip(LOG_COLUMNS, columns, strict=True)
        }
    )


def _valid_utf8(body: bytes) -> bool:
    """Whether ``body`` is UTF-8, checked in place (no decoded copy of the body)."""
    offsets = pa.array([0, len(body)], pa.int64()).buffers()[1]
    whole = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(body)])
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _fast_logs(
    body: bytes, content_type: str, fields: Sequence[Field], max_rows: int
) -> pa.Table | None:
    """The batch as columns when every value is plainly good; None hands it to the
    reference path."""
    if not _valid_utf8(body):
        return None
    try:
        items: list[Any]
        if content_type in NDJSON_TYPES:
            # One line, one value: decoded line by line (a line holding two objects is not
            # valid NDJSON); lines end at "\n" only and blank lines are skipped, as in
            # parse_body.
            items = [line for line in body.split(b"\n") if line.strip(b" \t\r")]
        else:
            # The array's elements as their raw JSON text (views into the body), each
            # decoded below like a line.
            items = _RAW_ARRAY_DECODER.decode(body)
        if not 0 < len(items) <= max_rows:
            return None
        decode = _LINE_DECODER.decode
        chunks: list[list[pa.Array]] = [[] for _ in fields]
        # In chunks of rows, so that the decoded Python objects of a chunk only are alive
        # at a time (a 10,000-row body of 6.6 MiB took 17 MiB decoded whole).
        for start in range(0, len(items), DECODE_CHUNK_ROWS):
            rows = [decode(item) for item in items[start : start + DECODE_CHUNK_ROWS]]
            columns = list(zip(*map(msgspec.structs.astuple, rows), strict=True))
            del rows
            for f, values, out in zip(fields, columns, chunks, strict=True):
                array = _column(f, values)
                if array is None:
                    return None
                out.append(array)
        return pa.table(
            {
                f.name: pa.chunked_array(out, out[0].type)
                for f, out in zip(fields, chunks, strict=True)
            }
        )
    except _NOT_FAST:
        return None


def _column(f: Field, values: Sequence[Any]) -> pa.Array | None:
    """One column checked as :func:`_check` would check each value; None when any value
    is not plainly good (the reference path then names it)."""
    if f.kind == "int":
        array = pa.array(values, pa.int64())
        if array.null_count:
            if f.required:
                return None
            if f.name != "id":
                array = array.fill_null(0 if f.default is None else f.default)
        if array.null_count < len(array):
            bounds = pc.min_max(array)
            if bounds["min"].as_py() < f.minimum or bounds["max"].as_py() > f.maximum:
                return None
        return array.cast(LOG_ARROW_TYPES[f.name])
    if f.kind == "bool":
        return pa.array(values, pa.bool_()).fill_null(False)
    if f.kind == "json" and not all(v is None or type(v) is str for v in values):
        values = [
            v
            if v is None or type(v) is str
            else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            for v in values
        ]
    array = pa.array(values, pa.string())
    if array.null_count < len(array) and pc.max(pc.utf8_length(array)).as_py() > f.max_len:
        return None
    return array.fill_null("")


def check_log_days(table: pa.Table, max_days: int) -> None:
    """A batch spans at most ``max_days`` days (each day is a partition of ``logs``)."""
    days = pc.count_distinct(pc.divide(table["created_at"], 86400)).as_py()
    if days > max_days:
        raise BadRequest(
            f"body: the batch spans {days} days, more than the limit of {max_days} "
            "(GATELOG_INGEST_MAX_DAYS_PER_BATCH); send one batch per day, "
            "or import history with the import command"
        )


def day_chunks(table: pa.Table) -> list[pa.Table]:
    """``table`` (with a ``created_at`` in seconds) as one table, or, when its rows span
    more than ``MAX_DAYS_PER_INSERT`` UTC days, as tables of at most that many days each,
    oldest days first: the engine refuses an insert that creates more than
    ``max_partitions_per_insert_block`` partitions. Deterministic, so a retried batch or a
    resumed import cuts the same chunks."""
    day = pc.divide(table["created_at"], 86400)
    days = pc.unique(day).sort()
    if len(days) <= MAX_DAYS_PER_INSERT:
        return [table]
    chunk_of = pc.divide(pc.index_in(day, value_set=days), MAX_DAYS_PER_INSERT)
    count = (len(days) - 1) // MAX_DAYS_PER_INSERT + 1
    return [table.filter(pc.equal(chunk_of, number)) for number in range(count)]


async def store_log_table(store: Store, table: pa.Table, token: str, ids: IdSource) -> int:
    """Insert a table of :func:`parse_logs`; returns its row count. Rows without an id get
    one; rows spanning many days go in chunks of at most ``MAX_DAYS_PER_INSERT`` days,
    each with its own deterministic dedup token (as :func:`store_logs`)."""
    given = table["id"].combine_chunks()
    if given.null_count:
        new = pa.array(await ids.take(given.null_count), pa.uint64())
        table = table.set_column(0, "id", pc.replace_with_mask(given, given.is_null(), new))
    for number, chunk in enumerate(day_chunks(table)):
        await store.insert_table(
            "logs",
            chunk,
            settings={"insert_deduplication_token": f"{token}:{number}", "async_insert": 0},
        )
    return int(table.num_rows)
