-- Site-wide per-hour rollup: one row per hour and per (type, model, channel, group),
-- without the per-user columns (user, username, token name), fed by
-- 011_logs_hour_site_mv.sql. Admin stats and series whose filters are all among these
-- dimensions read their whole hours from here (service/stats.py chooses the level).
--
-- Why these dimensions: on the generator's gateway-like rows (10M rows, 30 days, 5,000
-- users; spec/engine-notes.md) hour x (type, model, channel, group) folds to 374k rows
-- (27x), while hour x every dimension of logs_minute folds only 2.2x: the user columns
-- are what keeps a rollup large.
--
-- Signed sums and exactness as in logs_minute (003): always read with sum() ... GROUP
-- BY; history deletes insert negated rows for a partial day (service/deletion.py) and
-- drop whole days; partitioned by day like logs so that both drop together; the
-- deduplication window keeps a retried ingest batch from being counted twice.
CREATE TABLE IF NOT EXISTS logs_hour_site
(
    hour              DateTime('UTC'),
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
PARTITION BY toDate(hour)
ORDER BY (type, hour, model_name, channel_id, `group`)
SETTINGS non_replicated_deduplication_window = 10000
