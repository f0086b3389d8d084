-- Undo 0007_deliverability: the suppression list, the recorded events and the delivery
-- status of tokens are dropped with it.
DROP VIEW IF EXISTS delivery_status;
DROP FUNCTION IF EXISTS mailroom_is_suppressed(text);
DROP FUNCTION IF EXISTS mailroom_unsuppress(text);
DROP FUNCTION IF EXISTS mailroom_suppress(text, text, text, text, text, text, text, timestamptz);
DROP FUNCTION IF EXISTS mailroom_checked_address_key(text);
DROP FUNCTION IF EXISTS mailroom_record_delivery(text, text, timestamptz, text, text, text, text);
DROP FUNCTION IF EXISTS mailroom_delivery_rank(text);
DROP TABLE IF EXISTS token_deliveries;
DROP TABLE IF EXISTS delivery_events;
DROP TABLE IF EXISTS suppressions;
DROP FUNCTION IF EXISTS mailroom_address_key(text);
