-- The operator commands' queries (mailroom/commands/). Each block is looked up by its name
-- (mailroom.db.queries); values are always parameters.

-- name: queue_channel
-- The channel a registered queue's collector LISTENs on; no row when it is not registered.
SELECT channel FROM jobs WHERE name = %(queue)s

-- name: requeue_candidates
-- The tokens `mailroom requeue` selects, valid or not, in id order, with what the command
-- needs to say about each. Selection: tokens of the accounts whose email is in `emails`,
-- or whose reference is in `refs` (mailroom.signing.token_ref: the first 16 hex digits of
-- sha256(secret)), or, when both lists are empty, every token; then only those created
-- at or after `since` (when not NULL) and of `action` (when not NULL).
-- The email branch walks accounts' email index and tokens_account_action_created_idx; the
-- ref and "every token" branches read the whole tokens table (an operator command, and
-- tokens are pruned after MAILROOM_PRUNE_AFTER).
WITH chosen AS (
    SELECT t.id
      FROM accounts a JOIN tokens t ON t.account = a.id
     WHERE a.email = ANY (%(emails)s)
    UNION
    SELECT t.id
      FROM tokens t
     WHERE cardinality(%(refs)s::text[]) > 0
       AND left(encode(sha256(t.secret), 'hex'), 16) = ANY (%(refs)s)
    UNION
    SELECT t.id
      FROM tokens t
     WHERE cardinality(%(emails)s::text[]) = 0 AND cardinality(%(refs)s::text[]) = 0
)
SELECT t.id,
       t.action::text,
       a.email::text,
       t.created_at,
       left(encode(sha256(t.secret), 'hex'), 16) AS ref,
       t.consumed_at IS NULL AND t.expires_at > now() AS valid,
       EXISTS (SELECT 1 FROM job_tokens q WHERE q.job = %(queue)s AND q.token = t.id) AS queued,
       t.suppressed,
       -- the address is on the suppression list (0007; an address with no key is not on it)
       EXISTS (SELECT 1 FROM suppressions s WHERE s.address_key = mailroom_address_key(a.email::text)) AS on_list
  FROM chosen c
  JOIN tokens t ON t.id = c.id
  JOIN accounts a ON a.id = t.account
 WHERE (%(since)s::timestamptz IS NULL OR t.created_at >= %(since)s)
   AND (%(action)s::token_action IS NULL OR t.action = %(action)s::token_action)
 ORDER BY t.id

-- name: requeue
-- Put the given tokens back on the queue, those still valid (unconsumed, unexpired: checked
-- again here, at the moment of queueing) and not queued already; return their ids. They
-- lose their `suppressed` mark, so the collector decides about them afresh (the cooldown
-- still applies: of several tokens requeued for one account and action, one is emailed).
WITH queued AS (
    INSERT INTO job_tokens (job, token)
    SELECT %(queue)s, t.id
      FROM tokens t
     WHERE t.id = ANY (%(ids)s)
       AND t.consumed_at IS NULL AND t.expires_at > now()
    ON CONFLICT DO NOTHING
    RETURNING token
), cleared AS (
    UPDATE tokens t SET suppressed = false
      FROM queued q
     WHERE t.id = q.token AND t.suppressed
)
SELECT token FROM queued ORDER BY token

-- name: notify
-- Wake the queue's collector (a notification is a wake-up; the collector reads the queue).
SELECT pg_notify(%(channel)s, '')

-- name: relation_exists
-- Whether a table (of the search path) exists: `mailroom check` inspects, it never fails on
-- a schema that is not there yet.
SELECT to_regclass(%(name)s) IS NOT NULL

-- name: backlog_age
-- What the queue has yet to read: how many entries, how many of their tokens have expired
-- meanwhile, and how long ago the oldest was created (seconds; NULL when empty).
SELECT count(*) AS queued,
       count(*) FILTER (WHERE t.expires_at <= now()) AS expired,
       extract(epoch FROM now() - min(t.created_at))::float8 AS oldest_age_s
  FROM job_tokens q
  JOIN tokens t ON t.id = q.token
 WHERE q.job = %(queue)s

-- name: server_version
SELECT current_setting('server_version')
