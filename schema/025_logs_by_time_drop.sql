-- 023 carries every column of 017 and the sums: the narrower projection is dropped, so
-- each insert sorts one copy of the narrow columns, not two.
ALTER TABLE logs DROP PROJECTION IF EXISTS logs_by_time
