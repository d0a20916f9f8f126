"""Fuzzing: schemathesis generates requests from the OpenAPI document and sends them to the
running service; every answer must be no 5xx and conform to the document (status code,
content type, headers, body schema, Allow on 405), schema-valid requests must be accepted
and schema-invalid ones refused: schemathesis' default checks, all of them.

The inputs differ from run to run: one seed per run (``GATELOG_FUZZ_SEED``, chosen by
the test session and shown in its header and in every failure; set it to repeat a run).

Two passes, bounded:
- each operation as the caller it is for (admin routes as an admin, ``/self`` routes as
  a user, ingest as the gateway with ``logs:write``, public routes anonymously), with the
  coverage phase (every documented bound, enum value and required parameter, each just
  inside and outside) and ``EXAMPLES`` random examples;
- each operation as every caller (admin, user, anonymous, gateway), ``CROSS_EXAMPLES``
  random examples: whoever calls, the answer is documented and never a 5xx.

The service runs as operators run it (``python -m service serve``, embedded engine, a data
directory of its own), seeded with logs and a token so that answers are not all empty;
its batch limit keeps the ingested batches, and so the database, small. At the end its
own metrics must show a 2xx answer on every documented route: a fuzzer whose requests
were all refused would prove nothing.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from service.openapi import document
from service.settings import Settings
from tests.conftest import ADMIN, SECRET, WRITER, log_row, user_headers
from tests.support.serve import free_port, start, stop, wait_ready

EXAMPLES = 15
CROSS_EXAMPLES = 4
# The run's seed (tests/conftest.py picks one per session when none is given).
SEED = int(os.environ.get("GATELOG_FUZZ_SEED") or 0)
TOKEN_KEY = "sk-" + "fuzz" * 12
CALLERS = {"admin": ADMIN, "user": user_headers(7), "anonymous": {}, "writer": WRITER}
# The service the document is generated for; the test below checks it serves this one.
SETTINGS = Settings(jwt_secret=SECRET, token_lookup_rate=0, max_batch_rows=5)
# Rules the document states in prose only (OpenAPI cannot relate two parameters, or a
# parameter to the clock): a schema-valid request that breaks one is refused, with these.
RANGE_RULE = "invalid parameter 'start_timestamp': must not be after end_timestamp"
FUTURE_RULE = "invalid parameter 'target_timestamp': must not be in the future"
# /api/data/self, with the gateway's own message: at most 30 days from start to end
# (end 0 or missing: now)
SPAN_RULE = "时间跨度不能超过 1 个月"
# ingest: created_at at most now + the clock skew (the document's bound is static)
CREATED_AT_RULE = re.compile(r"row (\d+): field 'created_at' must be between 1 and (\d+)$")
BUCKETS_RULE = re.compile(
    rf"invalid parameter '(interval|group_by)': .* more than the limit of "
    rf"{SETTINGS.max_series_buckets}\b"
)
INTERVAL_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
HYPOTHESIS = settings(deadline=None, suppress_health_check=list(HealthCheck))
SESSION = requests.Session()


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: Any, value: Any) -> bytes:
    """The document's NDJSON body is the batch, one row a line (strings are sent as is,
    as negative cases may be)."""
    if isinstance(value, str):
        return value.encode()
    rows = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()


def load(examples: int, coverage: bool) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "generation": {
                "max-examples": examples,
                # The caller's credentials are the test's: no generated Authorization.
                "with-security-parameters": False,
                # Unknown query parameters are ignored, as the document says.
                "allow-extra-parameters": False,
            },
            "phases": {"coverage": {"enabled": coverage}},
            "seed": SEED,
        }
    )
    schema = schemathesis.openapi.from_dict(document(SETTINGS), config=config)
    schema.hook(filter_failure)
    schema.hook(flatmap_query)
    return schema


def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but the refusal of a schema-valid request that breaks one of
    the rules the document states in prose (and does break it)."""
    if failure.code != "ST202":  # schema-valid request rejected
        return True
    message = json.loads(response.content)["message"]
    query = case.query or {}

    def number(name: str) -> int:
        value = query.get(name)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        return value if isinstance(value, int) and not isinstance(value, bool) else -1

    if message == RANGE_RULE:
        return not number("start_timestamp") > number("end_timestamp") > 0
    if message == SPAN_RULE:
        end = number("end_timestamp")
        end = end if end > 0 else max(int(time.time()), number("start_timestamp"))
        return not end - number("start_timestamp") > 30 * 86400
    if message == FUTURE_RULE:
        return not number("target_timestamp") > time.time() - 60
    future = CREATED_AT_RULE.match(message)
    if future:
        rows = case.body if isinstance(case.body, list) else [case.body]
        row = rows[int(future.group(1)) - 1] if 0 < int(future.group(1)) <= len(rows) else None
        value = row.get("created_at") if isinstance(row, dict) else None
        # ingest takes an integral float as its integer (4294967294.0 is 4294967294)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        exceeds = isinstance(value, int) and value > int(future.group(2))
        return not (exceeds and int(future.group(2)) <= time.time() + 3600)
    rule = BUCKETS_RULE.match(message)
    if rule:
        buckets = fewest_buckets(query, number)
        # a group's buckets and the total's: two series at least
        return not (
            buckets > SETTINGS.max_series_buckets
            or (rule.group(1) == "group_by" and 2 * buckets > SETTINGS.max_series_buckets)
        )
    return True


def fewest_buckets(query: dict[str, Any], number: Any) -> int:
    """The fewest buckets the series the query asks for can have, worked out from the
    document's prose: no end (or 0) is now (or the start, if later), no start (or 0) the
    day before the end; hours and days follow ``tz`` (local hours last at most 90
    minutes, local days at most 25 hours), minutes and UTC's hours and days are aligned
    to their length."""
    interval = query.get("interval") or "hour"
    size = INTERVAL_SECONDS.get(interval, 3600)
    end = number("end_timestamp")
    end = end if end > 0 else max(int(time.time()), number("start_timestamp"))
    start = number("start_timestamp")
    start = start if start > 0 else max(0, end - 86400)
    tz = (query.get("tz") or "UTC").strip() if isinstance(query.get("tz"), str) else "UTC"
    if tz in ("UTC", "Etc/UTC") or interval == "minute":
        return end // size - start // size + 1
    if interval == "day":
        zone = ZoneInfo(tz)
        first, last = (datetime.fromtimestamp(t, zone).date() for t in (start, end))
        return (last - first).days + 1
    return (end - start) // (size * 3 // 2) + 1


def flatmap_query(context: Any, query: dict[str, Any]) -> Any:
    """The token lookup gets the seeded token's key in three cases of four, so that it
    also answers rows (a generated key finds no token); in one of those the key alone,
    since the fuzzed parameters beside a key are often refused (full runs twice had no
    success on the route with seeds that passed when the file ran alone)."""
    if context.operation is None or context.operation.path != "/api/log/token":
        return st.just(query)
    seeded = {**query, "key": TOKEN_KEY}
    return st.sampled_from([query, seeded, seeded, {"key": TOKEN_KEY}])


def intended_caller(method: str, path: str) -> str:
    operation = document(SETTINGS)["paths"][path][method.lower()]
    if not operation["security"]:
        return "anonymous"
    if "ingest" in operation["tags"]:
        return "writer"
    return "user" if re.search(r"/self(/|$)", path) else "admin"


METRIC = re.compile(
    r"^gatelog_http_request_duration_seconds_count\{(?P<labels>.*)\} (?P<n>\S+)$", re.M
)
# Answers by (operation, status) the service had given once seeded, before any fuzzing
SEEDING: Counter[tuple[str, str]] = Counter()


def successes(base: str) -> Counter[tuple[str, str]]:
    """Answers below 400 by operation ("GET /api/log/") and status, as the service's
    own metrics count them."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: Counter[tuple[str, str]] = Counter()
    for found in METRIC.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"]))
        if labels["status"] < "400":
            op = f"{labels['method']} {labels['route']}"
            counts[op, labels["status"]] += int(float(found["n"]))
    return counts


def post(base: str, path: str, rows: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(rows).encode(),
        headers={**WRITER, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz")
    port, log = free_port(), root / "service.log"
    base = f"http://127.0.0.1:{port}"
    proc = start(
        root / "data",
        port,
        log,
        token_lookup_rate=SETTINGS.token_lookup_rate,
        max_batch_rows=SETTINGS.max_batch_rows,
    )
    try:
        wait_ready(base, proc)
        other = '{"model_ratio":1.5,"admin_info":{"node":"a"}}'
        for user in (7, 8):
            rows = [log_row(user_id=user, token_id=user, type=t, other=other) for t in (1, 2, 5)]
            post(base, "/api/internal/logs", rows)
        token = {"id": 7, "key": TOKEN_KEY, "name": "t7", "user_id": 7, "status": 1}
        post(base, "/api/internal/tokens", [token])
        SEEDING.update(successes(base))
        yield base
    finally:
        assert stop(proc) == 0
    # one record a line: split on newlines only (splitlines() would also split a record
    # inside a value holding U+2028 or another Unicode line break, which JSON leaves as is)
    lines = [json.loads(line) for line in log.read_text().split("\n") if line.startswith("{")]
    assert [line for line in lines if line["level"] == "ERROR"] == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /api/log/\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # TLS to the HTTP port
    ],
)
def test_unparseable_http_is_a_400_and_no_error_log(service: str, request_bytes: bytes) -> None:
    # The service's log must hold no ERROR line at the end (checked by the fixture).
    port = int(service.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = sock.recv(4096)
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer[:100]
    assert b"Traceback" not in answer


def test_the_service_serves_the_fuzzed_document(service: str) -> None:
    with urllib.request.urlopen(service + "/api/openapi.json", timeout=10) as response:
        assert json.loads(response.read()) == json.loads(json.dumps(document(SETTINGS)))


INTERNALS = ("Traceback", "DB::Exception", "Code: ", 'File "', "clickhouse", "chdb", "Errno")


@schemathesis.check
def no_internal_text(context: Any, response: Any, case: Any) -> bool | None:
    """An error answer says what was wrong with the request, never how the service or
    the engine failed inside."""
    if response.status_code >= 400:
        leaked = [text for text in INTERNALS if text.lower() in response.text.lower()]
        assert not leaked, f"{response.status_code} answer shows {leaked}: {response.text[:200]}"
    return None


def call(case: Any, caller: str, service: str) -> None:
    try:
        case.call_and_validate(
            base_url=service,
            headers=CALLERS[caller],
            session=SESSION,
            timeout=10,
            additional_checks=[no_internal_text],
        )
    except Exception as exc:
        exc.add_note(f"fuzz seed {SEED}: GATELOG_FUZZ_SEED={SEED} repeats these inputs")
        raise


intended = load(EXAMPLES, coverage=True)


@intended.parametrize()
@HYPOTHESIS
def test_as_the_intended_caller(case: Any, service: str) -> None:
    call(case, intended_caller(case.operation.method, case.operation.path), service)


cross = load(CROSS_EXAMPLES, coverage=False)


@pytest.fixture(scope="module", params=list(CALLERS))
def caller(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@cross.parametrize()
@HYPOTHESIS
def test_as_every_caller(case: Any, caller: str, service: str) -> None:
    call(case, caller, service)


def test_every_documented_route_answered_the_fuzzing_with_success(service: str) -> None:
    """The service's own count of its answers, after both passes (the tests above, in
    this file's order): each documented operation answered the fuzzing's requests with
    success at least once (a 2xx; the redirects a 3xx), the seeding's requests not
    counted, so the fuzzing got past the refusals on every route."""
    after = successes(service)
    never = []
    for path, item in document(SETTINGS)["paths"].items():
        for method, operation in item.items():
            statuses = [s for s in operation["responses"] if s.startswith("2")] or [
                s for s in operation["responses"] if s.startswith("3")
            ]
            op = f"{method.upper()} {path}"
            if sum(after[op, s] - SEEDING[op, s] for s in statuses) <= 0:
                never.append(op)
    assert not never, f"no success answered to the fuzzing: {never} (fuzz seed {SEED})"


def test_callers_cover_each_kind_of_route() -> None:
    assert intended_caller("GET", "/api/log/") == "admin"
    assert intended_caller("GET", "/api/log/self/search") == "user"
    assert intended_caller("GET", "/api/log/token") == "anonymous"
    assert intended_caller("POST", "/api/internal/logs") == "writer"
