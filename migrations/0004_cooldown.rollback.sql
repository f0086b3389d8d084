-- Undo 0004_cooldown.
CREATE INDEX IF NOT EXISTS tokens_account_idx ON tokens (account);
DROP INDEX IF EXISTS tokens_account_action_created_idx;
ALTER TABLE tokens DROP COLUMN IF EXISTS suppressed;
