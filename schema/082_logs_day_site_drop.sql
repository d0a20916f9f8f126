-- See 080: the retired site-wide day level (012), no longer fed.
DROP TABLE IF EXISTS logs_day_site
