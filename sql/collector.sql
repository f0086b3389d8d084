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
-- `skip` is NULL for a token to emit, else why it is consumed without output (for the
-- metrics): 'token_gone' (the token row is gone; account is NULL), 'consumed',
-- 'expired', 'account_status' (the account is not in the status the action needs),
-- 'suppressed' (the address is on the suppression list), or 'cooldown'. The number of rows returned is the number claimed: a chunk of only
-- unsendable tokens is not the end of the queue.
-- 'cooldown' (MAILROOM_RECOVERY_COOLDOWN; `cooldown` = 0 turns it off) is a sendable
-- token for which an email already went out for another token of the same account and
-- action created less than `cooldown` before or after it, whose link still worked when
-- this one was created (not consumed before). "Went out" means: read by this queue
-- earlier (no longer queued here) and not suppressed. Tokens of this same chunk are still
-- queued in the statement's snapshot, so they never count here: the caller decides
-- between them in id order (collector/queue.py) and marks the skipped ones suppressed.
-- The lookup is one probe of tokens_account_action_created_idx, made only for sendable
-- tokens (the CASE stops at the first reason), which in the common case finds only the
-- token itself. One text column says all three of "sendable", "why not" and "covered",
-- so that the collector's loop tests one value a row.
-- `after` only lets a long drain start its index scan past the entries it has just
-- deleted (dead until vacuumed, they would make each chunk slower than the last); it is
-- never progress: a drain ends only with a chunk read from `after` = 0 (see queue.py).
-- The claimed rows are deleted by ctid (a TID scan: no second index probe); the ctids
-- cannot change in between because the subquery holds their row locks.
WITH claimed AS (
    DELETE FROM job_tokens
    WHERE ctid = ANY (ARRAY(
          SELECT q.ctid FROM job_tokens q
          WHERE q.job = %(queue)s AND q.token > %(after)s
          ORDER BY q.token
          LIMIT %(limit)s
          FOR UPDATE SKIP LOCKED))
    RETURNING token
),
checked AS (
    SELECT c.token,
           t.account, t.action AS action_name, t.created_at,
           t.secret, t.code, a.email, a.login,
           CASE WHEN t.id IS NULL THEN 'token_gone'
                WHEN t.consumed_at IS NOT NULL THEN 'consumed'
                WHEN t.expires_at <= now() THEN 'expired'
                WHEN a.status IS DISTINCT FROM CASE t.action WHEN 'activation' THEN 'provisioned'::account_status
                                                              ELSE 'active'::account_status END THEN 'account_status'
                -- The suppression list (migrations/0007_deliverability.sql): one primary-key
                -- probe, made only for a token sendable otherwise (an IDN domain's key is
                -- computed by the address rule's A-labels; an address with no key is not on it).
                -- The uncorrelated EXISTS before it is evaluated once per statement (an
                -- InitPlan): while the list is empty, no token is probed.
                WHEN (SELECT EXISTS (SELECT 1 FROM suppressions))
                     AND EXISTS (SELECT 1 FROM suppressions s WHERE s.address_key = mailroom_address_key(a.email::text))
                    THEN 'suppressed'
           END AS unsendable
    FROM claimed c
    LEFT JOIN tokens t ON t.id = c.token
    LEFT JOIN accounts a ON a.id = t.account
)
SELECT k.token,
       -- coalesce, not CASE WHEN k.unsendable IS NOT NULL THEN k.unsendable: `checked` is
       -- inlined, so naming k.unsendable twice would evaluate its CASE (and probe) twice.
       coalesce(k.unsendable, CASE
            WHEN %(cooldown)s > interval '0' AND EXISTS (
                SELECT 1 FROM tokens o
                WHERE o.account = k.account AND o.action = k.action_name
                  AND o.created_at > k.created_at - %(cooldown)s
                  AND o.created_at < k.created_at + %(cooldown)s
                  AND o.id <> k.token
                  AND NOT o.suppressed
                  AND (o.consumed_at IS NULL OR o.consumed_at > k.created_at)
                  AND NOT EXISTS (SELECT 1 FROM job_tokens q WHERE q.job = %(queue)s AND q.token = o.id)
            ) THEN 'cooldown'
       END) AS skip,
       k.action_name::text AS action_name,
       k.email::text,
       k.login::text,
       k.secret,
       k.code,
       k.account,
       k.created_at,
       NULL::text AS locale
FROM checked k
ORDER BY k.token

-- name: action_registry
-- The actions registry (mailroom/actions.py), read at connect and again when a token of an
-- action added since comes up.
SELECT name, number, path, signs_code, link, lifetime, cooldown, statuses FROM actions ORDER BY number

-- name: suppress
-- Mark the tokens of a chunk that were read and not emailed (see migrations/0004_cooldown.sql).
-- Only run when a chunk has some: the common chunk costs no UPDATE.
UPDATE tokens SET suppressed = true WHERE id = ANY (%(ids)s) AND NOT suppressed

-- name: mark_suppressed
-- The delivery status of tokens skipped because their address is suppressed, for the app's
-- view delivery_status (migrations/0007_deliverability.sql).
SELECT mailroom_record_delivery(left(encode(sha256(t.secret), 'hex'), 16), 'suppressed', now(), a.email::text,
                                'the address is on the suppression list')
  FROM tokens t JOIN accounts a ON a.id = t.account
 WHERE t.id = ANY (%(ids)s)

-- name: backlog
-- What this queue has yet to read (for operators and tests).
SELECT count(*) FROM job_tokens WHERE job = %(queue)s

-- name: take_awake_lock
-- Awake: while this session holds the exclusive lock, the tokens trigger (whose shared
-- try-lock then fails) queues tokens without sending NOTIFY; see collector/awake.py.
-- A try, never a wait: an app session whose statement was cancelled between the
-- trigger's shared try-lock and its unlock keeps that shared lock until it disconnects,
-- and waiting on it would stop all mail. Not awake only means inserts keep notifying.
SELECT pg_try_advisory_lock(mailroom_awake_lock(%(queue)s))

-- name: release_awake_lock
SELECT pg_advisory_unlock(mailroom_awake_lock(%(queue)s))

-- name: queue_writers
-- The transactions (virtual ids) other than ours that hold a write lock on job_tokens now:
-- every one that queued a token and may have skipped its NOTIFY while we were awake.
SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}')
FROM pg_locks
WHERE locktype = 'relation' AND relation = 'job_tokens'::regclass AND mode = 'RowExclusiveLock'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND pid IS DISTINCT FROM pg_backend_pid()

-- name: still_running
-- Which of those transactions have not ended yet (each holds its own virtualxid lock).
SELECT coalesce(array_agg(virtualxid), '{}')
FROM pg_locks
WHERE locktype = 'virtualxid' AND virtualxid = ANY (%(vxids)s)

-- name: queued_at_least
-- How many entries the queue holds, counting no further than `limit`.
SELECT count(*) FROM (SELECT 1 FROM job_tokens WHERE job = %(queue)s LIMIT %(limit)s) s
