-- Reputation guard: at most one email per account and action per cooldown
-- (MAILROOM_RECOVERY_COOLDOWN, applied by the collector when it reads the queue).
-- depends: 0003_prune

-- True when a collector read this token and emitted no email for it: an email for the
-- same account and action went out for a token created within the cooldown, or the token
-- was not sendable when read (expired, consumed, account in the wrong status). Only
-- tokens that were emailed start a cooldown window. The default keeps the common case
-- (every token emailed) free of any UPDATE; `mailroom requeue` clears it.
ALTER TABLE tokens ADD COLUMN suppressed boolean NOT NULL DEFAULT false;

-- The cooldown looks up an account's tokens of one action around a creation time. This
-- index replaces tokens_account_idx (account is still its leading column, so the foreign
-- key's cascades and the app's lookups by account use it), which keeps one index, not
-- two, on the app's insert path.
CREATE INDEX tokens_account_action_created_idx ON tokens (account, action, created_at);
DROP INDEX tokens_account_idx;
