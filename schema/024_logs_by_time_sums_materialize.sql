-- Builds the projection of 023 for the parts written before it existed (a mutation;
-- parts written later get it at insert). On an empty table it does nothing.
ALTER TABLE logs MATERIALIZE PROJECTION logs_by_time_sums
