-- Undo 0002_app.
DROP FUNCTION IF EXISTS mailroom_consume_token(bytea, text);
