-- The operator commands' queries (mailroom/commands/). Each block is looked up by its name
-- (mailroom.db.queries); values are always parameters.

-- name: queue_channel
-- The channel a registered queue's collector LISTENs on; no row when it is not registered.
SELECT channel FROM jobs WHERE name = %(queue)s

-- name: requeue_candidates
-- The tokens `mailroom requeue` selects, valid or not, in id order, with what the command
-- needs to say about each. Selection: tokens of the recipients whose email is in `emails`,
-- or whose own address (tokens.email) is, or whose reference is in `refs`
-- (mailroom.signing.token_ref: the first 16 hex digits of sha256(secret)), or, when both
-- lists are empty, every token; then only those created at or after `since` (when not NULL)
-- and of the action named `action` (when not NULL). `email` is the address the token goes to.
-- The recipients branch walks the recipients' email (the built-in accounts' email index)
-- and tokens_account_action_created_idx; the tokens.email, ref and "every token" branches
-- read the whole tokens table (an operator command, and tokens are pruned after
-- MAILROOM_PRUNE_AFTER).
WITH chosen AS (
    SELECT t.id
      FROM recipients r JOIN tokens t ON t.account = r.account
     WHERE r.email = ANY (%(emails)s)
    UNION
    SELECT t.id
      FROM tokens t
     WHERE cardinality(%(emails)s::text[]) > 0
       AND t.email = ANY (%(emails)s)
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
       t.action,
       coalesce(t.email, r.email),
       t.created_at,
       left(encode(sha256(t.secret), 'hex'), 16) AS ref,
       t.consumed_at IS NULL AND t.expires_at > now() AS valid,
       EXISTS (SELECT 1 FROM job_tokens q WHERE q.job = %(queue)s AND q.token = t.id) AS queued,
       t.suppressed,
       -- the address is on the suppression list (0007; an address with no key is not on it)
       EXISTS (SELECT 1 FROM suppressions s
                WHERE s.address_key = mailroom_address_key(coalesce(t.email, r.email))) AS on_list
  FROM chosen c
  JOIN tokens t ON t.id = c.id
  LEFT JOIN recipients r ON r.account = t.account
 WHERE (%(since)s::timestamptz IS NULL OR t.created_at >= %(since)s)
   AND (%(action)s::text IS NULL OR t.action = %(action)s::text)
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

-- name: action_names
-- The names of the actions (migrations/0008_actions.sql), in wire-number order.
SELECT name FROM actions ORDER BY number

-- name: actions_list
-- The registry as `mailroom actions list` prints it.
SELECT name, number, path, signs_code, link, lifetime::text, cooldown::text, statuses FROM actions ORDER BY number

-- name: next_action_number
-- The lowest free wire number from 3 (1 and 2 are activation and password_recovery).
SELECT min(n)::int FROM generate_series(3, 32767) n WHERE n NOT IN (SELECT number FROM actions)

-- name: add_action
INSERT INTO actions (name, number, path, signs_code, link, lifetime, cooldown, statuses)
VALUES (%(name)s, %(number)s, %(path)s, %(signs_code)s, %(link)s, %(lifetime)s::interval, %(cooldown)s::interval,
        %(statuses)s::text[])
