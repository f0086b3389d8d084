-- Undo 0003_prune.
DROP PROCEDURE IF EXISTS mailroom_prune_all(interval, integer);
DROP FUNCTION IF EXISTS mailroom_prune(interval, integer);
DROP INDEX IF EXISTS tokens_done_at_idx;
