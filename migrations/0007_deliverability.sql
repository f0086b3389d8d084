-- Deliverability: the suppression list, the SES events behind it, and what happened to the
-- email of each token (read through the view delivery_status).
-- depends: 0006_email_rule

-- An address's key: the local part as written, '@', the domain in IDNA A-label form (ASCII,
-- lower case). Two spellings of one mailbox (Ada@Example.COM and Ada@example.com;
-- zoë@bücher.de and zoë@xn--bcher-kva.de) have one key, and so one suppression. The local
-- part is compared as written (RFC 5321: only the receiving host may interpret it).
--
-- SQL computes the key of every address the address rule admits (migrations/0006_email_rule.sql):
-- an ASCII domain is lowered; a non-ASCII one is put in A-label form by mailroom_ascii_domain,
-- which gives what IDNA (the `idna` package, UTS #46 mapping) gives for every domain the rule
-- admits. mailroom.suppressions.address_key is the same rule in Python
-- (tests/integration/test_deliverability_schema.py runs the address table through both). An
-- address with no '@', no local part or no domain, or with a non-ASCII domain the rule
-- refuses (an account older than 0006), has no key: NULL.
CREATE FUNCTION mailroom_address_key(address text) RETURNS text
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
                        ELSE split_part(address, '@', 1) || '@' || mailroom_ascii_domain(split_part(address, '@', 2))
                   END
               -- several: the domain follows the last one
               ELSE left(address, char_length(address) - char_length(split_part(reverse(address), '@', 1)))
                    || CASE WHEN octet_length(split_part(reverse(address), '@', 1))
                                 = char_length(split_part(reverse(address), '@', 1))
                            THEN lower(reverse(split_part(reverse(address), '@', 1)) COLLATE "C")
                            ELSE mailroom_ascii_domain(reverse(split_part(reverse(address), '@', 1)))
                       END
           END
$$;

-- One row per suppressed address: mailroom emails none of them. Written by `mailroom
-- events` (a permanent bounce, a complaint, repeated transient bounces), by `mailroom
-- suppressions add` and by mailroom_suppress (an app, another provider's webhook).
CREATE TABLE suppressions (
    address_key    text PRIMARY KEY,
    address        text NOT NULL,     -- as first written (the recipient's own spelling)
    reason         text NOT NULL
                   CONSTRAINT suppressions_reason_is_known CHECK (reason IN ('bounce', 'complaint', 'manual')),
    bounce_type    text,              -- SES bounceType: Permanent, Transient, Undetermined
    bounce_subtype text,              -- SES bounceSubType: General, NoEmail, Suppressed, ...
    feedback_type  text,              -- a complaint's complaintFeedbackType: abuse, fraud, ...
    diagnostic     text,              -- the remote server's reply, or the operator's note
    first_at       timestamptz NOT NULL DEFAULT now(),
    last_at        timestamptz NOT NULL DEFAULT now(),
    event_id       text,              -- the delivery_events.event_id that last suppressed it
    CONSTRAINT suppressions_key_has_a_domain CHECK (address_key LIKE '%_@_%')
);

-- Every SES event mailroom has recorded, one row per (event, recipient). The primary key
-- makes recording idempotent: a redelivered event inserts nothing and changes nothing.
-- event_id is built from the event (mailroom.ses_events): a bounce's or complaint's
-- feedbackId, else the message id, the event type and its time.
CREATE TABLE delivery_events (
    event_id       text NOT NULL,
    address_key    text NOT NULL,
    address        text NOT NULL,
    event_type     text NOT NULL      -- SES's: Send, Delivery, Bounce, Complaint, Reject,
                   CONSTRAINT delivery_events_type_is_known CHECK (event_type IN
                       ('Send', 'Delivery', 'Bounce', 'Complaint', 'Reject', 'DeliveryDelay', 'RenderingFailure')),
    occurred_at    timestamptz NOT NULL,
    token_ref      text,              -- from the message's tags; NULL for mail mailroom did not tag
    action         text,              -- likewise
    message_id     text,              -- SES's message id
    bounce_type    text,
    bounce_subtype text,
    feedback_type  text,
    diagnostic     text,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, address_key)
);
-- The transient-bounce rule counts an address's recent transient bounces.
CREATE INDEX delivery_events_transient_idx ON delivery_events (address_key, occurred_at)
    WHERE event_type = 'Bounce' AND bounce_type = 'Transient';
-- Rates over the last 24 hours and 7 days read events by time.
CREATE INDEX delivery_events_occurred_idx ON delivery_events (occurred_at);

-- The latest word on each token's email, keyed by token_ref (mailroom.signing.token_ref:
-- left(encode(sha256(tokens.secret), 'hex'), 16)), the id SES carries back in the message
-- tags. No foreign key: an event may arrive after its token was pruned, and tokens need no
-- extra index or column on the app's insert path (the view joins from tokens to here).
CREATE TABLE token_deliveries (
    token_ref   text PRIMARY KEY
                CONSTRAINT token_deliveries_ref_is_16_hex CHECK (token_ref ~ '^[0-9a-f]{16}$'),
    status      text NOT NULL
                CONSTRAINT token_deliveries_status_is_known CHECK (status IN
                    ('sent', 'delivered', 'bounced', 'complained', 'delayed', 'rejected', 'suppressed')),
    status_at   timestamptz NOT NULL,
    address     text,
    diagnostic  text,
    event_id    text,                 -- NULL when the collector set it (suppressed)
    message_id  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Which status wins when events arrive out of order (SQS does not keep order): the later
-- stage wins whatever its time (a Send that arrives after its Delivery changes nothing);
-- within a stage, the later event. A complaint comes after a delivery; a bounce may too.
CREATE FUNCTION mailroom_delivery_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE status
               WHEN 'sent' THEN 1
               WHEN 'delayed' THEN 2
               WHEN 'delivered' THEN 3
               WHEN 'bounced' THEN 4
               WHEN 'rejected' THEN 4
               WHEN 'suppressed' THEN 4
               WHEN 'complained' THEN 5
           END
$$;

-- Record what happened to a token's email; returns whether the status changed.
CREATE FUNCTION mailroom_record_delivery(
    token_ref text,
    status text,
    status_at timestamptz,
    address text DEFAULT NULL,
    diagnostic text DEFAULT NULL,
    event_id text DEFAULT NULL,
    message_id text DEFAULT NULL
) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    WITH up AS (
        INSERT INTO token_deliveries AS d (token_ref, status, status_at, address, diagnostic, event_id, message_id)
        VALUES (lower(mailroom_record_delivery.token_ref), mailroom_record_delivery.status,
                mailroom_record_delivery.status_at, mailroom_record_delivery.address,
                mailroom_record_delivery.diagnostic, mailroom_record_delivery.event_id,
                mailroom_record_delivery.message_id)
        ON CONFLICT ON CONSTRAINT token_deliveries_pkey DO UPDATE
           SET status = EXCLUDED.status,
               status_at = EXCLUDED.status_at,
               address = coalesce(EXCLUDED.address, d.address),
               diagnostic = EXCLUDED.diagnostic,
               event_id = EXCLUDED.event_id,
               message_id = coalesce(EXCLUDED.message_id, d.message_id),
               updated_at = now()
         WHERE mailroom_delivery_rank(EXCLUDED.status) > mailroom_delivery_rank(d.status)
            OR (mailroom_delivery_rank(EXCLUDED.status) = mailroom_delivery_rank(d.status)
                AND EXCLUDED.status_at >= d.status_at)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM up)
$$;

-- The key of `address` for the writers and readers below; an error, with the address rule's
-- reason, when it has none (no '@', or a non-ASCII domain the rule refuses).
CREATE FUNCTION mailroom_checked_address_key(address text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    own text := mailroom_address_key(address);
BEGIN
    IF own IS NULL THEN
        RAISE EXCEPTION 'mailroom: % is not an email address with a key: %', quote_nullable(address),
                        coalesce(mailroom_email_problem(address), 'it is not an email address')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN own;
END
$$;

-- Suppress an address (or refresh its suppression); returns its key. `reason` is bounce,
-- complaint or manual. An app's "this address is wrong" flow and other providers' webhooks
-- call it; so does mailroom. The first spelling and first time are kept; the rest is the
-- latest word.
CREATE FUNCTION mailroom_suppress(
    address text,
    reason text DEFAULT 'manual',
    diagnostic text DEFAULT NULL,
    bounce_type text DEFAULT NULL,
    bounce_subtype text DEFAULT NULL,
    feedback_type text DEFAULT NULL,
    event_id text DEFAULT NULL,
    at timestamptz DEFAULT now()
) RETURNS text
LANGUAGE sql VOLATILE AS $$
    INSERT INTO suppressions AS s (address_key, address, reason, bounce_type, bounce_subtype, feedback_type,
                                   diagnostic, first_at, last_at, event_id)
    SELECT mailroom_checked_address_key(f.address), f.address, f.reason, f.bounce_type,
           f.bounce_subtype, f.feedback_type, f.diagnostic, f.at, f.at, f.event_id
      FROM (SELECT mailroom_suppress.address, mailroom_suppress.reason,
                   mailroom_suppress.bounce_type, mailroom_suppress.bounce_subtype, mailroom_suppress.feedback_type,
                   mailroom_suppress.diagnostic, mailroom_suppress.at, mailroom_suppress.event_id) f
    ON CONFLICT ON CONSTRAINT suppressions_pkey DO UPDATE
       SET reason = EXCLUDED.reason,
           bounce_type = EXCLUDED.bounce_type,
           bounce_subtype = EXCLUDED.bounce_subtype,
           feedback_type = EXCLUDED.feedback_type,
           diagnostic = EXCLUDED.diagnostic,
           first_at = least(s.first_at, EXCLUDED.first_at),
           last_at = greatest(s.last_at, EXCLUDED.last_at),
           event_id = EXCLUDED.event_id
    RETURNING s.address_key
$$;

-- Take an address off the list; returns whether it was on it. Its events stay.
CREATE FUNCTION mailroom_unsuppress(address text) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    WITH gone AS (
        DELETE FROM suppressions s
         WHERE s.address_key = mailroom_checked_address_key(mailroom_unsuppress.address)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM gone)
$$;

-- Whether an address is on the list (any spelling of it).
CREATE FUNCTION mailroom_is_suppressed(address text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM suppressions s
                    WHERE s.address_key = mailroom_checked_address_key(mailroom_is_suppressed.address))
$$;

-- What happened to the email of each token, for the app: one row per token (NULL status:
-- nothing recorded yet), with its account's address and, when that address is suppressed,
-- why. Filter by token_id or account_id (both use an index of tokens); by token_ref it
-- reads every token. `suppressed_reason` is NULL for an account whose address has no key (a
-- non-ASCII domain the address rule refuses, from before 0006): mailroom sends it nothing.
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
