-- The upstream provider's request id, which newer gateway builds (new-api) log beside
-- their own `request_id` and let `/api/log/self` filter on. Stored from ingest and from
-- the import when the source has it; '' otherwise (rows stored before this column
-- read as '' too, so nothing has to be rewritten).
ALTER TABLE logs ADD COLUMN IF NOT EXISTS upstream_request_id String DEFAULT '' AFTER request_id
