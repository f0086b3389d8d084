-- Read-only queries for monitoring: the collector's metrics and `mailroom status`.
-- None of them takes a lock that the collector or the app's inserts wait on.

-- name: queue_backlog
-- One queue's backlog and the age of its oldest entry, in seconds (NULL when empty). The
-- oldest entry is the lowest token id (ids grow with time); its age is its token's age. The
-- first few entries are looked at, in case a token row is gone (deleted with its account).
SELECT (SELECT count(*) FROM job_tokens WHERE job = %(queue)s) AS backlog,
       (SELECT extract(epoch FROM now() - min(t.created_at))::float8
        FROM (SELECT token FROM job_tokens WHERE job = %(queue)s ORDER BY token LIMIT 20) f
        JOIN tokens t ON t.id = f.token) AS oldest_age_s

-- name: queues
-- Every registered queue with its channel, backlog and oldest entry's age (seconds), and its
-- backlog by action (a JSON object: action name -> queued tokens; a token row gone is not
-- counted there). Reads every queued entry's token: for `mailroom status`, not for metrics.
SELECT j.name,
       j.channel,
       (SELECT count(*) FROM job_tokens q WHERE q.job = j.name) AS backlog,
       (SELECT extract(epoch FROM now() - min(t.created_at))::float8
        FROM (SELECT token FROM job_tokens q WHERE q.job = j.name ORDER BY token LIMIT 20) f
        JOIN tokens t ON t.id = f.token) AS oldest_age_s,
       (SELECT coalesce(jsonb_object_agg(a.action, a.queued), '{}'::jsonb)
        FROM (SELECT t.action, count(*) AS queued
                FROM job_tokens q JOIN tokens t ON t.id = q.token
               WHERE q.job = j.name GROUP BY t.action) a) AS by_action
FROM jobs j
ORDER BY j.name

-- name: collectors
-- The sessions of collectors: who holds each queue's standby lock (the active collector),
-- who holds its awake lock, and the other collector sessions (standbys). An advisory lock
-- on a bigint key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits).
WITH keys AS (
    SELECT j.name,
           hashtextextended('mailroom:' || j.name, 0) AS active_key,
           mailroom_awake_lock(j.name) AS awake_key
    FROM jobs j
), held AS (
    SELECT l.pid, (l.classid::int8 << 32) | l.objid::int8 AS key
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.mode = 'ExclusiveLock'
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT k.name AS queue,
       a.pid,
       host(a.client_addr) AS client_addr,
       a.client_port,
       a.application_name,
       a.backend_start,
       EXISTS (SELECT 1 FROM held h2 WHERE h2.pid = a.pid AND h2.key = k.awake_key) AS awake
FROM keys k
JOIN held h ON h.key = k.active_key
JOIN pg_stat_activity a ON a.pid = h.pid
ORDER BY k.name

-- name: collector_sessions
-- Every session that says it is a collector (its application_name), active or standing by.
SELECT a.pid, host(a.client_addr) AS client_addr, a.client_port, a.backend_start
FROM pg_stat_activity a
WHERE a.application_name = 'mailroom-collector' AND a.datname = current_database()
ORDER BY a.backend_start
