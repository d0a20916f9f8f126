-- A time-ordered copy of the narrow columns of `logs` inside each part: the admin
-- pages' access path newest first (service/logs.py). `logs` is ordered by
-- (user_id, created_at, id) for the per-user reads; a newest-first page over all users
-- in that order reads every granule of the partitions in range and sorts them. Through
-- this projection the page's keys are read in time order and the read stops after the
-- page (read-in-order with an early stop), then the page's rows are read by key from
-- `logs`: the cost follows the page, not the rows per day.
--
-- The columns are the filters of an admin page that are rollup dimensions (user,
-- username, token, model, channel, group, type) and the key; filters on other columns
-- (keywords on content, request_id) read `logs` itself. The wide columns (content,
-- other) stay out: the projection adds about a tenth of the raw table's size.
-- Measured figures: docs/benchmarks.md.
ALTER TABLE logs ADD PROJECTION IF NOT EXISTS logs_by_time
(
    SELECT id, created_at, user_id, type, username, token_name, model_name, channel_id,
           `group`, token_id
    ORDER BY created_at, id
)
