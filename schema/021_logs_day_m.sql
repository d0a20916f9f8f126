-- Per-user per-day (UTC) rollup partitioned by month: the same rows as logs_day (014:
-- user, type, username, token name, model, channel, group), fed by 022; the day level of
-- a user's stats and lists (service/stats.py). One user's 29 whole days read from one or
-- two parts: 7.5-8.3 ms of engine CPU against 24-26 ms on the day-partitioned table at
-- 1M generated rows (docs/benchmarks.md). Deletes, exactness and the copy of an
-- existing deployment's history as in 019.
CREATE TABLE IF NOT EXISTS logs_day_m
(
    day               DateTime('UTC'),
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
    completion_tokens Int64
)
ENGINE = SummingMergeTree((requests, quota, prompt_tokens, completion_tokens))
PARTITION BY toYYYYMM(day)
ORDER BY (type, user_id, day, username, token_name, model_name, channel_id, `group`)
SETTINGS non_replicated_deduplication_window = 10000
