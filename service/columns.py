"""The column catalogue: every column of ``logs`` and ``tokens``, declared once.

Each :class:`Column` states its engine type (as ``schema/`` declares it and
``system.columns`` reports it), who may see it, how ingest bounds it and whether the
rollups aggregate by it. Derived from it: ingest's validation fields
(:func:`service.ingest.log_fields`), the admin and user field sets and the select list
(:mod:`service.logs`), the rollup dimensions (:mod:`service.stats`), the OpenAPI item
schemas (:mod:`service.openapi`), the importer's Arrow column map
(:mod:`service.importer`) and the generator's tables (``tools.generate``). A test
compares it with the migrated tables.

Changing a column means editing its ``schema/`` file (a new migration) and its line here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_INT63 = 2**63 - 1

#: engine type (its base, without LowCardinality / codecs) -> (API JSON type, Arrow type
#: name, ingest kind, smallest and largest value ingest takes for an integer)
_BASE: dict[str, tuple[str, str, str, int, int]] = {
    "UInt8": ("integer", "uint8", "int", 0, 255),
    "UInt32": ("integer", "uint32", "int", 0, 2**32 - 1),
    # UInt64 ids take at most 2^63 - 1: the largest a signed 64-bit reader (the gateway's
    # Go int64, a JSON parser in another language) holds
    "UInt64": ("integer", "uint64", "int", 0, MAX_INT63),
    "Int32": ("integer", "int32", "int", -(2**31), 2**31 - 1),
    "Int64": ("integer", "int64", "int", -MAX_INT63 - 1, MAX_INT63),
    # stored as DateTime, answered and ingested as Unix seconds
    "DateTime('UTC')": ("integer", "uint32", "int", 0, 2**32 - 1),
    "Bool": ("boolean", "bool_", "bool", 0, 1),
    "String": ("string", "string", "str", 0, 0),
}
#: names the engine's SQL reserves: quoted wherever a statement names them
_RESERVED = frozenset({"group"})


@dataclass(frozen=True)
class Column:
    name: str
    #: the type exactly as ``system.columns`` reports it
    engine: str
    #: only administrators see it (users never learn which upstream channel served them)
    admin_only: bool = False
    #: required in an ingested row
    required: bool = False
    #: the smallest value ingest takes, when above the engine type's
    minimum: int | None = None
    #: what bounds an ingested value beyond its type: a number (the longest text), or the
    #: name of an ingest bound set from the settings (``text``, ``content``, ``other``:
    #: lengths; ``quota``, ``tokens``: plus or minus that much; ``created_at``: at most)
    bound: int | str | None = None
    #: ingest takes a JSON object or array as well as text (stored as its text)
    json: bool = False
    #: the filter and group-by name when the rollups aggregate by this column
    dimension: str | None = None
    #: said in the API document
    description: str | None = None

    @property
    def base(self) -> str:
        inner = self.engine.removeprefix("LowCardinality(")
        return inner[:-1] if inner != self.engine else inner

    @property
    def api_type(self) -> str:
        return _BASE[self.base][0]

    @property
    def arrow_type(self) -> str:
        """The name of the ``pyarrow`` type constructor of the column's bulk-load type."""
        return _BASE[self.base][1]

    @property
    def kind(self) -> str:
        """The ingest kind: ``int``, ``str``, ``bool`` or ``json``."""
        return "json" if self.json else _BASE[self.base][2]

    @property
    def value_range(self) -> tuple[int, int]:
        """The integers ingest takes before any bound from the settings."""
        _api, _arrow, _kind, low, high = _BASE[self.base]
        return (low if self.minimum is None else self.minimum), high

    @property
    def default(self) -> int | str | bool:
        """What an absent value becomes (ingest, import)."""
        defaults: dict[str, int | str | bool] = {"int": 0, "str": "", "json": "", "bool": False}
        return defaults[self.kind]

    @property
    def sql(self) -> str:
        """The column in a statement (quoted where the engine reserves the name)."""
        return f"`{self.name}`" if self.name in _RESERVED else self.name

    @property
    def select(self) -> str:
        """The column as the API answers it (times in Unix seconds)."""
        if self.base.startswith("DateTime"):
            return f"toUnixTimestamp({self.name})"
        return self.sql


LOGS: tuple[Column, ...] = (
    Column("id", "UInt64", minimum=1),
    Column("user_id", "UInt64", required=True, dimension="user_id"),
    Column("created_at", "DateTime('UTC')", required=True, minimum=1, bound="created_at"),
    Column("type", "UInt8", required=True, dimension="type"),
    Column("content", "String", bound="content"),
    Column("username", "LowCardinality(String)", bound="text", dimension="username"),
    Column("token_name", "String", bound="text", dimension="token_name"),
    Column("model_name", "LowCardinality(String)", bound="text", dimension="model_name"),
    Column("quota", "Int64", bound="quota"),
    Column("prompt_tokens", "Int64", bound="tokens"),
    Column("completion_tokens", "Int64", bound="tokens"),
    Column("use_time", "Int32"),
    Column("is_stream", "Bool"),
    Column("channel_id", "UInt32", admin_only=True, dimension="channel"),
    Column("channel_name", "LowCardinality(String)", admin_only=True, bound="text"),
    Column("token_id", "UInt64"),
    Column("group", "LowCardinality(String)", bound="text", dimension="group"),
    Column("ip", "String", bound=256),
    Column("request_id", "String", bound=256),
    Column(
        "upstream_request_id",
        "String",
        bound=256,
        description="the upstream provider's request id, when the gateway logged one (else empty)",
    ),
    Column(
        "other",
        "String",
        bound="other",
        json=True,
        description="JSON text (pricing ratios, timings, ...)",
    ),
)
LOG_COLUMNS: dict[str, Column] = {c.name: c for c in LOGS}

TOKENS: tuple[Column, ...] = (
    Column("id", "UInt64"),
    Column("key_hash", "String"),
    Column("name", "String"),
    Column("user_id", "UInt64"),
    Column("status", "UInt8"),
    Column("version", "UInt64"),
)

#: every field of a log as administrators see it, in the table's order
ADMIN_FIELDS: tuple[str, ...] = tuple(c.name for c in LOGS)
#: what a user sees of their own logs
USER_FIELDS: tuple[str, ...] = tuple(c.name for c in LOGS if not c.admin_only)
#: what the public token lookup shows, in the gateway's order
TOKEN_VIEW: tuple[str, ...] = (
    "id", "type", "content", "model_name", "quota", "created_at", "token_name",
    "prompt_tokens", "completion_tokens", "use_time", "is_stream",
)  # fmt: skip
#: filter/group-by name -> column in a statement (the same in ``logs`` and each rollup)
DIMENSIONS: dict[str, str] = {c.dimension: c.sql for c in LOGS if c.dimension}


def select_list(fields: Sequence[str]) -> str:
    """The fields of ``logs`` as the API answers them, for a SELECT."""
    return ", ".join(LOG_COLUMNS[name].select for name in fields)
