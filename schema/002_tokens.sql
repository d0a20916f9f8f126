-- Gateway tokens, upserted by id. The secret key is never stored: key_hash is the hex
-- SHA-256 of the key without its `sk-` prefix (keys are 48 random characters, so a
-- plain hash is not guessable). `version` orders upserts: the newest row per id wins
-- (read with FINAL).
CREATE TABLE IF NOT EXISTS tokens
(
    id        UInt64,
    key_hash  String,
    name      String,
    user_id   UInt64,
    status    UInt8,
    version   UInt64,
    INDEX idx_key_hash key_hash TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id
