-- See 080: the retired per-user day level (014), no longer fed.
DROP TABLE IF EXISTS logs_day
