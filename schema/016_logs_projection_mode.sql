-- Lets the lightweight DELETE of a history delete's boundary day (service/deletion.py)
-- run on `logs` now that it has a projection (017): the engine refuses a lightweight
-- delete on a table with projections unless this mode is set. 'drop' drops the
-- projection of the parts the delete touched (their reads fall back to the table's own
-- order, still exact); 'rebuild' was measured to keep deleted rows visible through the
-- projection on chDB 26.9 (a count through it returned the deleted rows), so it is not used.
ALTER TABLE logs MODIFY SETTING lightweight_mutation_projection_mode = 'drop'
