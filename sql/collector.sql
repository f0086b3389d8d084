-- The collector's queries. Each block is looked up by its name (mailroom.db.queries).
-- Values are always parameters; the channel name is quoted as an identifier in Python
-- (LISTEN takes no parameters).

-- name: register_queue
-- Create this consumer's queue if it is new (backfilling every still-valid token) and
-- keep its channel up to date. Idempotent; run on every (re)connect.
SELECT mailroom_register_queue(%(queue)s, %(channel)s)

-- name: try_standby_lock
-- The session-level advisory lock that makes one collector per queue the active one.
-- PostgreSQL releases it when the session ends, however it ends (crash, kill -9,
-- pg_terminate_backend, network loss), so a standby polling this takes over.
SELECT pg_try_advisory_lock(hashtextextended('mailroom:' || %(queue)s, 0))

-- name: claim_chunk
-- One chunk, one statement: delete (claim) the oldest BATCH_LIMIT entries of this queue
-- and return, for each claimed token in id order, whether it may be emitted and what to
-- emit. The caller commits only after the line is written and flushed, so a crash or a
-- broken pipe before that puts every claimed entry back (at-least-once).
-- `emittable` is false (or NULL when the token row is gone) for tokens that are expired,
-- consumed, or whose account is not in the status the action needs; those entries are
-- consumed without output. The number of rows returned is the number claimed: a chunk
-- of only unsendable tokens is not the end of the queue.
WITH claimed AS (
    DELETE FROM job_tokens
    WHERE job = %(queue)s
      AND token = ANY (ARRAY(
          SELECT q.token FROM job_tokens q
          WHERE q.job = %(queue)s
          ORDER BY q.token
          LIMIT %(limit)s
          FOR UPDATE SKIP LOCKED))
    RETURNING token
)
SELECT coalesce(t.consumed_at IS NULL
                AND t.expires_at > now()
                AND a.status = CASE t.action WHEN 'activation' THEN 'provisioned'::account_status
                                             ELSE 'active'::account_status END,
                false) AS emittable,
       CASE t.action WHEN 'activation' THEN 1 ELSE 2 END AS action,
       a.email::text,
       a.login::text,
       t.secret,
       t.code
FROM claimed c
LEFT JOIN tokens t ON t.id = c.token
LEFT JOIN accounts a ON a.id = t.account
ORDER BY c.token

-- name: backlog
-- What this queue has yet to read (for operators and tests).
SELECT count(*) FROM job_tokens WHERE job = %(queue)s
