-- The raw log table: one row per gateway request, every field of the admin log item.
--
-- Partitioned by day so that retention and history deletion drop whole partitions
-- (a metadata operation) instead of rewriting rows.
--
-- Sort key (user_id, created_at, id): the most frequent reads are one user's
-- newest-first pages, token lookups (the token's user_id is known from `tokens`) and
-- per-user stats, and these become primary-key range reads. Measured with
-- `python bench/sortkey.py --rows 3000000` (chDB 26.9, 2 cores, 30 days, medians;
-- bench/results/sortkey-3000000.json), (created_at, id) vs this key:
--   token newest 100 111 -> 25 ms, user count 40 -> 16 ms, user sum(quota) over
--   10 days 44 -> 22 ms, admin newest 20 at offset 10000 197 -> 119 ms,
--   admin count with a model filter 29 -> 20 ms; the price is the admin newest-20
--   page without filters, 18 -> 24 ms. Keyword search is equal (94 ms, n-gram index).
-- Time ranges are pruned by the day partitions and by the minmax index on
-- created_at inside a day.
--
-- Skip indexes serve the admin filters that are not in the key (username, token,
-- request id, model, channel) and the case-insensitive substring search over content
-- and model_name (n-gram bloom filters over the lowercased text; `LIKE` on the same
-- expression uses them).
--
-- non_replicated_deduplication_window makes a retried ingest batch (same
-- insert_deduplication_token) a no-op; the rollup tables carry the same window so that
-- their materialized views stay exact on retries (spec/engine-notes.md).
CREATE TABLE IF NOT EXISTS logs
(
    id                UInt64,
    user_id           UInt64,
    created_at        DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    type              UInt8,
    content           String CODEC(ZSTD(3)),
    username          LowCardinality(String),
    token_name        String,
    model_name        LowCardinality(String),
    quota             Int64,
    prompt_tokens     Int64,
    completion_tokens Int64,
    use_time          Int32,
    is_stream         Bool,
    channel_id        UInt32,
    channel_name      LowCardinality(String),
    token_id          UInt64,
    `group`           LowCardinality(String),
    ip                String,
    request_id        String,
    other             String CODEC(ZSTD(3)),
    INDEX idx_created_at created_at TYPE minmax GRANULARITY 1,
    INDEX idx_username username TYPE bloom_filter(0.01) GRANULARITY 2,
    INDEX idx_token_id token_id TYPE bloom_filter(0.01) GRANULARITY 2,
    INDEX idx_token_name token_name TYPE bloom_filter(0.01) GRANULARITY 2,
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 2,
    INDEX idx_model_name model_name TYPE bloom_filter(0.01) GRANULARITY 2,
    INDEX idx_channel_id channel_id TYPE bloom_filter(0.01) GRANULARITY 2,
    INDEX idx_content_ngram lowerUTF8(content) TYPE ngrambf_v1(3, 65536, 3, 0) GRANULARITY 1,
    INDEX idx_model_ngram lowerUTF8(model_name) TYPE ngrambf_v1(3, 4096, 2, 0) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toDate(created_at)
ORDER BY (user_id, created_at, id)
SETTINGS non_replicated_deduplication_window = 10000
