-- Rollup work in progress (service/rollup.py): a history delete, a removal of
-- future-dated logs or a rollup repair writes a marker naming the days it may leave
-- inexact before it starts (`open` = 1) and closes it (a newer version with `open` = 0)
-- once it has checked those days against the raw rows. A marker still open when a
-- service starts was left by a process that died midway: the start checks and repairs
-- its days. While a marker is open, ingest on every replica holds batches that reach
-- into its days, so deletes and repairs through one replica stay exact beside late
-- ingest through another (issue 15.4). Read with FINAL (the newest version per token).
CREATE TABLE IF NOT EXISTS rollup_markers
(
    token      String,
    op         LowCardinality(String),
    first_day  Date,
    last_day   Date,
    open       UInt8,
    at         DateTime('UTC'),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token
