-- Undo 0008_actions. Only for a bigint installation; the tokens of actions other than
-- activation and password_recovery, and tokens without an account, are deleted (0007's
-- schema cannot hold them), as are the actions added to the registry.
DO $$
BEGIN
    IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'tokens'::regclass AND attname = 'account') <> 'bigint' THEN
        RAISE EXCEPTION 'mailroom: an installation with uuid account keys cannot go back before 0008_actions'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;
DROP VIEW IF EXISTS delivery_status;
DROP VIEW IF EXISTS recipients;
DROP FUNCTION IF EXISTS consume(text, bytea, text);
DROP FUNCTION IF EXISTS request(text, bigint, text, text);
DROP TRIGGER IF EXISTS accounts_tokens_deleted ON accounts;
DROP FUNCTION IF EXISTS mailroom_accounts_deleted();
DROP TRIGGER IF EXISTS tokens_defaults ON tokens;
DROP FUNCTION IF EXISTS mailroom_token_defaults();
DELETE FROM tokens WHERE action NOT IN ('activation', 'password_recovery') OR account IS NULL;
DELETE FROM tokens t WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.account);
ALTER TABLE tokens ALTER COLUMN expires_at SET DEFAULT now() + interval '15 minutes';
ALTER TABLE accounts DROP COLUMN IF EXISTS locale;
ALTER TABLE tokens DROP COLUMN IF EXISTS locale;
ALTER TABLE tokens DROP COLUMN IF EXISTS email;
ALTER TABLE tokens ALTER COLUMN account SET NOT NULL;
ALTER TABLE tokens ADD CONSTRAINT tokens_account_fkey FOREIGN KEY (account) REFERENCES accounts (id)
    ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
DROP TRIGGER IF EXISTS tokens_consumed ON tokens;
ALTER TABLE tokens DROP CONSTRAINT IF EXISTS tokens_action_fkey;
CREATE TYPE token_action AS ENUM ('activation', 'password_recovery');
ALTER TABLE tokens ALTER COLUMN action TYPE token_action USING action::token_action;
CREATE TRIGGER tokens_consumed
    AFTER UPDATE OF consumed_at ON tokens
    FOR EACH ROW WHEN (OLD.consumed_at IS NULL AND NEW.consumed_at IS NOT NULL AND NEW.action = 'activation')
    EXECUTE FUNCTION mailroom_token_consumed();
DROP TABLE IF EXISTS actions;
CREATE VIEW delivery_status AS
SELECT t.id AS token_id,
       t.account AS account_id,
       t.action::text AS action,
       t.created_at AS token_created_at,
       r.token_ref,
       d.status,
       d.status_at,
       d.diagnostic,
       coalesce(d.address, a.email::text) AS address,
       s.reason AS suppressed_reason,
       s.last_at AS suppressed_at
  FROM tokens t
  JOIN accounts a ON a.id = t.account
  CROSS JOIN LATERAL (SELECT left(encode(sha256(t.secret), 'hex'), 16) AS token_ref) r
  LEFT JOIN token_deliveries d ON d.token_ref = r.token_ref
  LEFT JOIN suppressions s ON s.address_key = mailroom_address_key(a.email::text);
