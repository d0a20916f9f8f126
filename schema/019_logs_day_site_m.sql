-- Site-wide per-day (UTC) rollup partitioned by month: the same rows as logs_day_site
-- (012: type, model, channel, group), fed by 020, and the day level the read path uses
-- (service/stats.py). A stat over 30 days reads its whole days from one or two parts
-- here instead of 30 (one per day partition): at 1M generated rows, sum() over 29 whole
-- days cost 3.2-8.7 ms of engine CPU against 9.7-24 ms on the day-partitioned table
-- (chDB 26.9, 2 cores, load 20-30; docs/benchmarks.md), the per-part cost of a query
-- being what a small rollup query pays.
--
-- Deletes: whole days cannot be dropped as partitions here; the history delete and
-- retention insert negated rows of the dropped days (taken from this table itself, so
-- they net to zero and vanish at merge; service/deletion.py) and correct the partial
-- day from the raw rows, as for every level. Read with sum() ... GROUP BY as every
-- rollup (003). An existing deployment's history is copied from 012 once, when this
-- level's view is created (service/migrate.py FILLS).
CREATE TABLE IF NOT EXISTS logs_day_site_m
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
PARTITION BY toYYYYMM(day)
ORDER BY (type, day, model_name, channel_id, `group`)
SETTINGS non_replicated_deduplication_window = 10000
