"""The OpenAPI 3.1 document of the service, served at ``/api/openapi.json``.

Built from the same declarations the handlers use (the column catalogue, each route's
parameter table in ``service.routeparams``, limits from
:class:`~service.settings.Settings`), so the bounds it states are the ones enforced.
The route table (``service.routes``) decides which routes exist; a test compares the
two, and validates the document and real responses against it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from . import __version__, logs, stats
from .columns import LOGS
from .ingest import LOG_FIELDS, TOKEN_FIELDS, Field
from .params import LOG_TYPES, Param, ParamTable, zone_names
from .routeparams import (
    DELETE,
    EXPORT,
    LIST,
    PARAMETERS,
    PERFORMANCE,
    SEARCH,
    SERIES,
    STAT,
    TOKEN_LOOKUP,
    USAGE,
)
from .settings import Settings

Schema = dict[str, Any]
JSON = "application/json"
NDJSON = "application/x-ndjson"
#: the parameters of a route that takes none
NONE = ParamTable()

INT: Schema = {"type": "integer"}
STR: Schema = {"type": "string"}
# Types of the log fields as the API returns them (created_at in Unix seconds).
_ITEM_TYPES: dict[str, Schema] = {
    **{
        c.name: {"type": c.api_type, **({"description": c.description} if c.description else {})}
        for c in LOGS
    },
    "channel": {
        **INT,
        "description": "the channel id again, under the name the gateway's own UI reads",
    },
}
STAT_FIELDS = ("quota", "rpm", "tpm", "requests", "prompt_tokens", "completion_tokens")
MY_STAT_FIELDS = ("total_requests", "total_quota", "today_requests", "today_quota")
SERIES_FIELDS = stats.FIGURES


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _item(fields: tuple[str, ...], description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": {name: _ITEM_TYPES[name] for name in fields},
        "required": list(fields),
        "additionalProperties": False,
    }


def _ingest_field(field: Field) -> Schema:
    if field.kind == "int":
        schema: Schema = {"type": "integer", "minimum": field.minimum, "maximum": field.maximum}
    elif field.kind == "bool":
        schema = {"type": "boolean"}
    elif field.kind == "json":
        schema = {
            "oneOf": [
                {"type": "string", "maxLength": field.max_len},
                {"type": "object"},
                {"type": "array"},
            ],
            "description": "JSON text, or a JSON object/array (stored as its text)",
        }
    else:
        schema = {"type": "string", "maxLength": field.max_len}
    if field.required:
        return schema
    # An absent or null optional field takes its default.
    if "type" in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"oneOf": [*schema["oneOf"], {"type": "null"}], "description": schema["description"]}


# ASCII whitespace, as service.tokenhash.KEY_SPACE trims it
_KEY_SPACE = "[ \\t\\n\\r\\f\\v]"
_KEY_CHAR = "[^ \\t\\n\\r\\f\\v]"
_KEY_CHAR_NOT_S = "[^s \\t\\n\\r\\f\\v]"


def _token_row(settings: Settings) -> Schema:
    """The token row; its key may not be blank once trimmed and without ``sk-``
    (``ingest.check_token_keys``): the pattern refuses blank keys, and the minimum
    length, which JSON Schema cannot count after trimming, is stated in words."""
    row = _ingest_row(
        TOKEN_FIELDS, "A gateway token, upserted by id; the key is stored only as a hash."
    )
    minimum = settings.ingest_min_token_key_chars
    key = {
        **row["properties"]["key"],
        # not blank once trimmed and without sk-, written without a lookahead so that
        # generators (schemathesis) can draw keys from it: after the leading space, a
        # first character other than s, or an s that does not begin "sk-" followed by
        # only space
        "pattern": f"^{_KEY_SPACE}*({_KEY_CHAR_NOT_S}|s([^k]|$)|sk([^-]|$)|sk-{_KEY_SPACE}*"
        f"{_KEY_CHAR})",
        "minLength": minimum,
        "description": f"at least {minimum} characters besides the 'sk-' prefix and "
        "surrounding whitespace",
    }
    return {**row, "properties": {**row["properties"], "key": key}}


def _ingest_row(fields: tuple[Field, ...], description: str) -> Schema:
    return {
        "type": "object",
        "description": description + " Unknown fields are ignored.",
        "properties": {f.name: _ingest_field(f) for f in fields},
        "required": [f.name for f in fields if f.required],
    }


def _param_schema(p: Param, settings: Settings) -> Schema:
    """The schema of a query parameter, from its declaration (``service.routeparams``)."""
    if p.kind == "type":
        return {"type": "integer", "enum": [0, *LOG_TYPES], "default": 0}
    if p.kind in ("int", "target"):
        low, high = p.bounds(settings)
        schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
    elif p.kind == "text":  # get_str: at most GATELOG_MAX_TEXT_PARAM characters
        schema = {"type": "string", "maxLength": settings.max_text_param}
    elif p.kind == "choice":
        schema = {"type": "string", "enum": list(p.choices)}
    elif p.kind == "zone":  # its default, a setting, is stated in its description
        return {"type": "string", "enum": sorted(zone_names())}
    elif p.kind == "key":  # not blank once trimmed of ASCII whitespace (get_key)
        return {"type": "string", "minLength": 1, "maxLength": settings.max_text_param,
                "pattern": "[^ \\t\\r\\n\\f\\v]"}  # fmt: skip
    else:  # ignored: any text
        return dict(STR)
    default = p.default_for(settings)
    return schema if default is None else {**schema, "default": default}


def _parameter(p: Param, settings: Settings) -> Schema:
    parameter: Schema = {
        "name": p.name,
        "in": "query",
        "required": p.required,
        "description": p.describe(settings),
        "schema": _param_schema(p, settings),
    }
    if not p.required:
        # `?p=&type=` (as gateway front ends send unset filters) means "not given".
        parameter["allowEmptyValue"] = True
    return parameter


def _parameters(settings: Settings) -> dict[str, Schema]:
    return {
        **{ref: _parameter(p, settings) for ref, p in PARAMETERS.items()},
        "dashboard_asset": {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": ["app.js", "app.css", "plotly.min.js"]},
            "description": "the asset's file name",
        },
    }


def _schemas(settings: Settings) -> dict[str, Schema]:
    counts = {name: INT for name in STAT_FIELDS}
    return {
        "Envelope": {
            "type": "object",
            "description": "Every JSON answer, errors included.",
            "properties": {
                "success": {"type": "boolean"},
                "message": {"type": "string", "description": "empty on success"},
                "data": {"description": "the answer; null on failure"},
            },
            "required": ["success", "message", "data"],
            "additionalProperties": False,
        },
        "Error": {
            "allOf": [
                ref("schemas", "Envelope"),
                {
                    "properties": {
                        "success": {"const": False},
                        "message": {"type": "string", "minLength": 1},
                        "data": {"type": "null"},
                    }
                },
            ]
        },
        "AdminLogItem": _item((*logs.ADMIN_FIELDS, "channel"), "A log as administrators see it."),
        "UserLogItem": _item(
            logs.USER_FIELDS,
            "A log as its user sees it: no channel, and `other` without admin-only keys.",
        ),
        "TokenLogItem": _item(logs.TOKEN_FIELDS, "A log as the public token lookup shows it."),
        "AdminLogPage": _page("AdminLogItem"),
        "UserLogPage": _page("UserLogItem"),
        "Stat": {
            "type": "object",
            "description": "quota, requests and tokens over the range and filters (consume "
            "logs unless `type` names another); rpm (logs) and tpm (prompt + completion "
            "tokens) of the last 60 seconds, same filters, the range ignored. Exact.",
            "properties": counts,
            "required": list(STAT_FIELDS),
            "additionalProperties": False,
        },
        "MyStat": {
            "type": "object",
            "description": "the Stat figures, and the caller's consume logs and their quota "
            "of all time (total_*) and since local midnight in `tz` (today_*); these four "
            "ignore the other filters, as the gateway does",
            "properties": counts | {name: INT for name in MY_STAT_FIELDS},
            "required": [*STAT_FIELDS, *MY_STAT_FIELDS],
            "additionalProperties": False,
        },
        "SeriesBucket": {
            "type": "object",
            "properties": {
                "timestamp": {"type": "integer", "description": "bucket start, Unix seconds"},
                **{name: INT for name in SERIES_FIELDS},
            },
            "required": ["timestamp", *SERIES_FIELDS],
            "additionalProperties": False,
        },
        "SeriesGroup": {
            "type": "object",
            "description": "one group_by value: its totals and its buckets",
            "properties": {
                "key": {"type": ["string", "integer"], "description": "the group_by value"},
                **{name: INT for name in SERIES_FIELDS},
                "buckets": {"type": "array", "items": ref("schemas", "SeriesBucket")},
            },
            "required": ["key", *SERIES_FIELDS, "buckets"],
            "additionalProperties": False,
        },
        "Percentiles": {
            "type": "object",
            "description": "nearest-rank percentiles (the smallest value with at least p% of "
            "the values <= it); null when no log counts",
            "properties": {p: {"type": ["number", "null"]} for p in ("p50", "p95", "p99")},
            "required": ["p50", "p95", "p99"],
            "additionalProperties": False,
        },
        "Performance": {
            "type": "object",
            "description": "latency and errors over the range; groups (with group_by) by "
            "requests + errors, most first",
            "properties": {
                "group_by": {"type": ["string", "null"]},
                "total": ref("schemas", "PerformanceFigures"),
                "groups": {"type": "array", "items": ref("schemas", "PerformanceGroup")},
            },
            "required": ["group_by", "total", "groups"],
            "additionalProperties": False,
        },
        "PerformanceFigures": _performance_figures(),
        "PerformanceGroup": _performance_figures(key=True),
        "Series": {
            "type": "object",
            "description": "zero-filled buckets from the one holding start_timestamp to the "
            "one holding end_timestamp (edge buckets count only the part in range); with "
            "group_by, also one series per value, largest first",
            "properties": {
                "interval": {"type": "string", "enum": list(stats.INTERVALS)},
                "start_timestamp": INT,
                "end_timestamp": INT,
                "group_by": {"type": ["string", "null"]},
                "buckets": {"type": "array", "items": ref("schemas", "SeriesBucket")},
                "series": {"type": "array", "items": ref("schemas", "SeriesGroup")},
            },
            "required": ["interval", "start_timestamp", "end_timestamp", "group_by", "buckets"],
            "additionalProperties": False,
        },
        "UsageRow": {
            "type": "object",
            "description": "one hour of one model: consume logs, their quota and prompt + "
            "completion tokens; created_at is the hour's start",
            "properties": {name: INT for name in ("created_at", "count", "quota", "token_used")}
            | {"model_name": STR},
            "required": ["model_name", "created_at", "count", "quota", "token_used"],
            "additionalProperties": False,
        },
        "UsageUserRow": {
            "type": "object",
            "description": "one hour of one model and one user",
            "properties": {
                name: INT
                for name in ("id", "user_id", "created_at", "count", "quota", "token_used")
            }
            | {"model_name": STR, "username": STR},
            "required": [
                "id",
                "user_id",
                "username",
                "model_name",
                "created_at",
                "count",
                "quota",
                "token_used",
            ],
            "additionalProperties": False,
        },
        "IngestLog": _ingest_row(LOG_FIELDS, "A log to store; `id` is assigned when absent."),
        "IngestToken": _token_row(settings),
        "LogBatch": {
            "type": "array",
            "items": ref("schemas", "IngestLog"),
            "minItems": 1,
            "maxItems": settings.max_batch_rows,
        },
        "TokenBatch": {
            "type": "array",
            "items": ref("schemas", "IngestToken"),
            "minItems": 1,
            "maxItems": settings.max_batch_rows,
        },
    }


def _performance_figures(key: bool = False) -> Schema:
    properties: Schema = {
        "requests": {"type": "integer", "description": "consume logs (type 2)"},
        "errors": {"type": "integer", "description": "error logs (type 5)"},
        "error_rate": {
            "type": ["number", "null"],
            "description": "errors / (requests + errors); null when both are 0",
        },
        "use_time": {
            **ref("schemas", "Percentiles"),
            "description": "seconds, over consume logs; exact",
        },
        "frt_ms": {
            **ref("schemas", "Percentiles"),
            "description": "first-token time (frt in other, ms) over consume logs with a "
            "positive frt; within 2% of the exact percentile",
        },
    }
    if key:
        properties = {"key": {"type": ["string", "integer"]}, **properties}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _dashboard_paths() -> dict[str, dict[str, Schema]]:
    """The web dashboard (docs/dashboard.md): a page and its assets, no credentials
    (the page signs in against the API itself)."""
    moved = {"302": {"description": "to /dashboard/", "headers": {
        "Location": {"schema": {"type": "string", "const": "/dashboard/"}}}}}  # fmt: skip

    def static(op_id: str, summary: str, types: list[str], **extra: Any) -> Schema:
        return {
            "operationId": op_id, "summary": summary, "tags": ["dashboard"],
            "responses": {
                "200": {"description": summary, "content": {t: {"schema": STR} for t in types}},
                **({"404": {"description": "no such asset"}} if extra else {}),
            },
            "parameters": [], "security": [], **extra,
        }  # fmt: skip

    return {
        "/": {"get": {"operationId": "root", "summary": "Redirect to the dashboard",
                      "tags": ["dashboard"], "parameters": [], "responses": moved,
                      "security": []}},
        "/dashboard": {"get": {"operationId": "dashboardNoSlash", "summary": "Redirect",
                               "tags": ["dashboard"], "parameters": [], "responses": moved,
                               "security": []}},
        "/dashboard/": {"get": static("dashboard", "The web dashboard", ["text/html"])},
        "/dashboard/assets/{name}": {"get": static(
            "dashboardAsset", "A script or style of the dashboard", ["text/javascript", "text/css"],
            parameters=[ref("parameters", "dashboard_asset")])},
    }  # fmt: skip


def _page(item: str) -> Schema:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": ref("schemas", item)},
            "total": {"type": "integer", "minimum": 0, "description": "matching logs"},
            "page": {"type": "integer", "minimum": 1},
            "page_size": {"type": "integer", "minimum": 1},
        },
        "required": ["items", "total", "page", "page_size"],
        "additionalProperties": False,
    }


_ERRORS = {
    "400": ("BadRequest", "a parameter or the body is invalid; the message names it"),
    "401": ("Unauthorized", "missing or invalid bearer token"),
    "403": ("Forbidden", "the token's role or scope does not allow this"),
    "404": ("NotFound", "no such object"),
    "413": ("PayloadTooLarge", "the body is larger than the limit"),
    "429": (
        "RateLimited",
        "too many requests from this client, or too many of its requests running at once; "
        "see Retry-After",
    ),
    "500": ("Internal", "an internal error; the message carries the request id"),
    "503": (
        "Unavailable",
        "the log engine is unreachable or overloaded, or a query ran past its time or "
        "memory bound (the message says what to narrow); retry later (see Retry-After "
        "when present)",
    ),
}


def _responses() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for status, (name, description) in _ERRORS.items():
        headers: Schema = {"X-Request-Id": ref("headers", "X-Request-Id")}
        if status == "429":
            headers["Retry-After"] = {
                "description": "seconds until a request will be allowed",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        if status == "503":
            headers["Retry-After"] = {
                "description": "seconds to wait when the engine's slots were full",
                "required": False,
                "schema": {"type": "integer", "minimum": 1},
            }
        out[name] = {
            "description": description,
            "headers": headers,
            "content": {JSON: {"schema": ref("schemas", "Error")}},
        }
    return out


def _ok(data: Schema, description: str) -> Schema:
    return {
        "description": description,
        "headers": {"X-Request-Id": ref("headers", "X-Request-Id")},
        "content": {
            JSON: {
                "schema": {
                    "allOf": [
                        ref("schemas", "Envelope"),
                        {"properties": {"success": {"const": True}, "data": data}},
                    ]
                }
            }
        },
    }


def _operation(
    op_id: str,
    summary: str,
    tag: str,
    params: ParamTable,
    ok: Schema,
    errors: tuple[str, ...],
    auth: bool = True,
    body: Schema | None = None,
    description: str = "",
) -> Schema:
    operation: Schema = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [ref("parameters", p.ref) for p in params.params],
        "responses": {
            "200": ok,
            **{status: ref("responses", _ERRORS[status][0]) for status in (*errors, "500")},
        },
        "security": [{"bearerAuth": []}] if auth else [],
    }
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = body
    return operation


# 429: the caller's own share of the engine stayed full (GATELOG_MAX_CONCURRENT_QUERIES_PER_USER)
READ_ERRORS = ("400", "401", "403", "429", "503")


def _paths() -> dict[str, dict[str, Schema]]:
    admin_page = ref("schemas", "AdminLogPage")
    user_page = ref("schemas", "UserLogPage")
    admin_items = {"type": "array", "items": ref("schemas", "AdminLogItem")}
    user_items = {"type": "array", "items": ref("schemas", "UserLogItem")}
    series = ref("schemas", "Series")

    def export(op_id: str, summary: str, params: ParamTable) -> Schema:
        operation = _operation(op_id, summary, "logs", params, {}, READ_ERRORS)
        operation["responses"]["200"] = {
            "description": "every matching log, newest first, streamed",
            "headers": {
                "X-Request-Id": ref("headers", "X-Request-Id"),
                "Content-Disposition": {
                    "description": 'attachment; filename="logs-<now>.csv" (or .ndjson)',
                    "required": True,
                    "schema": STR,
                },
            },
            "content": {
                "text/csv": {
                    "schema": {
                        **STR,
                        "description": "a header row, a row per log, and a last line "
                        "#totals,rows=N,quota=Q,prompt_tokens=P,completion_tokens=C",
                    }
                },
                NDJSON: {
                    "schema": {
                        **STR,
                        "description": 'an object per log, and a last line {"totals": '
                        '{"rows": N, "quota": Q, "prompt_tokens": P, "completion_tokens": C}}',
                    }
                },
            },
        }
        return operation

    def ingest(op_id: str, summary: str, batch: str, rows: str) -> Schema:
        body = {
            "required": True,
            "description": "a JSON array, or NDJSON (one object per line); validated whole",
            "content": {
                JSON: {"schema": ref("schemas", batch)},
                # The same rows, each serialized as one line of JSON.
                NDJSON: {"schema": ref("schemas", batch)},
            },
        }
        return _operation(
            op_id,
            summary,
            "ingest",
            NONE,
            _ok({"type": "integer", "minimum": 1}, f"the number of {rows} stored"),
            ("400", "401", "403", "413", "503"),
            body=body,
            description="Needs a bearer token with the `logs:write` scope. A batch retried "
            "with the same body is stored once.",
        )

    probe = {"type": "string"}
    return {
        "/api/log/": {
            "get": _operation(
                "listLogs", "All logs, newest first, one page (admin)", "logs",
                LIST.admin, _ok(admin_page, "one page and the total"),
                READ_ERRORS,
            ),
            "delete": _operation(
                "deleteLogs", "Delete every log before a time (admin)", "logs",
                DELETE, _ok({"type": "integer", "minimum": 0}, "logs deleted"),
                READ_ERRORS,
            ),
        },
        "/api/log/future": {
            "delete": _operation(
                "deleteFutureLogs", "Delete every log dated after now + the clock skew (admin)",
                "logs", NONE, _ok({"type": "integer", "minimum": 0}, "logs deleted"),
                ("401", "403", "503"),
                description="Removes logs whose created_at is later than ingest accepts "
                "(now + GATELOG_INGEST_CLOCK_SKEW_SECONDS), stored before that bound; the "
                "rollups stay exact.",
            ),
        },
        "/api/log/self": {
            "get": _operation(
                "listMyLogs", "My logs, newest first, one page", "logs",
                LIST.user,
                _ok(user_page, "one page and the total"),
                READ_ERRORS,
            )
        },
        "/api/log/search": {
            "get": _operation(
                "searchLogs", "Search all logs (admin)", "logs",
                SEARCH.admin,
                _ok(admin_items, "matching logs, newest first"), READ_ERRORS,
            )
        },
        "/api/log/self/search": {
            "get": _operation(
                "searchMyLogs", "Search my logs", "logs",
                SEARCH.user,
                _ok(user_items, "matching logs, newest first"), READ_ERRORS,
            )
        },
        "/api/log/token": {
            "get": _operation(
                "tokenLogs", "The logs of the token whose key is given (public, CORS)", "logs",
                TOKEN_LOOKUP,
                _ok({"type": "array", "items": ref("schemas", "TokenLogItem")},
                    "the token's logs, newest first"),
                ("400", "404", "429", "503"), auth=False,
                description="Unknown and disabled keys both answer 404. Rate-limited per "
                "client address. Without `key`, the key is taken from `Authorization` as newer "
                "gateway builds send it (raw or `Bearer`, `sk-` and any `-suffix` dropped).",
            )
        },
        "/api/log/stat": {
            "get": _operation(
                "logStat", "Quota, requests and tokens, with RPM/TPM (admin)", "stats",
                STAT.admin, _ok(ref("schemas", "Stat"), "the statistics"), READ_ERRORS,
            )
        },
        "/api/log/self/stat": {
            "get": _operation(
                "myLogStat", "My quota, requests and tokens, with RPM/TPM", "stats",
                STAT.user, _ok(ref("schemas", "MyStat"), "the statistics"),
                READ_ERRORS,
            )
        },
        "/api/log/series": {
            "get": _operation(
                "logSeries", "Usage over time in buckets (admin)", "stats", SERIES.admin,
                _ok(series, "buckets in time order"), READ_ERRORS,
            )
        },
        "/api/log/self/series": {
            "get": _operation(
                "myLogSeries", "My usage over time in buckets", "stats", SERIES.user,
                _ok(series, "buckets in time order"), READ_ERRORS,
            )
        },
        "/api/log/performance": {
            "get": _operation(
                "logPerformance", "Latency percentiles and error rates (admin)", "stats",
                PERFORMANCE.admin, _ok(ref("schemas", "Performance"), "the figures"),
                READ_ERRORS,
            )
        },
        "/api/log/self/performance": {
            "get": _operation(
                "myLogPerformance", "My latency percentiles and error rates", "stats",
                PERFORMANCE.user, _ok(ref("schemas", "Performance"), "the figures"),
                READ_ERRORS,
            )
        },
        **{
            path: {
                "get": _operation(
                    op_id, "Hourly usage per model for the gateway dashboard (admin)",
                    "stats", USAGE.admin,
                    _ok({"type": "array", "items": {"anyOf": [
                        ref("schemas", "UsageRow"), ref("schemas", "UsageUserRow")]}},
                        "rows per hour and model, summed over users (per user with "
                        "username)"),
                    READ_ERRORS,
                )
            }
            for path, op_id in (("/api/data/", "usageData"), ("/api/data", "usageDataNoSlash"))
        },
        **{
            path: {
                "get": _operation(
                    op_id, "My hourly usage per model for the gateway dashboard", "stats",
                    USAGE.user,
                    _ok({"type": "array", "items": ref("schemas", "UsageUserRow")},
                        "rows per hour and model"),
                    READ_ERRORS,
                    description=f"A range over {USAGE.user.max_span // 86400} days is a 400 "
                    f"with the gateway's message {USAGE.user.span_message}.",
                )
            }
            for path, op_id in (
                ("/api/data/self", "myUsageData"), ("/api/data/self/", "myUsageDataSlash")
            )
        },
        **_dashboard_paths(),
        "/api/log/export": {"get": export("exportLogs", "Export logs (admin)", EXPORT.admin)},
        "/api/log/self/export": {"get": export("exportMyLogs", "Export my logs", EXPORT.user)},
        "/api/internal/logs": {
            "post": ingest("ingestLogs", "Store a batch of logs", "LogBatch", "logs")
        },
        "/api/internal/tokens": {
            "post": ingest("ingestTokens", "Upsert gateway tokens", "TokenBatch", "tokens")
        },
        "/healthz": {
            "get": _operation(
                "healthz", "Liveness: the process answers", "operations", NONE,
                _ok({**probe, "const": "ok"}, "alive"), (), auth=False,
            )
        },
        "/readyz": {
            "get": _operation(
                "readyz", "Readiness: the engine answers and the schema is applied",
                "operations", NONE, _ok({**probe, "const": "ready"}, "ready"), ("503",),
                auth=False,
            )
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "the Prometheus text format (OpenMetrics if asked)",
                        "headers": {"X-Request-Id": ref("headers", "X-Request-Id")},
                        "content": {"text/plain": {"schema": STR}},
                    }
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "the OpenAPI 3.1 document",
                        "headers": {"X-Request-Id": ref("headers", "X-Request-Id")},
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }  # fmt: skip


@lru_cache(maxsize=16)
def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for a service running with ``settings`` (its limits)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gatelog",
            "version": __version__,
            "summary": "The log API of an LLM API gateway (new-api / one-api), on ClickHouse",
            "description": (
                "Every JSON answer is the envelope `{success, message, data}`, errors "
                "included, with a fitting HTTP status. An optional query parameter with "
                "an empty value counts as not given, unknown parameters are ignored, and a "
                "parameter given twice is refused (400). Users see only their own logs; "
                "`/api/log/self*` never shows channels or admin-only details."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "logs", "description": "list, search, token lookup, export, delete"},
            {"name": "stats", "description": "statistics and series"},
            {"name": "dashboard", "description": "the web dashboard (HTML, scripts, styles)"},
            {"name": "ingest", "description": "how the gateway sends logs and tokens"},
            {"name": "operations", "description": "probes, metrics, this document"},
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "claims: sub (user id), username, role (1 user, 10 admin, "
                    "100 root), exp; scope `logs:write` for ingest",
                }
            },
            "headers": {
                "X-Request-Id": {
                    "description": "the request's id (the caller's, if it sent a plain one), "
                    "also in the service's log line",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                }
            },
            "parameters": _parameters(settings),
            "schemas": _schemas(settings),
            "responses": _responses(),
        },
    }
