-- No control characters in accounts.email and accounts.login.
-- depends: 0004_cooldown

-- The wire format between collector and sender is one batch per line: a field that holds
-- a line break (or any other control character: Unicode category Cc, U+0001-U+001F and
-- U+007F-U+009F; PostgreSQL text cannot hold U+0000) would let one bad account cost the
-- lines after it. Neither an address nor a login has a use for them, so the schema refuses
-- them at the source.
--
-- Existing offenders are reported, not met with a bare constraint violation: the
-- migration counts them first and, if there are any, stops with the count and the query
-- that lists them. Fix or delete those accounts, then run `mailroom migrate` again.
-- Writes to accounts wait while the migration runs (one scan to count, one to validate).

LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE;

DO $$
DECLARE
    offenders bigint;
BEGIN
    SELECT count(*) INTO offenders
      FROM accounts
     WHERE email ~ '[\u0001-\u001f\u007f-\u009f]' OR login ~ '[\u0001-\u001f\u007f-\u009f]';
    IF offenders > 0 THEN
        RAISE EXCEPTION 'migration 0005_no_control_chars: % account(s) have a control character (CR, LF, tab, ...) in email or login', offenders
            USING ERRCODE = 'check_violation',
                  HINT = 'list them with: SELECT id, email, login FROM accounts '
                         'WHERE email ~ ''[\u0001-\u001f\u007f-\u009f]'' OR login ~ ''[\u0001-\u001f\u007f-\u009f]''; '
                         'fix or delete them, then run mailroom migrate again';
    END IF;
END
$$;

ALTER TABLE accounts
    ADD CONSTRAINT accounts_email_has_no_control_chars CHECK (email !~ '[\u0001-\u001f\u007f-\u009f]'),
    ADD CONSTRAINT accounts_login_has_no_control_chars CHECK (login !~ '[\u0001-\u001f\u007f-\u009f]');
