"""Prometheus metrics: one registry per app (not the process-global one, so tests and
embedders can build many apps), served at ``/metrics``.

- ``gatelog_http_request_duration_seconds{route,method,status}``: request latency
  histogram; ``route`` is the route's pattern (``unmatched`` for paths no route serves),
  so label values stay bounded whatever paths clients send.
- ``gatelog_http_requests_in_flight``: requests being served now.
- ``gatelog_engine_query_duration_seconds{kind}``: engine call latency histogram,
  ``kind`` = ``query``, ``command``, ``insert``, ``stream``.
- ``gatelog_ingested_rows_total{kind}``: rows acknowledged by ingest, ``logs`` or
  ``tokens`` (a retried batch counts again; it is stored once).
- ``gatelog_deleted_rows_total{source}``: log rows deleted, ``api`` (``DELETE
  /api/log/``), ``retention`` or ``future`` (``DELETE /api/log/future``).
- ``gatelog_errors_total{kind}``: error answers, by :data:`ERROR_KINDS`.
- ``gatelog_engine_queue_depth{lane}``, ``gatelog_engine_slots_busy{lane}``,
  ``gatelog_engine_queue_wait_seconds{lane}``, ``gatelog_engine_rejections_total{lane,
  reason}``: engine admission (service/gate.py), lanes ``read`` and ``write``.

Other modules report through the app's :class:`Metrics` (``request.app[METRICS]``):
``rows_ingested(kind, n)``, ``rows_deleted(n, source)``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

UNMATCHED = "unmatched"
#: error kinds by HTTP status; EngineError (a statement of ours the engine rejected)
#: is ``engine_error``, any other unexpected exception ``internal``.
ERROR_KINDS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
    503: "engine_unavailable",
    500: "internal",
}
ENGINE_ERROR = "engine_error"
INGEST_KINDS = ("logs", "tokens")
DELETE_SOURCES = ("api", "retention", "future")
ENGINE_KINDS = ("query", "command", "insert", "stream")
LANES = ("read", "write")
REJECT_REASONS = ("queue_full", "queue_timeout", "caller_share")
# Request latency: from sub-millisecond probes to long exports.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ENGINE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def error_kind(status: int) -> str:
    return ERROR_KINDS.get(status, "bad_request" if status < 500 else "internal")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_duration = Histogram(
            "gatelog_http_request_duration_seconds",
            "HTTP request latency by route pattern, method and status",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "gatelog_http_requests_in_flight", "HTTP requests being served", registry=r
        )
        self.engine_duration = Histogram(
            "gatelog_engine_query_duration_seconds",
            "ClickHouse engine call latency by kind (query, command, insert, stream)",
            ["kind"],
            buckets=ENGINE_BUCKETS,
            registry=r,
        )
        self.ingested = Counter(
            "gatelog_ingested_rows", "Rows acknowledged by ingest, by kind", ["kind"], registry=r
        )
        self.deleted = Counter(
            "gatelog_deleted_rows", "Log rows deleted, by source", ["source"], registry=r
        )
        self.errors = Counter("gatelog_errors", "Error answers by kind", ["kind"], registry=r)
        self.slow_clients = Counter(
            "gatelog_slow_clients",
            "Connections cut because the client was too slow: a streamed answer not "
            "accepted within GATELOG_SEND_TIMEOUT_SECONDS (send) or a request body not "
            "received within GATELOG_BODY_TIMEOUT_SECONDS (body)",
            ["direction"],
            registry=r,
        )
        for direction in ("send", "body"):
            self.slow_clients.labels(direction)
        # Engine admission (service/gate.py), by lane (read, write).
        self.queue_depth = Gauge(
            "gatelog_engine_queue_depth",
            "Engine calls waiting for a slot, by lane (read, write)",
            ["lane"],
            registry=r,
        )
        self.slots_busy = Gauge(
            "gatelog_engine_slots_busy", "Engine slots held, by lane", ["lane"], registry=r
        )
        self.queue_wait = Histogram(
            "gatelog_engine_queue_wait_seconds",
            "Time an engine call waited for its slot, by lane",
            ["lane"],
            buckets=ENGINE_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "gatelog_engine_rejections",
            "Engine calls refused after their bounded wait, by lane and reason: queue_full "
            "(too many waiting), queue_timeout (503), caller_share (the caller's own share "
            "stayed full: 429)",
            ["lane", "reason"],
            registry=r,
        )
        for lane in LANES:
            self.queue_depth.labels(lane)
            self.slots_busy.labels(lane)
            self.queue_wait.labels(lane)
            for reason in REJECT_REASONS:
                self.rejections.labels(lane, reason)
        # Every known series exists from the start (at 0), so rates and alerts work
        # before the first event.
        for kind in INGEST_KINDS:
            self.ingested.labels(kind)
        for source in DELETE_SOURCES:
            self.deleted.labels(source)
        for kind in {*ERROR_KINDS.values(), ENGINE_ERROR}:
            self.errors.labels(kind)
        for kind in ENGINE_KINDS:
            self.engine_duration.labels(kind)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_duration.labels(route, method, str(status)).observe(seconds)

    def observe_engine(self, kind: str, seconds: float) -> None:
        """The store's observer hook (``Store.add_observer``)."""
        self.engine_duration.labels(kind).observe(seconds)

    # service.gate.LaneObserver
    def lane_queue_depth(self, lane: str, depth: int) -> None:
        self.queue_depth.labels(lane).set(depth)

    def lane_busy(self, lane: str, busy: int) -> None:
        self.slots_busy.labels(lane).set(busy)

    def lane_waited(self, lane: str, seconds: float) -> None:
        self.queue_wait.labels(lane).observe(seconds)

    def lane_rejected(self, lane: str, reason: str) -> None:
        self.rejections.labels(lane, reason).inc()

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def slow_client(self, direction: str) -> None:
        self.slow_clients.labels(direction).inc()

    def rows_ingested(self, kind: str, rows: int) -> None:
        self.ingested.labels(kind).inc(rows)

    def rows_deleted(self, rows: int, source: str = "api") -> None:
        """For the deletion endpoint and the retention job: rows removed."""
        if rows > 0:
            self.deleted.labels(source).inc(rows)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition and its content type, negotiated from ``Accept`` as the
        official client does (Prometheus text format, or OpenMetrics when asked)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
