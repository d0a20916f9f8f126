-- See 080: the retired per-user day level's view.
DROP VIEW IF EXISTS logs_day_mv
