-- The day-partitioned day levels (012-015) were superseded by the month-partitioned ones
-- (019-022), which took their history when they were created (service/migrate.py
-- FILLS); nothing reads them. Their views cost each insert into logs about 12% of its
-- rate (two of seven views; bench/write.py, docs/benchmarks.md "Write path"): the
-- views go first (080, 081), then the tables (082, 083).
DROP VIEW IF EXISTS logs_day_site_mv
