-- Actions are data, recipients come through a view, a token may carry its own address and
-- locale, and the app's calls: request() and consume().
-- depends: 0007_deliverability

-- Like every migration, this one runs with search_path set to mailroom's schema
-- (MAILROOM_SCHEMA, `mailroom` by default): its names are unqualified. The account key type
-- (bigint, the default, or uuid) is read from the setting mailroom.account_key, which
-- `mailroom migrate --account-key` (and the output of `mailroom migrate --sql`) sets.

-- The registry: one row per kind of email. `number` is the action's number on the wire
-- (1 and 2 are the original two, new ones from 3); `path` is the link path the token's
-- HMAC signs; `signs_code`: the 5-digit code is part of the signed message and needed to
-- consume; `link`: the templates carry a link (false: the email only informs); `lifetime`:
-- how long a token stays valid; `cooldown`: at most one email per recipient and action in
-- this time (NULL: the collector's MAILROOM_RECOVERY_COOLDOWN; request() reuses an earlier
-- token only when it is set); `statuses`: the recipient statuses that may receive it (NULL:
-- the token goes to an address, tokens.email, with no account).
CREATE TABLE actions (
    name       text PRIMARY KEY
               CONSTRAINT actions_name_is_a_word CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    number     smallint NOT NULL UNIQUE
               CONSTRAINT actions_number_is_positive CHECK (number > 0),
    path       text NOT NULL
               CONSTRAINT actions_path_is_a_path CHECK (path ~ '^/[A-Za-z0-9._~/-]*$'),
    signs_code boolean NOT NULL DEFAULT false,
    link       boolean NOT NULL DEFAULT true,
    lifetime   interval NOT NULL DEFAULT interval '15 minutes'
               CONSTRAINT actions_lifetime_is_positive CHECK (lifetime > interval '0'),
    cooldown   interval
               CONSTRAINT actions_cooldown_is_not_negative CHECK (cooldown >= interval '0'),
    statuses   text[]
               CONSTRAINT actions_statuses_are_listed CHECK (cardinality(statuses) > 0)
);

INSERT INTO actions (name, number, path, signs_code, link, lifetime, statuses) VALUES
    ('activation',        1, '/activate',     false, true,  interval '15 minutes', '{provisioned}'),
    ('password_recovery', 2, '/recover',      true,  true,  interval '15 minutes', '{active}'),
    ('email_change',      3, '/email-change', false, true,  interval '1 hour',     '{active}'),
    ('magic_link',        4, '/magic-link',   false, true,  interval '15 minutes', '{active}'),
    ('invitation',        5, '/invitation',   false, true,  interval '7 days',     NULL),
    ('welcome',           6, '/welcome',      false, false, interval '1 day',      '{active}');

-- tokens.action: the enum becomes the action's name, a foreign key to the registry (the
-- column is rewritten once; the view and the trigger that name it are made again below).
DROP VIEW delivery_status;
DROP TRIGGER tokens_consumed ON tokens;
ALTER TABLE tokens ALTER COLUMN action TYPE text USING action::text;
ALTER TABLE tokens ADD CONSTRAINT tokens_action_fkey FOREIGN KEY (action) REFERENCES actions (name) ON UPDATE CASCADE;
DROP TYPE token_action;

CREATE TRIGGER tokens_consumed
    AFTER UPDATE OF consumed_at ON tokens
    FOR EACH ROW WHEN (OLD.consumed_at IS NULL AND NEW.consumed_at IS NOT NULL AND NEW.action = 'activation')
    EXECUTE FUNCTION mailroom_token_consumed();

-- A token's recipient: an account of the recipients view (below), or for an action with no
-- statuses an address of its own. tokens.account is no foreign key any more: the recipients
-- may be the app's own users. Deleting a built-in account still deletes its tokens (the
-- trigger accounts_tokens_deleted); an app's deleted user leaves its tokens to expire (the
-- collector skips them: no recipient) and to `mailroom prune`.
ALTER TABLE tokens DROP CONSTRAINT tokens_account_fkey;
ALTER TABLE tokens ALTER COLUMN account DROP NOT NULL;

-- The token's own address (email_change: the new address; invitation: the invitee) and
-- locale; NULL: the recipient's. Same address rule as accounts.email (0006).
-- A locale is a language tag as the wire carries it (mailroom/wire.py's LOCALE_PATTERN and
-- MAX_LOCALE_CHARS): `pt`, `pt-BR`, `zh-Hant-TW`.
ALTER TABLE tokens
    ADD COLUMN email text
        CONSTRAINT tokens_email_is_sendable CHECK (mailroom_email_problem(email) IS NULL),
    ADD COLUMN locale text
        CONSTRAINT tokens_locale_is_a_tag CHECK (locale ~ '^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$' AND length(locale) <= 35);
ALTER TABLE accounts
    ADD COLUMN locale text
        CONSTRAINT accounts_locale_is_a_tag CHECK (locale ~ '^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$' AND length(locale) <= 35);

-- expires_at comes from the action's lifetime when the insert does not give it.
ALTER TABLE tokens ALTER COLUMN expires_at DROP DEFAULT;

-- Every new token: its action exists, it has the recipient its action needs, and an expiry.
-- A plain `INSERT INTO tokens (action, account) VALUES ('activation', 1)` keeps working.
CREATE FUNCTION mailroom_token_defaults() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    spec_lifetime interval;
    spec_statuses text[];
BEGIN
    SELECT a.lifetime, a.statuses INTO spec_lifetime, spec_statuses FROM actions a WHERE a.name = NEW.action;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mailroom: unknown action %', quote_nullable(NEW.action)
            USING ERRCODE = 'foreign_key_violation', HINT = 'the actions are the rows of the actions table (mailroom actions list)';
    END IF;
    IF spec_statuses IS NULL THEN
        IF NEW.email IS NULL THEN
            RAISE EXCEPTION 'mailroom: action % is sent to an address, not to an account: the token needs an email', NEW.action
                USING ERRCODE = 'not_null_violation';
        END IF;
    ELSIF NEW.account IS NULL THEN
        RAISE EXCEPTION 'mailroom: action % is sent to an account: the token needs an account', NEW.action
            USING ERRCODE = 'not_null_violation';
    END IF;
    IF NEW.expires_at IS NULL THEN
        NEW.expires_at := NEW.created_at + spec_lifetime;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tokens_defaults
    BEFORE INSERT ON tokens
    FOR EACH ROW
    EXECUTE FUNCTION mailroom_token_defaults();

-- Deleting built-in accounts deletes their tokens (what the foreign key's cascade did).
CREATE FUNCTION mailroom_accounts_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tokens t USING deleted d WHERE t.account = d.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_tokens_deleted
    AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT
    EXECUTE FUNCTION mailroom_accounts_deleted();

-- mailroom_address_key is inlined into the collector's claim query, so it is not pinned to
-- the schema (a function with its own search_path is never inlined): its one reference to
-- another mailroom function is qualified instead, so that it works whatever the caller's
-- search_path (the app reading delivery_status, for example).
DO $do$
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION mailroom_address_key(address text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- Cheap enough for the collector, which calls it for every token it reads (about 1 us):
    -- no regular expression, no FROM (so the planner inlines it), a fast path for the usual
    -- address with one '@' and an ASCII domain; lower() under the "C" collation changes only
    -- A-Z, whatever the database's locale says of them (a Turkish one would make 'I' a
    -- dotless i). Only a non-ASCII domain calls mailroom_ascii_domain (the address rule).
    SELECT CASE
               WHEN position('@' IN address) = 0 OR right(address, 1) = '@' THEN NULL  -- no domain
               WHEN split_part(address, '@', 3) = '' THEN  -- one '@'
                   CASE WHEN left(address, 1) = '@' THEN NULL  -- no local part
                        WHEN octet_length(split_part(address, '@', 2)) = char_length(split_part(address, '@', 2))
                        THEN split_part(address, '@', 1) || '@' || lower(split_part(address, '@', 2) COLLATE "C")
                        ELSE split_part(address, '@', 1) || '@' || %1$I.mailroom_ascii_domain(split_part(address, '@', 2))
                   END
               -- several: the domain follows the last one
               ELSE left(address, char_length(address) - char_length(split_part(reverse(address), '@', 1)))
                    || CASE WHEN octet_length(split_part(reverse(address), '@', 1))
                                 = char_length(split_part(reverse(address), '@', 1))
                            THEN lower(reverse(split_part(reverse(address), '@', 1)) COLLATE "C")
                            ELSE %1$I.mailroom_ascii_domain(reverse(split_part(reverse(address), '@', 1)))
                       END
           END
$$
$f$, current_schema());
END
$do$;

-- mailroom_prune_all commits between batches, which a procedure with its own search_path may
-- not do: it is not pinned either, and names mailroom_prune with its schema.
DO $do$
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE PROCEDURE mailroom_prune_all(retention interval, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql AS $$
DECLARE
    deleted bigint;
BEGIN
    LOOP
        deleted := %1$I.mailroom_prune(retention, batch_size);
        COMMIT;
        EXIT WHEN deleted < batch_size;
    END LOOP;
END
$$
$f$, current_schema());
END
$do$;

-- The account key: bigint (accounts.id as before) or uuid, chosen at the first migrate.
-- With uuid, accounts.id and tokens.account are uuids (the built-in accounts table still
-- works, with gen_random_uuid() ids) and mailroom_consume_token, which returns a bigint, is
-- dropped: consume() replaces it.
DO $do$
DECLARE
    key text := coalesce(nullif(current_setting('mailroom.account_key', true), ''), 'bigint');
BEGIN
    IF key NOT IN ('bigint', 'uuid') THEN
        RAISE EXCEPTION 'mailroom: account key % is not bigint or uuid', quote_literal(key)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF key = 'uuid' THEN
        IF EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM tokens) THEN
            RAISE EXCEPTION 'mailroom: this installation has accounts or tokens with bigint keys; the account key cannot become uuid'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        ALTER TABLE accounts ALTER COLUMN id DROP DEFAULT;
        DROP SEQUENCE accounts_id_seq;
        ALTER TABLE accounts ALTER COLUMN id TYPE uuid USING NULL;
        ALTER TABLE accounts ALTER COLUMN id SET DEFAULT gen_random_uuid();
        ALTER TABLE tokens ALTER COLUMN account TYPE uuid USING NULL;
        DROP FUNCTION mailroom_consume_token(bytea, text);
    END IF;

    -- The app's call: create a token and return its id (see docs/reference/schema.md).
    EXECUTE format($f$
CREATE FUNCTION request(action text, account %1$s DEFAULT NULL, email text DEFAULT NULL, locale text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_variable
DECLARE
    spec actions%%ROWTYPE;
    who_status text;
    earlier bigint;
    made bigint;
BEGIN
    SELECT * INTO spec FROM actions a WHERE a.name = request.action;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mailroom.request: unknown action %%', quote_nullable(request.action)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'the actions are the rows of the actions table (mailroom actions list)';
    END IF;
    IF spec.statuses IS NULL THEN
        IF request.email IS NULL THEN
            RAISE EXCEPTION 'mailroom.request: action %% is sent to an address, not to an account: pass email', spec.name
                USING ERRCODE = 'null_value_not_allowed';
        END IF;
    ELSE
        IF request.account IS NULL THEN
            RAISE EXCEPTION 'mailroom.request: action %% is sent to an account: pass account', spec.name
                USING ERRCODE = 'null_value_not_allowed';
        END IF;
        SELECT r.status INTO who_status FROM recipients r WHERE r.account = request.account;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'mailroom.request: action %%: no recipient %% in the recipients view', spec.name, request.account
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF who_status IS NULL OR NOT who_status = ANY (spec.statuses) THEN
            RAISE EXCEPTION 'mailroom.request: action %% is not sent to recipient %% in status %%', spec.name, request.account,
                            quote_nullable(who_status)
                USING ERRCODE = 'check_violation',
                      HINT = format('action %%s is for the statuses %%s', spec.name, array_to_string(spec.statuses, ', '));
        END IF;
    END IF;
    -- The cooldown: an unconsumed, unexpired token of the same recipient, action and address
    -- created within the action's cooldown is the answer (no second token, no second email).
    IF spec.cooldown > interval '0' THEN
        IF request.account IS NULL THEN
            SELECT t.id INTO earlier FROM tokens t
             WHERE t.account IS NULL AND t.action = spec.name AND t.email = request.email
               AND t.created_at > now() - spec.cooldown AND t.consumed_at IS NULL AND t.expires_at > now()
             ORDER BY t.created_at DESC, t.id DESC LIMIT 1;
        ELSE
            SELECT t.id INTO earlier FROM tokens t
             WHERE t.account = request.account AND t.action = spec.name AND t.email IS NOT DISTINCT FROM request.email
               AND t.created_at > now() - spec.cooldown AND t.consumed_at IS NULL AND t.expires_at > now()
             ORDER BY t.created_at DESC, t.id DESC LIMIT 1;
        END IF;
        IF earlier IS NOT NULL THEN
            RETURN earlier;
        END IF;
    END IF;
    INSERT INTO tokens (action, account, email, locale)
    VALUES (spec.name, request.account, request.email, request.locale)
    RETURNING id INTO made;
    RETURN made;
END
$$
$f$, key);

    -- Consuming the token behind a link that came back (after the app verified its HMAC):
    -- one row (token id, account, the address it was sent to) when `secret` names an
    -- unexpired, unconsumed token of `action` whose recipient is in a status the action is
    -- for and, when the action signs a code, whose code is `code`; no row otherwise.
    -- Consuming an activation token activates its built-in account (the trigger
    -- tokens_consumed). One UPDATE: concurrent consumers of one token take turns on its row
    -- lock and exactly one gets the row.
    EXECUTE format($f$
CREATE FUNCTION consume(action text, secret bytea, code text DEFAULT NULL)
RETURNS TABLE (token bigint, account %1$s, email text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    spec actions%%ROWTYPE;
BEGIN
    SELECT * INTO spec FROM actions a WHERE a.name = consume.action;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mailroom.consume: unknown action %%', quote_nullable(consume.action)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'the actions are the rows of the actions table (mailroom actions list)';
    END IF;
    RETURN QUERY
    UPDATE tokens t
       SET consumed_at = now()
     WHERE t.secret = consume.secret
       AND t.action = spec.name
       AND t.consumed_at IS NULL
       AND t.expires_at > now()
       AND (NOT spec.signs_code OR t.code = consume.code)
       AND (spec.statuses IS NULL
            OR EXISTS (SELECT 1 FROM recipients r WHERE r.account = t.account AND r.status = ANY (spec.statuses)))
    RETURNING t.id, t.account, coalesce(t.email, (SELECT r.email FROM recipients r WHERE r.account = t.account));
END
$$
$f$, key);
END
$do$;

-- Who receives what: one row per recipient with its key, address, login, locale (NULL: the
-- default) and status (compared with actions.statuses). By default the built-in accounts;
-- an app points mailroom at its own users by replacing this view (CREATE OR REPLACE VIEW,
-- same columns and types: see docs/how-to/integrate.md). The collector reads it at claim
-- time, request() and consume() check statuses through it.
CREATE VIEW recipients AS
SELECT a.id AS account,
       a.email::text AS email,
       a.login::text AS login,
       a.locale,
       a.status::text AS status
  FROM accounts a;

-- What happened to the email of each token (0007), now through the recipients view and with
-- the token's own address first.
CREATE VIEW delivery_status AS
SELECT t.id AS token_id,
       t.account AS account_id,
       t.action,
       t.created_at AS token_created_at,
       r.token_ref,
       d.status,
       d.status_at,
       d.diagnostic,
       coalesce(d.address, t.email, p.email) AS address,
       s.reason AS suppressed_reason,
       s.last_at AS suppressed_at
  FROM tokens t
  LEFT JOIN recipients p ON p.account = t.account
  CROSS JOIN LATERAL (SELECT left(encode(sha256(t.secret), 'hex'), 16) AS token_ref) r
  LEFT JOIN token_deliveries d ON d.token_ref = r.token_ref
  LEFT JOIN suppressions s ON s.address_key = mailroom_address_key(coalesce(t.email, p.email));
