-- Sums that cannot overflow (issue 17.7): the summed figures of logs_day_site_m are Int128. A
-- rollup row folds every log of its bucket and dimensions at merge time, so with
-- Int64 cells 9.2 million logs of one bucket at the quota bound (10^12) would wrap;
-- Int128 holds 1.7 * 10^26 such logs. `requests` is a count and stays Int64. The
-- views' per-insert sums stay Int64 and fit: one insert block holds at most
-- GATELOG_MAX_BATCH_ROWS rows, and the service refuses to start when that times a
-- per-row bound reaches 2^63 (service/settings.py). Stats sum raw rows as Int128 too
-- (service/stats.py), so stats and the export's totals agree exactly at any volume.
ALTER TABLE logs_day_site_m
    MODIFY COLUMN IF EXISTS quota Int128,
    MODIFY COLUMN IF EXISTS prompt_tokens Int128,
    MODIFY COLUMN IF EXISTS completion_tokens Int128
