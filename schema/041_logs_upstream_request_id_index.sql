-- An exact-match filter on upstream_request_id (040) finds its few rows through a bloom
-- filter, as request_id does (001). The index covers the parts written after it exists;
-- older parts are still read, and stay correct (`MATERIALIZE INDEX` would rebuild them).
ALTER TABLE logs ADD INDEX IF NOT EXISTS idx_upstream_request_id upstream_request_id TYPE bloom_filter(0.001) GRANULARITY 2
