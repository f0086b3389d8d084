-- Undo 0006_email_rule.
ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_email_is_sendable;
DROP FUNCTION IF EXISTS mailroom_ascii_domain(text);
DROP FUNCTION IF EXISTS mailroom_email_problem(text);
DROP FUNCTION IF EXISTS mailroom_a_label(text);
DROP FUNCTION IF EXISTS mailroom_punycode(text);
