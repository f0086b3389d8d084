-- Undo 0005_no_control_chars.
ALTER TABLE accounts
    DROP CONSTRAINT IF EXISTS accounts_email_has_no_control_chars,
    DROP CONSTRAINT IF EXISTS accounts_login_has_no_control_chars;
