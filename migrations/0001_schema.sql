-- mailroom schema: accounts, their tokens, and the queues the collector consumes.
-- Core PostgreSQL >= 13 only (gen_random_uuid and sha256 are built in); no extension.
-- depends:

CREATE TYPE account_status AS ENUM ('provisioned', 'active', 'suspended');
CREATE TYPE token_action AS ENUM ('activation', 'password_recovery');

-- Whole seconds since the epoch, the unit of the accounts' timestamps.
CREATE FUNCTION mailroom_epoch() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT floor(extract(epoch FROM now()))::bigint
$$;

-- 32 bytes from the server's strong random generator (gen_random_uuid), hashed so that
-- the fixed version bits of the UUIDs do not show.
CREATE FUNCTION mailroom_random_secret() RETURNS bytea
LANGUAGE sql VOLATILE AS $$
    SELECT sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
$$;

-- 5 ASCII digits from the same strong source (48 random bits modulo 100000).
CREATE FUNCTION mailroom_random_code() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT lpad(((('x' || encode(substring(sha256(uuid_send(gen_random_uuid())) FROM 1 FOR 6), 'hex'))::bit(48)::bigint
                  % 100000))::text, 5, '0')
$$;

CREATE TABLE accounts (
    id                bigserial PRIMARY KEY,
    email             varchar(254) NOT NULL UNIQUE,
    login             varchar(254) NOT NULL UNIQUE,
    status            account_status NOT NULL DEFAULT 'provisioned',
    created_at        bigint NOT NULL DEFAULT mailroom_epoch(),
    status_changed_at bigint,
    activated_at      bigint,
    suspended_at      bigint,
    unsuspended_at    bigint
);

CREATE TABLE tokens (
    id          bigserial PRIMARY KEY,
    action      token_action NOT NULL,
    secret      bytea NOT NULL UNIQUE DEFAULT mailroom_random_secret()
                CONSTRAINT tokens_secret_is_32_bytes CHECK (octet_length(secret) = 32),
    code        text NOT NULL DEFAULT mailroom_random_code()
                CONSTRAINT tokens_code_is_5_digits CHECK (code ~ '^[0-9]{5}$'),
    -- Deferred so that the BEFORE INSERT trigger on accounts can create the token first.
    account     bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    expires_at  timestamptz NOT NULL DEFAULT now() + interval '15 minutes',
    consumed_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tokens_account_idx ON tokens (account);

-- One row per named consumer (MAILROOM_QUEUE_NAME) and the channel it LISTENs on.
CREATE TABLE jobs (
    name       text PRIMARY KEY,
    channel    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What each queue has yet to emit: a row per (queue, token), written in the same
-- transaction as the token and deleted by the collector in the transaction that emits it.
-- Per-row state instead of an id cursor means a token is never skipped, whatever order
-- concurrent transactions commit in. No foreign keys: they would add a lock per insert on
-- the app's hot path; the collector joins tokens and simply finds a deleted one gone.
CREATE TABLE job_tokens (
    job   text NOT NULL,
    token bigint NOT NULL,
    PRIMARY KEY (job, token)
);

-- A new provisioned account gets its activation token in the same statement.
CREATE FUNCTION mailroom_account_provisioned() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tokens (action, account) VALUES ('activation', NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER accounts_activation_token
    BEFORE INSERT ON accounts
    FOR EACH ROW WHEN (NEW.status = 'provisioned')
    EXECUTE FUNCTION mailroom_account_provisioned();

-- Status changes stamp their time; un-suspending a never-activated account sends it back
-- to provisioned rather than letting it skip activation.
CREATE FUNCTION mailroom_account_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stamp bigint := mailroom_epoch();
BEGIN
    IF OLD.status = 'suspended' AND NEW.status <> 'suspended' THEN
        NEW.unsuspended_at := stamp;
        IF NEW.status = 'active' AND NEW.activated_at IS NULL THEN
            NEW.status := 'provisioned';
        END IF;
    END IF;
    IF NEW.status = 'active' AND NEW.activated_at IS NULL THEN
        NEW.activated_at := stamp;
    ELSIF NEW.status = 'suspended' THEN
        NEW.suspended_at := stamp;
    END IF;
    NEW.status_changed_at := stamp;
    RETURN NEW;
END
$$;
CREATE TRIGGER accounts_status_change
    BEFORE UPDATE OF status ON accounts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION mailroom_account_status_changed();

-- Consuming an activation token activates its provisioned account.
CREATE FUNCTION mailroom_token_consumed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET status = 'active' WHERE id = NEW.account AND status = 'provisioned';
    RETURN NULL;
END
$$;
CREATE TRIGGER tokens_consumed
    AFTER UPDATE OF consumed_at ON tokens
    FOR EACH ROW WHEN (OLD.consumed_at IS NULL AND NEW.consumed_at IS NOT NULL AND NEW.action = 'activation')
    EXECUTE FUNCTION mailroom_token_consumed();

-- The advisory lock a collector holds while it is awake (reading the queue on its own
-- schedule); see mailroom_tokens_inserted.
CREATE FUNCTION mailroom_awake_lock(queue_name text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('mailroom-awake:' || queue_name, 0)
$$;

-- Every token insert queues the new tokens for each registered consumer and wakes it with
-- a NOTIFY on its channel. Once per statement, not per row: a bulk insert costs one queue
-- insert and one notification; the collector takes a notification as a wake-up, never as
-- a row count.
-- A NOTIFY makes the commit wait for a cluster-wide lock that serialises every notifying
-- commit, so it is skipped while the consumer is awake: an awake collector holds its
-- exclusive advisory lock, and here a shared try-lock (taken and released at once) fails.
-- This is safe because the queue rows were inserted first: before a collector goes back
-- to sleep it releases the lock, waits for every transaction then holding a lock on
-- job_tokens (which includes each one that skipped its NOTIFY) and reads once more.
CREATE FUNCTION mailroom_tokens_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    queue record;
BEGIN
    INSERT INTO job_tokens (job, token)
        SELECT j.name, i.id FROM jobs j CROSS JOIN inserted i;
    FOR queue IN SELECT name, channel FROM jobs LOOP
        IF pg_try_advisory_lock_shared(mailroom_awake_lock(queue.name)) THEN
            PERFORM pg_advisory_unlock_shared(mailroom_awake_lock(queue.name));
            PERFORM pg_notify(queue.channel, '');
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER tokens_queue_and_notify
    AFTER INSERT ON tokens
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION mailroom_tokens_inserted();

-- Register a consumer. A new queue starts with every token that could still be emitted
-- (unexpired, unconsumed), like a cursor at zero. The lock waits out transactions that are
-- inserting tokens right now (their trigger did not see the new queue) so the backfill
-- sees their tokens, and makes concurrent registrations of the same name take turns.
CREATE FUNCTION mailroom_register_queue(queue_name text, channel_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM jobs WHERE name = queue_name) THEN
        UPDATE jobs SET channel = channel_name WHERE name = queue_name AND channel <> channel_name;
        RETURN;
    END IF;
    LOCK TABLE tokens IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM jobs WHERE name = queue_name) THEN
        RETURN;
    END IF;
    INSERT INTO jobs (name, channel) VALUES (queue_name, channel_name);
    INSERT INTO job_tokens (job, token)
        SELECT queue_name, t.id FROM tokens t WHERE t.consumed_at IS NULL AND t.expires_at > now();
END
$$;

-- Retire a consumer and what it had yet to emit.
CREATE FUNCTION mailroom_drop_queue(queue_name text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM job_tokens WHERE job = queue_name;
    DELETE FROM jobs WHERE name = queue_name;
$$;
