"""Settings: one frozen dataclass, built once from ``GATELOG_*`` environment variables.

Tests construct :class:`Settings` directly; nothing else in the package reads the
environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

PREFIX = "GATELOG_"
#: a command that prints a good HS256 secret (the messages and the README show it)
MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    # Engine: unset URL means the embedded chDB engine in ``data_dir``.
    clickhouse_url: str | None = None
    data_dir: str = "./data"
    clickhouse_cluster: str | None = None
    # Auth.
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Delegated sign-in: the gateway (new-api) whose GET /api/user/self vouches for
    # callers without a gatelog JWT; its answers are reused for the TTL (refusals for
    # the shorter negative TTL), at most gateway_auth_cache_size of them.
    gateway_url: str | None = None
    gateway_auth_ttl_seconds: float = 10.0
    gateway_auth_negative_ttl_seconds: float = 2.0
    gateway_auth_cache_size: int = 10_000
    gateway_timeout_seconds: float = 3.0
    # Follow a gateway database (an import URL) from `serve`.
    follow_from: str | None = None
    follow_interval_seconds: float = 2.0
    # The longest time between two reads of the gateway's tokens table while following.
    follow_tokens_interval_seconds: float = 30.0
    # The zone of "today" and the default `tz` of series and /api/data.
    time_zone: str = "UTC"
    # HTTP.
    host: str = "0.0.0.0"
    port: int = 8080
    cors_origins: tuple[str, ...] = ("*",)
    token_lookup_rate: int = 60
    # Proxies (CIDRs) whose X-Forwarded-For names the real client, for the rate limit.
    trusted_proxies: tuple[str, ...] = ()
    # Limits.
    page_size_default: int = 20
    page_size_max: int = 100
    token_page_size_default: int = 100
    token_page_size_max: int = 1000
    search_limit_default: int = 100
    max_text_param: int = 256
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch_rows: int = 200_000
    max_series_buckets: int = 10_000
    # Ingest bounds (docs/ingest.md): text lengths in characters, per-row bounds of the
    # summed figures (so sums cannot overflow), how far ahead of this clock a created_at
    # may be, how many days (partitions) one batch may span, a token key's minimum length.
    ingest_max_content_chars: int = 65_536
    ingest_max_other_chars: int = 65_536
    ingest_max_text_chars: int = 1_024
    ingest_max_quota: int = 10**12
    ingest_max_tokens: int = 10**9
    ingest_clock_skew_seconds: int = 300
    ingest_max_days_per_batch: int = 31
    ingest_min_token_key_chars: int = 1
    # Export: the rows the engine sorts at a time (newest-first windows planned from the
    # rollup) and the rows per block handed to Python; together they bound the memory.
    export_window_rows: int = 100_000
    export_block_rows: int = 8_192
    # Operations.
    retention_days: int | None = None
    retention_interval_seconds: int = 3600
    delete_partitions_per_statement: int = 10
    engine_threads: int = 4
    engine_timeout_seconds: float = 30.0
    # Bounded engine work (docs/limits.md, service/gate.py): each query's time, memory
    # and answer size are bounded in the engine (0: no bound); engine calls run at most
    # max_concurrent_queries at once (of one caller at most the per-user share), more
    # wait in line for the queue timeout, then get 503 (429 past the caller's share);
    # ingest has its own slots and threads.
    query_timeout_seconds: float = 30.0
    query_max_memory_bytes: int = 256 * 1024 * 1024
    max_answer_bytes: int = 16 * 1024 * 1024
    max_concurrent_queries: int = 4
    max_concurrent_queries_per_user: int = 2
    # one caller's share while another caller uses the engine (0: the share above always)
    contended_queries_per_user: int = 1
    query_queue_timeout_seconds: float = 5.0
    max_queued_queries: int = 256
    max_concurrent_ingests: int = 2
    ingest_queue_timeout_seconds: float = 30.0
    max_queued_ingests: int = 256
    # Slow clients: a streamed answer whose client takes longer than this to accept one
    # chunk is cut; a request body not received whole within body_timeout is a 408.
    send_timeout_seconds: float = 30.0
    body_timeout_seconds: float = 30.0
    # /readyz reuses its last engine probe for this long (anonymous probes cost nothing).
    readyz_cache_seconds: float = 2.0
    # /metrics answers only `Authorization: Bearer <this>` when set (SECURITY.md).
    metrics_token: str | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, str(f.type), raw)
        values.update(overrides)
        return cls(**values)

    def check_auth(self) -> None:
        """The service must not start without a way to verify bearer tokens, nor with an
        HS256 secret shorter than pyjwt's minimum (the hash size, RFC 7518 3.2)."""
        if not self.jwt_secret and not self.jwt_public_key:
            raise SettingsError(
                "no JWT key configured: set GATELOG_JWT_SECRET (HS256 shared secret, e.g. "
                f"`export GATELOG_JWT_SECRET=$({MAKE_SECRET})`) or GATELOG_JWT_PUBLIC_KEY "
                "(PEM public key for RS256/ES256)"
            )
        if self.jwt_secret and not self.jwt_public_key:
            from jwt.algorithms import HMACAlgorithm

            hs256 = HMACAlgorithm(HMACAlgorithm.SHA256)
            short = hs256.check_key_length(hs256.prepare_key(self.jwt_secret))
            if short is not None:
                size = len(self.jwt_secret.encode())
                minimum = HMACAlgorithm.SHA256().digest_size
                raise SettingsError(
                    f"GATELOG_JWT_SECRET is {size} bytes, shorter than the {minimum} bytes "
                    f"HS256 needs: make a good one with `openssl rand -hex 32` or `{MAKE_SECRET}`"
                )

    def check_gateway(self) -> None:
        if self.gateway_url is None:
            return
        from urllib.parse import urlsplit

        parts = urlsplit(self.gateway_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                f"GATELOG_GATEWAY_URL must be the gateway's base URL such as "
                f"http://new-api:3000, got {self.gateway_url!r}"
            )
        if parts.username or parts.password:
            raise SettingsError("GATELOG_GATEWAY_URL must not hold a user or password")

    def check_time_zone(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"GATELOG_TIME_ZONE must be an IANA zone such as UTC or Asia/Shanghai, "
                f"got {self.time_zone!r}"
            ) from None

    def check_ingest_bounds(self) -> None:
        """One batch is one insert block, whose rollup sums the views add as Int64 before
        the Int128 cells take them (schema/055-058): rows times a per-row bound must fit."""
        for name, bound in (
            ("GATELOG_INGEST_MAX_QUOTA", self.ingest_max_quota),
            ("GATELOG_INGEST_MAX_TOKENS", self.ingest_max_tokens),
        ):
            if max(1, self.max_batch_rows) * bound >= 2**63:
                raise SettingsError(
                    f"{name} ({bound}) times GATELOG_MAX_BATCH_ROWS ({self.max_batch_rows}) "
                    "must stay below 2^63 (a batch's sum must fit Int64): lower either"
                )

    @property
    def embedded(self) -> bool:
        return not self.clickhouse_url


#: settings of earlier builds that are not read any more, and why
RETIRED = {
    "GATELOG_NODE_ID": "each process leases its id node from the engine (docs/ids.md)",
}


def retired_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each retired setting that is still set."""
    env = os.environ if environ is None else environ
    return [
        f"{name} is not read any more: {why}; remove it"
        for name, why in RETIRED.items()
        if env.get(name)
    ]


def _coerce(name: str, type_name: str, raw: str) -> Any:
    env_name = PREFIX + name.upper()
    if type_name.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if type_name.startswith("int") or type_name.startswith("float"):
        try:
            number = float(raw) if type_name.startswith("float") else int(raw)
        except ValueError:
            raise SettingsError(f"{env_name} must be a number, got {raw!r}") from None
        if number < 0:
            raise SettingsError(f"{env_name} must not be negative, got {raw!r}")
        return number
    return raw
