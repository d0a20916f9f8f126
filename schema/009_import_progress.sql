-- Where each `python -m service import` source stands, so that an import can be re-run
-- or resumed without storing a row twice. One row per source wins (the newest
-- `version`): either `done` up to `batch_to` (every source id <= batch_to is stored), or
-- `pending` for the id window (batch_from, batch_to] whose insert may or may not have
-- landed. A resumed import replays a pending window first with the same deduplication
-- token, so the engine stores whatever part of it had not landed and nothing twice.
CREATE TABLE IF NOT EXISTS import_progress
(
    source     String,
    url        String,
    state      Enum8('pending' = 1, 'done' = 2),
    batch_from UInt64,
    batch_to   UInt64,
    rows       UInt64,
    version    UInt64,
    updated_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY source
