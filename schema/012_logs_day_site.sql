-- Site-wide per-day (UTC) rollup: one row per day and per (type, model, channel,
-- group), fed by 013_logs_day_site_mv.sql. The whole UTC days of an admin stat or of a
-- daily series come from here: day x (type, model, channel, group) folds the
-- generator's 10M rows over 30 days to 25.9k rows (387x, spec/engine-notes.md).
--
-- Exactness, deletes, partitioning and deduplication as in 010 and 003.
CREATE TABLE IF NOT EXISTS logs_day_site
(
    day               DateTime('UTC'),
    type              UInt8,
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
ORDER BY (type, day, model_name, channel_id, `group`)
SETTINGS non_replicated_deduplication_window = 10000
