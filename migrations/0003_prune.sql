-- Pruning: deleting tokens consumed or expired longer ago than a retention period.
-- depends: 0002_app

-- When a token stopped being usable: consumed_at if it was consumed before it expired,
-- else expires_at (LEAST ignores NULLs). The prune query walks this index oldest first.
CREATE INDEX tokens_done_at_idx ON tokens ((LEAST(consumed_at, expires_at)));

-- Delete one batch of at most `batch_size` tokens consumed or expired more than
-- `retention` ago, and return how many were deleted. A token still queued in job_tokens
-- (a collector has yet to read it) is never deleted, and rows another transaction holds
-- are skipped rather than waited for, so one call holds few locks for a short time.
-- One call is one batch in the caller's transaction: call it until it returns less than
-- `batch_size`, one transaction per call (or CALL mailroom_prune_all, which commits
-- between batches).
CREATE FUNCTION mailroom_prune(retention interval, batch_size integer DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    deleted bigint;
BEGIN
    IF retention IS NULL OR retention < interval '0' THEN
        RAISE EXCEPTION 'mailroom_prune: retention must be a non-negative interval, not %', retention
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'mailroom_prune: batch_size must be at least 1, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH doomed AS (
        SELECT t.id
          FROM tokens t
         WHERE LEAST(t.consumed_at, t.expires_at) < now() - retention
           -- Probes job_tokens' primary key (job = ANY(queues), token): no extra index
           -- on the app's insert path, and no scan of the whole backlog per batch.
           AND NOT EXISTS (SELECT 1 FROM job_tokens q
                            WHERE q.job = ANY (ARRAY(SELECT name FROM jobs)) AND q.token = t.id)
         ORDER BY LEAST(t.consumed_at, t.expires_at)
         LIMIT batch_size
           FOR UPDATE OF t SKIP LOCKED
    )
    DELETE FROM tokens t USING doomed d WHERE t.id = d.id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

-- Prune everything due, one batch per transaction: CALL it as a statement of its own
-- (not inside BEGIN ... COMMIT), for example from pg_cron. Returns nothing; use
-- mailroom_prune when you want the count.
CREATE PROCEDURE mailroom_prune_all(retention interval, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql AS $$
DECLARE
    deleted bigint;
BEGIN
    LOOP
        deleted := mailroom_prune(retention, batch_size);
        COMMIT;
        EXIT WHEN deleted < batch_size;
    END LOOP;
END
$$;
