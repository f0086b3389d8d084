-- The queries of `mailroom events` and `mailroom suppressions` (mailroom/recorder.py and
-- mailroom/commands/). Each block is looked up by its name (mailroom.db.queries); values
-- are always parameters. The tables and functions are migrations/0007_deliverability.sql's.

-- name: insert_event
-- Record one recipient's part of an event and, when it is new and names its token, the
-- token's delivery status (one statement: one round trip per event). `new` is false when
-- this (event, recipient) is already recorded, which is how a redelivered event changes
-- nothing; `status_changed` says whether the token's status moved.
WITH inserted AS (
    INSERT INTO delivery_events (event_id, address_key, address, event_type, occurred_at, token_ref, action,
                                 message_id, bounce_type, bounce_subtype, feedback_type, diagnostic)
    VALUES (%(event_id)s, %(address_key)s, %(address)s, %(event_type)s, %(occurred_at)s, %(token_ref)s,
            %(action)s, %(message_id)s, %(bounce_type)s, %(bounce_subtype)s, %(feedback_type)s, %(diagnostic)s)
    ON CONFLICT DO NOTHING
    RETURNING token_ref
)
SELECT true AS new,
       CASE WHEN i.token_ref IS NOT NULL
            THEN mailroom_record_delivery(i.token_ref, %(status)s, %(occurred_at)s, %(address)s, %(diagnostic)s,
                                          %(event_id)s, %(message_id)s)
            ELSE false
       END AS status_changed
  FROM inserted i

-- name: lock_address
-- Serialise the transient-bounce count of one address between concurrent recorders (two
-- bounces counted at once would each see one fewer than there are); released at commit.
SELECT pg_advisory_xact_lock(hashtextextended('mailroom-address:' || %(address_key)s, 0))

-- name: transient_bounces
-- How many transient bounces of this address occurred within the window ending at `until`
-- (this event's time, so that a replay of old events judges them as they were).
SELECT count(*)
  FROM delivery_events
 WHERE address_key = %(address_key)s
   AND event_type = 'Bounce' AND bounce_type = 'Transient'
   AND occurred_at > %(until)s - make_interval(secs => %(window_s)s)
   AND occurred_at <= %(until)s

-- name: suppress
-- `at` NULL: now.
SELECT mailroom_suppress(%(address)s, %(reason)s, %(diagnostic)s, %(bounce_type)s,
                         %(bounce_subtype)s, %(feedback_type)s, %(event_id)s,
                         coalesce(%(at)s::timestamptz, now()))

-- name: list_suppressions
-- The suppression list, latest first; only the key `address_key` when it is not NULL.
SELECT address, reason, bounce_type, bounce_subtype, feedback_type, diagnostic, first_at, last_at, event_id
  FROM suppressions
 WHERE %(address_key)s::text IS NULL OR address_key = %(address_key)s
 ORDER BY last_at DESC, address_key
 LIMIT %(limit)s

-- name: unsuppress
SELECT mailroom_unsuppress(%(address)s)

-- name: rates
-- Events of the last 24 hours and 7 days, for the bounce and complaint rates (mailroom/rates.py).
-- Reads delivery_events_occurred_idx; an operator and scrape query, not on any hot path.
SELECT w.name AS window,
       count(e.event_id) FILTER (WHERE e.event_type = 'Send') AS sent,
       count(e.event_id) FILTER (WHERE e.event_type = 'Delivery') AS delivered,
       count(e.event_id) FILTER (WHERE e.event_type = 'Bounce') AS bounced,
       count(e.event_id) FILTER (WHERE e.event_type = 'Bounce' AND e.bounce_type = 'Permanent') AS hard_bounced,
       count(e.event_id) FILTER (WHERE e.event_type = 'Complaint') AS complained
  FROM (VALUES ('24h', interval '24 hours'), ('7d', interval '7 days')) AS w(name, span)
  LEFT JOIN delivery_events e ON e.occurred_at > now() - w.span
 GROUP BY w.name, w.span
 ORDER BY w.span
