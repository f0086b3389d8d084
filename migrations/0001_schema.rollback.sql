-- Undo 0001_schema: drops every mailroom table, function and type.
DROP TABLE IF EXISTS job_tokens;
DROP TABLE IF EXISTS jobs;
DROP TABLE IF EXISTS tokens;
DROP TABLE IF EXISTS accounts;
DROP FUNCTION IF EXISTS mailroom_drop_queue(text);
DROP FUNCTION IF EXISTS mailroom_register_queue(text, text);
DROP FUNCTION IF EXISTS mailroom_tokens_inserted();
DROP FUNCTION IF EXISTS mailroom_awake_lock(text);
DROP FUNCTION IF EXISTS mailroom_token_consumed();
DROP FUNCTION IF EXISTS mailroom_account_status_changed();
DROP FUNCTION IF EXISTS mailroom_account_provisioned();
DROP FUNCTION IF EXISTS mailroom_random_code();
DROP FUNCTION IF EXISTS mailroom_random_secret();
DROP FUNCTION IF EXISTS mailroom_epoch();
DROP TYPE IF EXISTS token_action;
DROP TYPE IF EXISTS account_status;
