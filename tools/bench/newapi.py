"""new-api's own storage, rebuilt for tests and benchmarks.

- :data:`SQL_DDL`: the ``logs``, ``tokens`` and ``channels`` tables as new-api's GORM
  AutoMigrate creates them on SQLite, PostgreSQL and MySQL/MariaDB (column names, types,
  defaults and the main indexes follow ``model/log.go``, ``model/token.go`` and
  ``model/channel.go``: GORM maps Go ``int`` to ``integer``/``bigint``, ``bool`` to
  ``numeric``/``boolean``, indexed strings without a size to ``varchar(191)`` on MySQL;
  ``channel_name`` is a read-only field, so the column exists and stays empty).
  ``channels`` is cut down to the columns an import reads plus a few others.
- :data:`LEGACY_SQLITE_DDL`: one-api's older ``logs`` (no ``group``/``ip``/``other``,
  ``elapsed_time`` in milliseconds instead of ``use_time``) and ``tokens`` (no soft delete).
- :data:`CLICKHOUSE_DDL` and :data:`QUERIES`: the design new-api ships for ClickHouse
  (``PARTITION BY toYYYYMM``, ``ORDER BY (created_at, request_id)``, no skip indexes, no
  rollups, ``ALTER TABLE ... DELETE``) and the SQL its GORM code sends for each endpoint,
  the baseline the benchmark compares gatelog with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

LOG_COLUMNS = (
    "id", "user_id", "created_at", "type", "content", "username", "token_name",
    "model_name", "quota", "prompt_tokens", "completion_tokens", "use_time", "is_stream",
    "channel_id", "token_id", "group", "ip", "request_id", "upstream_request_id", "other",
)  # fmt: skip
TOKEN_COLUMNS = (
    "id", "user_id", "key", "status", "name", "created_time", "accessed_time",
    "expired_time", "remain_quota", "unlimited_quota", "used_quota", "group", "deleted_at",
)  # fmt: skip
CHANNEL_COLUMNS = ("id", "type", "key", "status", "name", "base_url", "models", "group")

SQL_DDL: dict[str, tuple[str, ...]] = {
    "sqlite": (
        "CREATE TABLE `logs` (`id` integer PRIMARY KEY AUTOINCREMENT,`user_id` integer,"
        "`created_at` integer,`type` integer,`content` text,`username` text DEFAULT '',"
        "`token_name` text DEFAULT '',`model_name` text DEFAULT '',`quota` integer DEFAULT 0,"
        "`prompt_tokens` integer DEFAULT 0,`completion_tokens` integer DEFAULT 0,"
        "`use_time` integer DEFAULT 0,`is_stream` numeric DEFAULT false,`channel_id` integer,"
        "`channel_name` text,`token_id` integer DEFAULT 0,`group` text,`ip` text DEFAULT '',"
        "`request_id` varchar(64) DEFAULT '',`upstream_request_id` varchar(128) DEFAULT '',"
        "`other` text)",
        "CREATE INDEX `idx_created_at_id` ON `logs`(`id`,`created_at`)",
        "CREATE INDEX `idx_created_at_type` ON `logs`(`created_at`,`type`)",
        "CREATE INDEX `idx_logs_user_id` ON `logs`(`user_id`)",
        "CREATE INDEX `idx_logs_token_id` ON `logs`(`token_id`)",
        "CREATE TABLE `tokens` (`id` integer PRIMARY KEY AUTOINCREMENT,`user_id` integer,"
        "`key` varchar(128),`status` integer DEFAULT 1,`name` text,`created_time` integer,"
        "`accessed_time` integer,`expired_time` integer DEFAULT -1,"
        "`remain_quota` integer DEFAULT 0,`unlimited_quota` numeric,"
        "`used_quota` integer DEFAULT 0,`group` text DEFAULT '',`deleted_at` datetime)",
        "CREATE UNIQUE INDEX `idx_tokens_key` ON `tokens`(`key`)",
        "CREATE TABLE `channels` (`id` integer PRIMARY KEY AUTOINCREMENT,`type` integer DEFAULT 0,"
        "`key` text NOT NULL,`status` integer DEFAULT 1,`name` text,`base_url` text DEFAULT '',"
        "`models` text,`group` varchar(64) DEFAULT 'default')",
    ),
    "postgresql": (
        'CREATE TABLE "logs" ("id" bigserial,"user_id" bigint,"created_at" bigint,'
        '"type" bigint,"content" text,"username" text DEFAULT \'\','
        "\"token_name\" text DEFAULT '',\"model_name\" text DEFAULT '',"
        '"quota" bigint DEFAULT 0,"prompt_tokens" bigint DEFAULT 0,'
        '"completion_tokens" bigint DEFAULT 0,"use_time" bigint DEFAULT 0,'
        '"is_stream" boolean DEFAULT false,"channel_id" bigint,"channel_name" text,'
        '"token_id" bigint DEFAULT 0,"group" text,"ip" text DEFAULT \'\','
        "\"request_id\" varchar(64) DEFAULT '',\"upstream_request_id\" varchar(128) DEFAULT '',"
        '"other" text,PRIMARY KEY ("id"))',
        'CREATE INDEX "idx_created_at_type" ON "logs" ("created_at","type")',
        'CREATE INDEX "idx_logs_user_id" ON "logs" ("user_id")',
        'CREATE TABLE "tokens" ("id" bigserial,"user_id" bigint,"key" varchar(128),'
        '"status" bigint DEFAULT 1,"name" text,"created_time" bigint,"accessed_time" bigint,'
        '"expired_time" bigint DEFAULT -1,"remain_quota" bigint DEFAULT 0,'
        '"unlimited_quota" boolean,"used_quota" bigint DEFAULT 0,"group" text DEFAULT \'\','
        '"deleted_at" timestamptz,PRIMARY KEY ("id"))',
        'CREATE UNIQUE INDEX "idx_tokens_key" ON "tokens" ("key")',
        'CREATE TABLE "channels" ("id" bigserial,"type" bigint DEFAULT 0,"key" text NOT NULL,'
        '"status" bigint DEFAULT 1,"name" text,"base_url" text DEFAULT \'\',"models" text,'
        '"group" varchar(64) DEFAULT \'default\',PRIMARY KEY ("id"))',
    ),
    "mysql": (
        "CREATE TABLE `logs` (`id` bigint AUTO_INCREMENT,`user_id` bigint,`created_at` bigint,"
        "`type` bigint,`content` longtext,`username` varchar(191) DEFAULT '',"
        "`token_name` varchar(191) DEFAULT '',`model_name` varchar(191) DEFAULT '',"
        "`quota` bigint DEFAULT 0,`prompt_tokens` bigint DEFAULT 0,"
        "`completion_tokens` bigint DEFAULT 0,`use_time` bigint DEFAULT 0,"
        "`is_stream` boolean DEFAULT false,`channel_id` bigint,`channel_name` longtext,"
        "`token_id` bigint DEFAULT 0,`group` varchar(191),`ip` varchar(191) DEFAULT '',"
        "`request_id` varchar(64) DEFAULT '',`upstream_request_id` varchar(128) DEFAULT '',"
        "`other` longtext,PRIMARY KEY (`id`),INDEX `idx_logs_user_id` (`user_id`),"
        "INDEX `idx_created_at_type` (`created_at`,`type`)) "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        "CREATE TABLE `tokens` (`id` bigint AUTO_INCREMENT,`user_id` bigint,`key` varchar(128),"
        "`status` bigint DEFAULT 1,`name` varchar(191),`created_time` bigint,"
        "`accessed_time` bigint,`expired_time` bigint DEFAULT -1,`remain_quota` bigint DEFAULT 0,"
        "`unlimited_quota` boolean,`used_quota` bigint DEFAULT 0,`group` varchar(191) DEFAULT '',"
        "`deleted_at` datetime(3) NULL,PRIMARY KEY (`id`),UNIQUE INDEX `idx_tokens_key` (`key`)) "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        "CREATE TABLE `channels` (`id` bigint AUTO_INCREMENT,`type` bigint DEFAULT 0,"
        "`key` longtext NOT NULL,`status` bigint DEFAULT 1,`name` varchar(191),"
        "`base_url` varchar(191) DEFAULT '',`models` longtext,"
        "`group` varchar(64) DEFAULT 'default',PRIMARY KEY (`id`)) "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    ),
}

LEGACY_SQLITE_DDL: tuple[str, ...] = (
    "CREATE TABLE `logs` (`id` integer PRIMARY KEY AUTOINCREMENT,`user_id` integer,"
    "`created_at` integer,`type` integer,`content` text,`username` text DEFAULT '',"
    "`token_name` text DEFAULT '',`model_name` text DEFAULT '',`quota` integer DEFAULT 0,"
    "`prompt_tokens` integer DEFAULT 0,`completion_tokens` integer DEFAULT 0,"
    "`channel_id` integer,`request_id` text DEFAULT '',`elapsed_time` integer DEFAULT 0,"
    "`is_stream` numeric DEFAULT false,`system_prompt_reset` numeric DEFAULT false)",
    "CREATE TABLE `tokens` (`id` integer PRIMARY KEY AUTOINCREMENT,`user_id` integer,"
    "`key` char(48),`status` integer DEFAULT 1,`name` text,`created_time` integer,"
    "`accessed_time` integer,`expired_time` integer DEFAULT -1,`remain_quota` integer DEFAULT 0,"
    "`unlimited_quota` numeric DEFAULT false,`used_quota` integer DEFAULT 0)",
)

PLACEHOLDER = {"sqlite": "?", "postgresql": "%s", "mysql": "%s"}
QUOTE = {"sqlite": "`", "postgresql": '"', "mysql": "`"}


def insert_sql(dialect: str, table: str, columns: Sequence[str]) -> str:
    q = QUOTE[dialect]
    names = ",".join(f"{q}{c}{q}" for c in columns)
    marks = ",".join(PLACEHOLDER[dialect] for _ in columns)
    return f"INSERT INTO {q}{table}{q} ({names}) VALUES ({marks})"


def create(conn: Any, dialect: str, ddl: Iterable[str] | None = None) -> None:
    cur = conn.cursor()
    for statement in ddl if ddl is not None else SQL_DDL[dialect]:
        cur.execute(statement)
    conn.commit()


def insert(
    conn: Any, dialect: str, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    cur = conn.cursor()
    cur.executemany(insert_sql(dialect, table, columns), list(rows))
    conn.commit()


def log_rows(arrow_table: Any) -> list[tuple[Any, ...]]:
    """Generated rows (engine columns) as new-api ``logs`` rows in :data:`LOG_COLUMNS`
    order: ``channel_name`` stays out (the gateway never writes it)."""
    import pyarrow as pa

    n = arrow_table.num_rows
    data = {}
    for name in arrow_table.column_names:
        column = arrow_table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)  # decoding first is much faster
        data[name] = column.to_pylist()
    data["upstream_request_id"] = [""] * n
    return list(zip(*(data[c] for c in LOG_COLUMNS), strict=True))


# -- new-api's ClickHouse design ---------------------------------------------------------------

CLICKHOUSE_TABLE = "logs_newapi"
CLICKHOUSE_DDL = f"""
CREATE TABLE IF NOT EXISTS {CLICKHOUSE_TABLE}
(
    id Int64 DEFAULT 0,
    user_id Int32 DEFAULT 0,
    created_at Int64 DEFAULT 0,
    type Int32 DEFAULT 0,
    content String DEFAULT '',
    username String DEFAULT '',
    token_name String DEFAULT '',
    model_name String DEFAULT '',
    quota Int32 DEFAULT 0,
    prompt_tokens Int32 DEFAULT 0,
    completion_tokens Int32 DEFAULT 0,
    use_time Int32 DEFAULT 0,
    is_stream UInt8 DEFAULT 0,
    channel_id Int32 DEFAULT 0,
    token_id Int32 DEFAULT 0,
    `group` String DEFAULT '',
    ip String DEFAULT '',
    request_id String DEFAULT '',
    upstream_request_id String DEFAULT '',
    other String DEFAULT ''
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(toDateTime(created_at))
ORDER BY (created_at, request_id)
"""
# Filled from gatelog's own table, so both designs hold exactly the same rows.
CLICKHOUSE_FILL = f"""
INSERT INTO {CLICKHOUSE_TABLE}
SELECT toInt64(id), toInt32(user_id), toInt64(toUnixTimestamp(created_at)), toInt32(type),
       content, toString(username), token_name, toString(model_name), toInt32(quota),
       toInt32(prompt_tokens), toInt32(completion_tokens), use_time, toUInt8(is_stream),
       toInt32(channel_id), toInt32(token_id), toString(`group`), ip, request_id, '', other
FROM logs
"""
_ALL = (
    "id, user_id, created_at, type, content, username, token_name, model_name, quota, "
    "prompt_tokens, completion_tokens, use_time, is_stream, channel_id, token_id, `group`, "
    "ip, request_id, upstream_request_id, other"
)
# The statements new-api's GORM code sends for each endpoint (model/log.go), in
# ClickHouse SQL with gatelog's parameter syntax. List pages: COUNT(*) and the page.
# Stats: the quota query and the rpm/tpm query (last 60 s). Token lookup: the logs of the
# token id (the key itself is resolved in new-api's main database, not in ClickHouse).
QUERIES: dict[str, tuple[str, ...]] = {
    "list_all": (
        f"SELECT count(*) FROM {CLICKHOUSE_TABLE}",
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} ORDER BY id DESC LIMIT 20 OFFSET 0",
    ),
    "list_all_p50": (
        f"SELECT count(*) FROM {CLICKHOUSE_TABLE}",
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} ORDER BY id DESC LIMIT 20 OFFSET 980",
    ),
    "list_all_filtered": (
        f"SELECT count(*) FROM {CLICKHOUSE_TABLE} WHERE type = {{type:Int32}} "
        "AND model_name LIKE {model:String} AND created_at >= {start:Int64} "
        "AND created_at <= {end:Int64}",
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} WHERE type = {{type:Int32}} "
        "AND model_name LIKE {model:String} AND created_at >= {start:Int64} "
        "AND created_at <= {end:Int64} ORDER BY id DESC LIMIT 20 OFFSET 0",
    ),
    "list_self": (
        f"SELECT count(*) FROM {CLICKHOUSE_TABLE} WHERE user_id = {{user:Int32}}",
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} WHERE user_id = {{user:Int32}} "
        "ORDER BY id DESC LIMIT 20 OFFSET 0",
    ),
    "list_self_range": (
        f"SELECT count(*) FROM {CLICKHOUSE_TABLE} WHERE user_id = {{user:Int32}} "
        "AND created_at >= {start:Int64} AND created_at <= {end:Int64}",
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} WHERE user_id = {{user:Int32}} "
        "AND created_at >= {start:Int64} AND created_at <= {end:Int64} "
        "ORDER BY id DESC LIMIT 20 OFFSET 0",
    ),
    "search": (
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} WHERE type = {{type:Int32}} "
        "OR content LIKE {prefix:String} ORDER BY id DESC LIMIT 100",
    ),
    "search_self": (
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} WHERE user_id = {{user:Int32}} "
        "AND type = {type:Int32} ORDER BY id DESC LIMIT 100",
    ),
    "token": (
        f"SELECT {_ALL} FROM {CLICKHOUSE_TABLE} WHERE token_id = {{token:Int32}} "
        "ORDER BY id DESC LIMIT 100",
    ),
    "stat": (
        f"SELECT sum(quota) AS quota FROM {CLICKHOUSE_TABLE} WHERE created_at >= {{start:Int64}} "
        "AND created_at <= {end:Int64} AND type = 2",
        f"SELECT count(*) AS rpm, sum(prompt_tokens) + sum(completion_tokens) AS tpm "
        f"FROM {CLICKHOUSE_TABLE} WHERE type = 2 AND created_at >= {{recent:Int64}}",
    ),
    "stat_self": (
        f"SELECT sum(quota) AS quota FROM {CLICKHOUSE_TABLE} WHERE username = {{username:String}} "
        "AND created_at >= {start:Int64} AND created_at <= {end:Int64} AND type = 2",
        f"SELECT count(*) AS rpm, sum(prompt_tokens) + sum(completion_tokens) AS tpm "
        f"FROM {CLICKHOUSE_TABLE} WHERE username = {{username:String}} AND type = 2 "
        "AND created_at >= {recent:Int64}",
    ),
    "delete": (f"ALTER TABLE {CLICKHOUSE_TABLE} DELETE WHERE created_at < {{before:Int64}}",),
}
