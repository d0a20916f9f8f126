-- The per-minute latency and error rollup behind /api/log/performance, fed by the
-- materialized view in 031_logs_perf_minute_mv.sql.
--
-- One row per minute, per combination of the dimensions the performance filters and
-- group_by use, and per histogram cell: `use_time` (whole seconds, an exact value, so
-- use_time percentiles are exact) and `frt_bucket`, the logarithmic bucket of the
-- first-token time (`frt` in `other`, milliseconds) with ratio 1.03 between bucket
-- bounds: bucket k holds [1.03^k, 1.03^(k+1)) and its representative
-- 2 * lo * hi / (lo + hi) is within (1.03 - 1) / (1.03 + 1) = 1.48% of every value in
-- it, under the 2% the issue allows. Logs without a positive frt (absent, or the
-- gateway's -1000 for non-stream requests) are in bucket -32768, which never counts.
--
-- Only consume (2) and error (5) logs are rolled up: the endpoint counts nothing else.
-- Error logs are folded with use_time 0 and no frt: only their number matters.
--
-- Read it with sum(n) ... GROUP BY (SummingMergeTree folds only at merge); history
-- deletes insert negated rows (service/deletion.py) and drop day partitions, like
-- logs_minute (003). non_replicated_deduplication_window as on `logs`: a retried ingest
-- batch is dropped here too (spec/engine-notes.md).
CREATE TABLE IF NOT EXISTS logs_perf_minute
(
    minute      DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    user_id     UInt64,
    type        UInt8,
    username    LowCardinality(String),
    token_name  String,
    model_name  LowCardinality(String),
    channel_id  UInt32,
    `group`     LowCardinality(String),
    use_time    Int32,
    frt_bucket  Int16,
    n           Int64,
    INDEX idx_minute minute TYPE minmax GRANULARITY 1
)
ENGINE = SummingMergeTree(n)
PARTITION BY toDate(minute)
ORDER BY (type, user_id, minute, username, token_name, model_name, channel_id, `group`, use_time, frt_bucket)
SETTINGS non_replicated_deduplication_window = 10000
