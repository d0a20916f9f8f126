-- Per-user per-day (UTC) rollup with every dimension of logs_minute (user, type,
-- username, token name, model, channel, group), fed by 015_logs_day_mv.sql. A user's
-- stats and series over whole days read their days here and only the edge hours'
-- minutes from logs_minute: day x these dimensions folds the generator's 10M rows to
-- 2.04M (4.9x; minute x the same: 1.2x, spec/engine-notes.md), and the sort key starts
-- with (type, user_id) so one user's range is one key range.
--
-- Exactness, deletes, partitioning and deduplication as in 003.
CREATE TABLE IF NOT EXISTS logs_day
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
PARTITION BY toDate(day)
ORDER BY (type, user_id, day, username, token_name, model_name, channel_id, `group`)
SETTINGS non_replicated_deduplication_window = 10000
