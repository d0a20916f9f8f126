-- The per-minute rollup: one row per minute and per combination of the dimensions the
-- stat/series filters use (user, username, token name, model, channel, group, type),
-- fed by the materialized view in 004_logs_minute_mv.sql.
--
-- Stats and series read whole minutes from here and only the partial edge minutes from
-- `logs`: their cost follows the rollup rows in range (at most one per minute and
-- active combination of dimensions), not the raw rows.
--
-- It folds the logs of one minute that share all these dimensions, so the reduction
-- grows with the traffic per user: on generated gateway-like logs (bench/rollup.py,
-- bench/results/rollup-reduction.json) 1.04x at 1M logs over 30 days (23 a minute),
-- 1.2x at 10M, 1.4x at 30M, 2.1x at 10M in one day; with every dimension drawn
-- independently (the worst case) about 1.0x.
--
-- Always read it with sum() ... GROUP BY: SummingMergeTree folds rows with the same key
-- only when parts merge, and a query must never depend on merges having happened.
--
-- The sums are signed: a history delete that removes part of a day inserts negated
-- rows for the rows it removes (service/deletion.py), so the rollup stays exact without
-- touching the rows of newer logs; rows whose sums all reach zero vanish at merge.
--
-- Partitioned by day like `logs`, so that dropping a day drops both.
-- Sort key: type (stats count one type, consume by default) and user_id first (a user's
-- stats read one key range), then the minute (time ranges inside a day), then the other
-- dimensions, which must all be in the key for SummingMergeTree to keep them apart.
--
-- non_replicated_deduplication_window as on `logs`: the view's block of a retried ingest
-- batch (same insert_deduplication_token) is dropped here too, so retries do not count
-- twice (spec/engine-notes.md; tests/test_stats.py proves it).
CREATE TABLE IF NOT EXISTS logs_minute
(
    minute            DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    user_id           UInt64,
    type              UInt8,
    username          LowCardinality(String),
    token_name        String,
    model_name        LowCardinality(String),
    channel_id        UInt32,
    `group`           LowCardinality(String),
    requests          Int64,
    quota             Int64,
    prompt_tokens     Int64,
    completion_tokens Int64,
    -- Parts and granules of heavy users cover narrow minute ranges: prune on them.
    INDEX idx_minute minute TYPE minmax GRANULARITY 1
)
ENGINE = SummingMergeTree((requests, quota, prompt_tokens, completion_tokens))
PARTITION BY toDate(minute)
ORDER BY (type, user_id, minute, username, token_name, model_name, channel_id, `group`)
SETTINGS non_replicated_deduplication_window = 10000
