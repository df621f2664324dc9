-- deliver 0.1: queues with at-most-once, at-least-once and exactly-once delivery
\echo Use "CREATE EXTENSION deliver" to load this file. \quit

-- (a superuser runs this: pg_catalog only, no operator a database owner put
-- in public; LOCAL: CREATE EXTENSION restores the search_path after)
SET LOCAL search_path = pg_catalog, pg_temp;

--
-- Catalog
--
-- Each queue owns a small set of tables named after its numeric id (never
-- after the user's queue name), so user input never reaches SQL text:
--   deliver.q<id>_s0 .. q<id>_s<n-1>  message segments (append-only, rotated)
--   deliver.q<id>_done0 .. _done<n-1> finish records (acks, at-most-once
--                                     consumption, dead-letter moves), one
--                                     table per segment, rotated with it
--   deliver.q<id>_dead               dead letters
--   deliver.q<id>_delayed            messages not yet due
--   deliver.q<id>_dedup              idempotency keys
--   deliver.q<id>_seq                message ids
--

-- The schema belongs to the extension: DROP EXTENSION removes every queue.
CREATE SCHEMA deliver;

CREATE TABLE deliver.queue (
    queue_id            serial PRIMARY KEY,
    queue_name          text NOT NULL UNIQUE,
    guarantee           text NOT NULL
                        CHECK (guarantee IN ('at_most_once', 'at_least_once', 'exactly_once')),
    visibility_timeout  interval NOT NULL,
    max_attempts        int NOT NULL,
    fifo                boolean NOT NULL,
    dedup_window        interval NOT NULL,
    retry_base          interval NOT NULL,
    retry_max           interval NOT NULL,
    segments            int NOT NULL DEFAULT 3,
    -- finished messages are copied to q<id>_archive and kept this long
    -- (NULL: no archive)
    archive_retention   interval,
    created_snapshot    pg_snapshot NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
-- The push output plugin (logical decoding) reads queue and group names
-- through its historic snapshot, which needs user catalog tables.
ALTER TABLE deliver.queue SET (user_catalog_table = true);

-- The segments of each queue: one 'active' takes new messages; 'closing'
-- was switched away from; 'closed' knows the xid below which all its
-- writers were (closed_xmax); 'empty' was truncated and can become active.
CREATE TABLE deliver.segment (
    queue_id    int NOT NULL REFERENCES deliver.queue ON DELETE CASCADE,
    seg         int NOT NULL,
    state       text NOT NULL CHECK (state IN ('active', 'closing', 'closed', 'empty')),
    closed_xmax xid8,
    -- a WAL position after the commit of every writer of a closed segment
    -- (set once they all finished): push slots must confirm past it
    closed_lsn  pg_lsn,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_id, seg)
);

CREATE TABLE deliver.consumer_group (
    group_id        serial PRIMARY KEY,
    queue_id        int NOT NULL REFERENCES deliver.queue ON DELETE CASCADE,
    group_name      text NOT NULL,
    -- messages visible in this snapshot are not for this group
    start_snapshot  pg_snapshot NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (queue_id, group_name)
);
ALTER TABLE deliver.consumer_group SET (user_catalog_table = true);

-- Push subscriptions: a logical replication slot with plugin deliver (named
-- like the subscription) streams the queue's messages; its confirmed LSN is
-- the subscription's durable position.
CREATE TABLE deliver.push_subscription (
    subscription_name text PRIMARY KEY,
    queue_id          int NOT NULL REFERENCES deliver.queue,
    consumer_group    text,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Alert thresholds of a queue and whether each is crossed now; the
-- maintenance worker checks them (deliver._check_alerts).
CREATE TABLE deliver.alert (
    queue_id    int NOT NULL REFERENCES deliver.queue ON DELETE CASCADE,
    metric      text NOT NULL CHECK (metric IN ('oldest_age', 'depth', 'dead_letters')),
    threshold   numeric NOT NULL CHECK (threshold >= 0),
    firing      boolean NOT NULL DEFAULT false,
    value       numeric,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_id, metric)
);

-- pg_dump keeps the catalog rows (the queues' tables are not members)
SELECT pg_catalog.pg_extension_config_dump('deliver.queue', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.queue_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.consumer_group', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.segment', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.alert', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.consumer_group_group_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.push_subscription', '');

GRANT USAGE ON SCHEMA deliver TO PUBLIC;
GRANT SELECT ON deliver.queue, deliver.consumer_group, deliver.segment, deliver.alert,
                deliver.push_subscription TO PUBLIC;

--
-- C entry points
--

-- The latest snapshot as pg_snapshot (not the transaction's snapshot).
CREATE FUNCTION deliver._latest_snapshot() RETURNS pg_snapshot
    AS 'MODULE_PATHNAME', 'deliver_latest_snapshot' LANGUAGE C VOLATILE;

-- Tell every backend that the catalog changed (now and again at commit);
-- at commit, action 'reset' makes the queue's groups start over from their
-- durable state, 'forget' drops their shared state (queue dropped), and
-- 'forget_group' drops the shared state of group_id.
CREATE FUNCTION deliver._catalog_changed(queue_id int, action text DEFAULT 'none',
                                         group_id int DEFAULT 0) RETURNS void
    AS 'MODULE_PATHNAME', 'deliver_catalog_changed' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION deliver.send(
    queue_name      text,
    payload         jsonb,
    headers         jsonb DEFAULT NULL,
    ordering_key    text DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    delay           interval DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'deliver_send' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.send_batch(
    queue_name       text,
    payloads         jsonb[],
    headers          jsonb[] DEFAULT NULL,
    ordering_keys    text[] DEFAULT NULL,
    idempotency_keys text[] DEFAULT NULL,
    delay            interval DEFAULT NULL)
RETURNS bigint[]
    AS 'MODULE_PATHNAME', 'deliver_send_batch' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.receive(
    queue_name         text,
    max_messages       int DEFAULT 1,
    visibility_timeout interval DEFAULT NULL,
    wait               interval DEFAULT '0',
    consumer_group     text DEFAULT 'default')
RETURNS TABLE (
    message_id       bigint,
    delivery_id      bigint,
    payload          jsonb,
    headers          jsonb,
    ordering_key     text,
    attempt          int,
    enqueued_at      timestamptz,
    lease_expires_at timestamptz)
    AS 'MODULE_PATHNAME', 'deliver_receive' LANGUAGE C VOLATILE ROWS 100;

CREATE FUNCTION deliver.ack(queue_name text, delivery_id bigint)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'deliver_ack' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.ack_batch(queue_name text, delivery_ids bigint[])
RETURNS int
    AS 'MODULE_PATHNAME', 'deliver_ack_batch' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.nack(
    queue_name  text,
    delivery_id bigint,
    error       text DEFAULT NULL,
    retry_after interval DEFAULT NULL)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'deliver_nack' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.extend_lease(
    queue_name         text,
    delivery_id        bigint,
    visibility_timeout interval)
RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'deliver_extend_lease' LANGUAGE C VOLATILE;

-- Write every group's restart point; say which closed segments (given by
-- their closed_xmax) hold only finished messages.
CREATE FUNCTION deliver._checkpoint_groups(queue_id int, closed_xmax xid8[]) RETURNS boolean[]
    AS 'MODULE_PATHNAME', 'deliver_checkpoint_groups' LANGUAGE C VOLATILE STRICT;

-- Move delayed messages that came due into the active segment.
CREATE FUNCTION deliver._move_due(queue_name text) RETURNS void
    AS 'MODULE_PATHNAME', 'deliver_move_due' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver._next_xid() RETURNS xid8
    AS 'MODULE_PATHNAME', 'deliver_next_xid' LANGUAGE C VOLATILE;

-- Per-group live state kept in shared memory.
CREATE FUNCTION deliver._group_state(
    group_id int,
    OUT backlog bigint, OUT in_flight bigint, OUT ready bigint,
    OUT blocked bigint, OUT oldest_enqueued_at timestamptz,
    OUT sent_total bigint, OUT acked_total bigint, OUT dead_total bigint)
    AS 'MODULE_PATHNAME', 'deliver_group_state' LANGUAGE C VOLATILE STRICT;

-- Expire leases, move messages out of attempts to the dead letters, wake
-- long polls when messages are ready (the maintenance worker's sweep).
CREATE FUNCTION deliver._sweep(queue_name text, max_dead int DEFAULT 1000,
    OUT expired bigint, OUT ready bigint, OUT dead_lettered bigint)
    AS 'MODULE_PATHNAME', 'deliver_sweep' LANGUAGE C VOLATILE;

-- The maintenance workers, one row per database in deliver.database.
CREATE FUNCTION deliver.worker_status()
RETURNS TABLE (database text, pid int, started_at timestamptz, last_run_at timestamptz,
               last_run_duration interval, runs bigint, errors bigint,
               expired_total bigint, dead_total bigint,
               last_error text, last_error_at timestamptz)
    AS 'MODULE_PATHNAME', 'deliver_worker_status' LANGUAGE C VOLATILE;

-- Insert one message for redrive (keeps the payload, new id, one group).
CREATE FUNCTION deliver._requeue(queue_id int, target_group int,
    enqueued_at timestamptz, ordering_key text, headers jsonb, payload jsonb)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'deliver_requeue' LANGUAGE C VOLATILE;

--
-- Helpers
--

CREATE FUNCTION deliver._check_name(kind text, name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION '% name must not be NULL', kind
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name "%"', kind, left(name, 80)
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A name is 1 to 63 characters: letters, digits, "_", "." and "-", not starting with "." or "-".';
    END IF;
END $$;

CREATE FUNCTION deliver._check_interval(what text, value interval,
                                        low interval, high interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', what
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF value < low OR value > high THEN
        RAISE EXCEPTION '% must be between % and %', what, low, high
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got %s.', value);
    END IF;
END $$;

-- The queue row, or an error naming the queue.
CREATE FUNCTION deliver._queue(p_queue_name text) RETURNS deliver.queue
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue;
BEGIN
    IF p_queue_name IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO q FROM deliver.queue WHERE queue_name = p_queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue "%" does not exist', left(p_queue_name, 80)
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with deliver.create_queue(), or see deliver.list_queues().';
    END IF;
    RETURN q;
END $$;

-- Raise 42704 unless the queue has a consumer group of that name (NULL: any).
CREATE FUNCTION deliver._check_group(q deliver.queue, group_name text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF group_name IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM deliver.consumer_group g
         WHERE g.queue_id = q.queue_id AND g.group_name = _check_group.group_name) THEN
        RAISE EXCEPTION 'consumer group "%" does not exist on queue "%"', left(group_name, 80), q.queue_name
            USING ERRCODE = 'undefined_object';
    END IF;
END $$;

-- The tables of a queue: segments..., done tables..., dead, delayed, dedup, archive
CREATE FUNCTION deliver._queue_tables(q deliver.queue) RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(format('q%s_s%s', q.queue_id, s) ORDER BY s)
           || array_agg(format('q%s_done%s', q.queue_id, s) ORDER BY s)
           || ARRAY[format('q%s_dead', q.queue_id),
                    format('q%s_delayed', q.queue_id), format('q%s_dedup', q.queue_id),
                    format('q%s_archive', q.queue_id)]
    FROM generate_series(0, q.segments - 1) AS s
$$;

--
-- Administration (run as the extension owner; EXECUTE is not granted to
-- PUBLIC: grant it to the roles that may manage queues)
--

CREATE FUNCTION deliver.create_queue(
    queue_name         text,
    guarantee          text DEFAULT 'at_least_once',
    visibility_timeout interval DEFAULT '30 seconds',
    max_attempts       int DEFAULT 5,
    fifo               boolean DEFAULT false,
    dedup_window       interval DEFAULT '5 minutes',
    retry_base         interval DEFAULT current_setting('deliver.default_retry_base')::interval,
    retry_max          interval DEFAULT current_setting('deliver.default_retry_max')::interval)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q   deliver.queue;
    s   int;
    t   text;
BEGIN
    PERFORM deliver._check_name('queue', queue_name);
    IF guarantee IS NULL THEN
        RAISE EXCEPTION 'guarantee must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_attempts IS NULL THEN
        RAISE EXCEPTION 'max_attempts must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF guarantee NOT IN ('at_most_once', 'at_least_once', 'exactly_once') THEN
        RAISE EXCEPTION 'invalid guarantee "%"', guarantee
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use at_most_once, at_least_once or exactly_once.';
    END IF;
    PERFORM deliver._check_interval('visibility_timeout', visibility_timeout, '1 millisecond', '12 hours');
    PERFORM deliver._check_interval('dedup_window', dedup_window, '1 second', '7 days');
    PERFORM deliver._check_interval('retry_base', retry_base, '0', '1 day');
    PERFORM deliver._check_interval('retry_max', retry_max, '0', '7 days');
    IF max_attempts < 1 OR max_attempts > 1000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF fifo IS NULL THEN
        RAISE EXCEPTION 'fifo must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF EXISTS (SELECT 1 FROM deliver.queue x WHERE x.queue_name = create_queue.queue_name) THEN
        RAISE EXCEPTION 'queue "%" already exists', queue_name
            USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO deliver.queue (queue_name, guarantee, visibility_timeout, max_attempts,
                               fifo, dedup_window, retry_base, retry_max, created_snapshot)
    VALUES (create_queue.queue_name, create_queue.guarantee, create_queue.visibility_timeout,
            create_queue.max_attempts, create_queue.fifo, create_queue.dedup_window,
            create_queue.retry_base, create_queue.retry_max, deliver._latest_snapshot())
    RETURNING * INTO q;

    -- Segments and done tables are appended to, read by deliver's own index
    -- and heap scans (never planned) and truncated whole: neither vacuum nor
    -- analyze has anything to do there, and analyzing them every few seconds
    -- under a held xmin would only bloat pg_statistic.
    EXECUTE format('CREATE SEQUENCE deliver.%I', format('q%s_seq', q.queue_id));
    FOR s IN 0 .. q.segments - 1 LOOP
        t := format('q%s_s%s', q.queue_id, s);
        EXECUTE format($f$
            CREATE TABLE deliver.%I (
                txid         xid8 NOT NULL,
                message_id   bigint NOT NULL,
                target_group int,
                enqueued_at  timestamptz NOT NULL,
                ordering_key text,
                headers      jsonb,
                payload      jsonb NOT NULL)
            WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)$f$, t);
        EXECUTE format('CREATE INDEX %I ON deliver.%I (txid, message_id)', t || '_pos', t);
        EXECUTE format($f$
            CREATE TABLE deliver.%I (
                group_id    int NOT NULL,
                kind        "char" NOT NULL,
                message_ids bigint[] NOT NULL,
                done        pg_snapshot,
                written_at  timestamptz NOT NULL DEFAULT now())
            WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)$f$,
            format('q%s_done%s', q.queue_id, s));
        INSERT INTO deliver.segment (queue_id, seg, state)
        VALUES (q.queue_id, s, CASE WHEN s = 0 THEN 'active' ELSE 'empty' END);
    END LOOP;
    EXECUTE format($f$
        CREATE TABLE deliver.%I (
            group_id     int NOT NULL,
            message_id   bigint NOT NULL,
            enqueued_at  timestamptz NOT NULL,
            ordering_key text,
            headers      jsonb,
            payload      jsonb NOT NULL,
            attempts     int NOT NULL,
            reason       text NOT NULL,
            last_error   text,
            dead_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (group_id, message_id))$f$,
        format('q%s_dead', q.queue_id));
    EXECUTE format('CREATE INDEX %I ON deliver.%I (dead_at)',
                   format('q%s_dead_at', q.queue_id), format('q%s_dead', q.queue_id));
    EXECUTE format($f$
        CREATE TABLE deliver.%I (
            message_id   bigint PRIMARY KEY,
            deliver_at   timestamptz NOT NULL,
            txid         xid8 NOT NULL,       -- the sender's
            target_group int,
            enqueued_at  timestamptz NOT NULL,
            ordering_key text,
            headers      jsonb,
            payload      jsonb NOT NULL)$f$,
        format('q%s_delayed', q.queue_id));
    EXECUTE format('CREATE INDEX %I ON deliver.%I (deliver_at)',
                   format('q%s_delayed_due', q.queue_id), format('q%s_delayed', q.queue_id));
    EXECUTE format($f$
        CREATE TABLE deliver.%I (
            idempotency_key text PRIMARY KEY,
            message_id      bigint NOT NULL,
            expires_at      timestamptz NOT NULL)$f$,
        format('q%s_dedup', q.queue_id));
    EXECUTE format($f$
        CREATE TABLE deliver.%I (
            message_id   bigint PRIMARY KEY,
            enqueued_at  timestamptz NOT NULL,
            ordering_key text,
            headers      jsonb,
            payload      jsonb NOT NULL,
            archived_at  timestamptz NOT NULL DEFAULT now())$f$,
        format('q%s_archive', q.queue_id));
    EXECUTE format('CREATE INDEX %I ON deliver.%I (archived_at)',
                   format('q%s_archived_at', q.queue_id), format('q%s_archive', q.queue_id));

    INSERT INTO deliver.consumer_group (queue_id, group_name, start_snapshot)
    VALUES (q.queue_id, 'default', q.created_snapshot);
    PERFORM deliver._catalog_changed(q.queue_id);
END $$;

CREATE FUNCTION deliver.drop_queue(queue_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM deliver.push_subscription p WHERE p.queue_id = q.queue_id) THEN
        RAISE EXCEPTION 'queue "%" has push subscriptions', q.queue_name
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop them first with deliver.drop_push_subscription().';
    END IF;
    PERFORM deliver._catalog_changed(q.queue_id, 'forget');
    FOREACH t IN ARRAY deliver._queue_tables(q) LOOP
        EXECUTE format('DROP TABLE deliver.%I', t);
    END LOOP;
    EXECUTE format('DROP SEQUENCE deliver.%I', format('q%s_seq', q.queue_id));
    DELETE FROM deliver.queue WHERE queue_id = q.queue_id;
    RETURN true;
END $$;

-- Remove every message of the queue (ready, in flight, delayed) and every
-- dead letter; consumer groups stay and start over from now.
CREATE FUNCTION deliver.purge_queue(queue_name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    n bigint;
BEGIN
    -- what is removed: the most any group still had (waiting, in flight,
    -- dead), and the delayed ones; finished messages are not counted
    SELECT coalesce(max(m.depth + m.in_flight + m.dead_letters), 0) + coalesce(max(m.delayed), 0)
      INTO n FROM deliver.metrics(q.queue_name) m;
    EXECUTE format('TRUNCATE %s',
        (SELECT string_agg(format('deliver.%I', t), ', ')
           FROM unnest(deliver._queue_tables(q)) AS t
          WHERE t <> format('q%s_dedup', q.queue_id)));
    UPDATE deliver.consumer_group SET start_snapshot = deliver._latest_snapshot()
     WHERE queue_id = q.queue_id;
    UPDATE deliver.segment
       SET state = CASE WHEN seg = 0 THEN 'active' ELSE 'empty' END,
           closed_xmax = NULL, closed_lsn = NULL, changed_at = now()
     WHERE queue_id = q.queue_id;
    PERFORM deliver._catalog_changed(q.queue_id, 'reset');
    RETURN n;
END $$;

CREATE FUNCTION deliver.list_queues()
RETURNS TABLE (queue_name text, guarantee text, visibility_timeout interval,
               max_attempts int, fifo boolean, dedup_window interval,
               retry_base interval, retry_max interval, archive_retention interval,
               consumer_groups text[], created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT q.queue_name, q.guarantee, q.visibility_timeout, q.max_attempts, q.fifo,
           q.dedup_window, q.retry_base, q.retry_max, q.archive_retention,
           ARRAY(SELECT g.group_name FROM deliver.consumer_group g
                  WHERE g.queue_id = q.queue_id ORDER BY g.group_id),
           q.created_at
      FROM deliver.queue q
     ORDER BY q.queue_name
$$;

-- Change a queue's delivery settings; NULL leaves a setting as it is.
-- Leases already handed out keep their expiry.  archive_retention turns
-- the archive on (finished messages are kept that long in q<id>_archive,
-- read with deliver.archived()); '0' turns it off.
CREATE FUNCTION deliver.alter_queue(
    queue_name         text,
    visibility_timeout interval DEFAULT NULL,
    max_attempts       int DEFAULT NULL,
    dedup_window       interval DEFAULT NULL,
    retry_base         interval DEFAULT NULL,
    retry_max          interval DEFAULT NULL,
    archive_retention  interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    IF visibility_timeout IS NOT NULL THEN
        PERFORM deliver._check_interval('visibility_timeout', visibility_timeout, '1 millisecond', '12 hours');
    END IF;
    IF dedup_window IS NOT NULL THEN
        PERFORM deliver._check_interval('dedup_window', dedup_window, '1 second', '7 days');
    END IF;
    IF retry_base IS NOT NULL THEN
        PERFORM deliver._check_interval('retry_base', retry_base, '0', '1 day');
    END IF;
    IF retry_max IS NOT NULL THEN
        PERFORM deliver._check_interval('retry_max', retry_max, '0', '7 days');
    END IF;
    IF max_attempts IS NOT NULL AND (max_attempts < 1 OR max_attempts > 1000) THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF archive_retention IS NOT NULL THEN
        PERFORM deliver._check_interval('archive_retention', archive_retention, '0', '3650 days');
    END IF;
    UPDATE deliver.queue x
       SET visibility_timeout = coalesce(alter_queue.visibility_timeout, x.visibility_timeout),
           max_attempts = coalesce(alter_queue.max_attempts, x.max_attempts),
           dedup_window = coalesce(alter_queue.dedup_window, x.dedup_window),
           retry_base = coalesce(alter_queue.retry_base, x.retry_base),
           retry_max = coalesce(alter_queue.retry_max, x.retry_max),
           archive_retention = CASE WHEN alter_queue.archive_retention IS NULL THEN x.archive_retention
                                    WHEN alter_queue.archive_retention = interval '0' THEN NULL
                                    ELSE alter_queue.archive_retention END
     WHERE x.queue_id = q.queue_id;
    PERFORM deliver._catalog_changed(q.queue_id);
END $$;

-- A consumer group gets every message sent after it was created
-- (start_from => 'latest'), or every message still stored
-- (start_from => 'earliest').
CREATE FUNCTION deliver.create_consumer_group(queue_name text, consumer_group text,
                                              start_from text DEFAULT 'latest')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    PERFORM deliver._check_name('consumer group', consumer_group);
    IF start_from IS NULL THEN
        RAISE EXCEPTION 'start_from must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF start_from NOT IN ('latest', 'earliest') THEN
        RAISE EXCEPTION 'invalid start_from "%"', start_from
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use latest or earliest.';
    END IF;
    IF EXISTS (SELECT 1 FROM deliver.consumer_group g
                WHERE g.queue_id = q.queue_id AND g.group_name = consumer_group) THEN
        RAISE EXCEPTION 'consumer group "%" already exists on queue "%"', consumer_group, q.queue_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO deliver.consumer_group (queue_id, group_name, start_snapshot)
    VALUES (q.queue_id, consumer_group,
            CASE start_from WHEN 'latest' THEN deliver._latest_snapshot()
                            ELSE q.created_snapshot END);
    PERFORM deliver._catalog_changed(q.queue_id);
END $$;

CREATE FUNCTION deliver.drop_consumer_group(queue_name text, consumer_group text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    gid int;
BEGIN
    PERFORM deliver._check_name('consumer group', consumer_group);
    DELETE FROM deliver.consumer_group g
     WHERE g.queue_id = q.queue_id AND g.group_name = consumer_group
    RETURNING g.group_id INTO gid;
    IF gid IS NULL THEN
        RAISE EXCEPTION 'consumer group "%" does not exist on queue "%"', consumer_group, q.queue_name
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('DELETE FROM deliver.%I WHERE group_id = $1', format('q%s_dead', q.queue_id))
        USING gid;
    PERFORM deliver._catalog_changed(q.queue_id, 'forget_group', gid);
    RETURN true;
END $$;

CREATE FUNCTION deliver.list_consumer_groups(queue_name text)
RETURNS TABLE (consumer_group text, created_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    RETURN QUERY SELECT g.group_name, g.created_at FROM deliver.consumer_group g
                  WHERE g.queue_id = q.queue_id ORDER BY g.group_id;
END $$;

-- GRANT-based access: 'send' lets a role send; 'receive' lets it receive,
-- ack, nack, extend leases and read dead letters and metrics; 'all' both.
CREATE FUNCTION deliver.grant_queue(queue_name text, role_name text, privilege text DEFAULT 'all')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    s int;
BEGIN
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'role_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF privilege IS NULL THEN
        RAISE EXCEPTION 'privilege must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
    END IF;
    IF privilege NOT IN ('send', 'receive', 'all') THEN
        RAISE EXCEPTION 'invalid privilege "%"', privilege
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use send, receive or all.';
    END IF;
    FOR s IN 0 .. q.segments - 1 LOOP
        IF privilege IN ('send', 'all') THEN
            EXECUTE format('GRANT INSERT ON deliver.%I TO %I', format('q%s_s%s', q.queue_id, s), role_name);
        END IF;
        IF privilege IN ('receive', 'all') THEN
            EXECUTE format('GRANT SELECT ON deliver.%I TO %I', format('q%s_s%s', q.queue_id, s), role_name);
        END IF;
    END LOOP;
    IF privilege IN ('send', 'all') THEN
        EXECUTE format('GRANT INSERT ON deliver.%I TO %I', format('q%s_delayed', q.queue_id), role_name);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON deliver.%I TO %I', format('q%s_dedup', q.queue_id), role_name);
        EXECUTE format('GRANT USAGE ON SEQUENCE deliver.%I TO %I', format('q%s_seq', q.queue_id), role_name);
    END IF;
    IF privilege IN ('receive', 'all') THEN
        FOR s IN 0 .. q.segments - 1 LOOP
            EXECUTE format('GRANT SELECT, INSERT ON deliver.%I TO %I', format('q%s_done%s', q.queue_id, s), role_name);
        END LOOP;
        EXECUTE format('GRANT SELECT, INSERT ON deliver.%I TO %I', format('q%s_dead', q.queue_id), role_name);
        EXECUTE format('GRANT SELECT ON deliver.%I TO %I', format('q%s_delayed', q.queue_id), role_name);
        EXECUTE format('GRANT SELECT ON deliver.%I TO %I', format('q%s_archive', q.queue_id), role_name);
    END IF;
END $$;

CREATE FUNCTION deliver.revoke_queue(queue_name text, role_name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    t text;
BEGIN
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'role_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
    END IF;
    FOREACH t IN ARRAY deliver._queue_tables(q) LOOP
        EXECUTE format('REVOKE ALL ON deliver.%I FROM %I', t, role_name);
    END LOOP;
    EXECUTE format('REVOKE ALL ON SEQUENCE deliver.%I FROM %I', format('q%s_seq', q.queue_id), role_name);
END $$;

--
-- Maintenance: reclaim storage, rotate segments, expire idempotency keys
-- and dead letters older than deliver.dead_letter_retention.
-- Call it every second or so (the background worker does); it is cheap
-- when there is nothing to do.
--
CREATE FUNCTION deliver.maintain(queue_name text DEFAULT NULL)
RETURNS TABLE (queue text, truncated int, rotated boolean, expired_keys bigint,
               expired_dead_letters bigint, archived bigint, expired_archive bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q       deliver.queue;
    segs    int[];
    xmaxes  xid8[];
    lsns    pg_lsn[];
    ok      boolean[];
    i       int;
    act     deliver.segment;
    nxt     deliver.segment;
    every   interval := current_setting('deliver.rotation_interval')::interval;
    n       bigint;
    keep    interval := current_setting('deliver.dead_letter_retention')::interval;
BEGIN
    IF maintain.queue_name IS NOT NULL THEN
        PERFORM deliver._queue(maintain.queue_name);
    END IF;
    FOR q IN SELECT * FROM deliver.queue x
              WHERE maintain.queue_name IS NULL OR x.queue_name = maintain.queue_name
              ORDER BY x.queue_id LOOP
        -- one maintainer per queue at a time
        PERFORM 1 FROM deliver.queue x WHERE x.queue_id = q.queue_id FOR UPDATE;
        maintain.queue := q.queue_name;
        truncated := 0;
        rotated := false;
        archived := 0;
        expired_archive := 0;

        -- Segments switched away from by an earlier (committed) run: every
        -- transaction that wrote to them has an xid below the next one now.
        UPDATE deliver.segment x SET state = 'closed', closed_xmax = deliver._next_xid(),
                                     changed_at = now()
         WHERE x.queue_id = q.queue_id AND x.state = 'closing';

        -- Once no transaction below closed_xmax runs, every commit that
        -- wrote to the segment lies before the current WAL insert position.
        UPDATE deliver.segment x SET closed_lsn = pg_current_wal_insert_lsn()
         WHERE x.queue_id = q.queue_id AND x.state = 'closed' AND x.closed_lsn IS NULL
           AND pg_snapshot_xmin(pg_current_snapshot()) >= x.closed_xmax;

        -- A closed segment that holds only finished messages for every
        -- group is truncated with its done table (each group's restart
        -- point was just written anew; see _checkpoint_groups), once every
        -- push slot (plugin deliver) of this database confirmed past it.
        SELECT coalesce(array_agg(x.seg ORDER BY x.seg), '{}'),
               coalesce(array_agg(x.closed_xmax ORDER BY x.seg), '{}'),
               coalesce(array_agg(x.closed_lsn ORDER BY x.seg), '{}')
          INTO segs, xmaxes, lsns
          FROM deliver.segment x WHERE x.queue_id = q.queue_id AND x.state = 'closed';
        ok := deliver._checkpoint_groups(q.queue_id, xmaxes);
        FOR i IN 1 .. coalesce(array_length(segs, 1), 0) LOOP
            CONTINUE WHEN NOT ok[i];
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM pg_replication_slots r
                 WHERE r.plugin = 'deliver' AND r.database = current_database()
                   AND (lsns[i] IS NULL OR r.confirmed_flush_lsn IS NULL
                        OR r.confirmed_flush_lsn < lsns[i]));
            BEGIN
                PERFORM set_config('lock_timeout', current_setting('deliver.maintenance_lock_timeout'), true);
                IF q.archive_retention IS NOT NULL THEN
                    -- every message of the segment is finished: keep a copy
                    EXECUTE format($f$
                        INSERT INTO deliver.%I (message_id, enqueued_at, ordering_key, headers, payload)
                        SELECT message_id, enqueued_at, ordering_key, headers, payload FROM deliver.%I
                        ON CONFLICT (message_id) DO NOTHING$f$,
                        format('q%s_archive', q.queue_id), format('q%s_s%s', q.queue_id, segs[i]));
                    GET DIAGNOSTICS n = ROW_COUNT;
                    archived := archived + n;
                END IF;
                -- done table first: the lock order of receive (no deadlock)
                EXECUTE format('TRUNCATE deliver.%I, deliver.%I',
                               format('q%s_done%s', q.queue_id, segs[i]),
                               format('q%s_s%s', q.queue_id, segs[i]));
                UPDATE deliver.segment x SET state = 'empty', closed_xmax = NULL, closed_lsn = NULL,
                                             changed_at = now()
                 WHERE x.queue_id = q.queue_id AND x.seg = segs[i];
                truncated := truncated + 1;
            EXCEPTION WHEN lock_not_available THEN
                NULL;           -- busy: next time
            END;
        END LOOP;

        -- Switch to the next segment when the active one is old enough and
        -- the next one is empty.
        SELECT * INTO act FROM deliver.segment x WHERE x.queue_id = q.queue_id AND x.state = 'active';
        SELECT * INTO nxt FROM deliver.segment x
         WHERE x.queue_id = q.queue_id AND x.seg = (act.seg + 1) % q.segments;
        IF nxt.state = 'empty' AND act.changed_at <= now() - every THEN
            UPDATE deliver.segment x SET state = 'closing', changed_at = now()
             WHERE x.queue_id = q.queue_id AND x.seg = act.seg;
            UPDATE deliver.segment x SET state = 'active', changed_at = now()
             WHERE x.queue_id = q.queue_id AND x.seg = nxt.seg;
            PERFORM deliver._catalog_changed(q.queue_id, 'switch', nxt.seg);
            rotated := true;
        END IF;

        EXECUTE format('DELETE FROM deliver.%I WHERE expires_at < now()', format('q%s_dedup', q.queue_id));
        GET DIAGNOSTICS expired_keys = ROW_COUNT;

        expired_dead_letters := 0;
        IF keep > interval '0' THEN
            EXECUTE format('DELETE FROM deliver.%I WHERE dead_at < now() - $1', format('q%s_dead', q.queue_id))
              USING keep;
            GET DIAGNOSTICS expired_dead_letters = ROW_COUNT;
        END IF;
        -- the archive keeps what was archived within its retention (also
        -- after the archive is turned off)
        EXECUTE format('DELETE FROM deliver.%I WHERE archived_at < now() - $1', format('q%s_archive', q.queue_id))
          USING coalesce(q.archive_retention, interval '0');
        GET DIAGNOSTICS expired_archive = ROW_COUNT;
        RETURN NEXT;
    END LOOP;
END $$;

--
-- Dead letters
--

CREATE FUNCTION deliver.dead_letters(queue_name text, consumer_group text DEFAULT NULL,
                                     max_messages int DEFAULT 100)
RETURNS TABLE (message_id bigint, group_name text, payload jsonb, headers jsonb,
               ordering_key text, attempts int, reason text, last_error text,
               enqueued_at timestamptz, dead_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    IF max_messages IS NULL THEN
        RAISE EXCEPTION 'max_messages must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_messages < 1 THEN
        RAISE EXCEPTION 'max_messages must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM deliver._check_group(q, consumer_group);
    RETURN QUERY EXECUTE format($f$
        SELECT d.message_id, g.group_name, d.payload, d.headers, d.ordering_key,
               d.attempts, d.reason, d.last_error, d.enqueued_at, d.dead_at
          FROM deliver.%I d JOIN deliver.consumer_group g USING (group_id)
         WHERE $1 IS NULL OR g.group_name = $1
         ORDER BY d.dead_at, d.message_id
         LIMIT $2$f$, format('q%s_dead', q.queue_id))
    USING consumer_group, max_messages;
END $$;

-- Send dead letters back to the group they died in, as new messages.
-- message_ids NULL means all of them. Returns how many were redriven.
CREATE FUNCTION deliver.redrive(queue_name text, message_ids bigint[] DEFAULT NULL,
                                consumer_group text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    d record;
    n bigint := 0;
BEGIN
    PERFORM deliver._check_group(q, consumer_group);
    FOR d IN EXECUTE format($f$
        DELETE FROM deliver.%I d
         USING deliver.consumer_group g
         WHERE g.group_id = d.group_id
           AND ($1 IS NULL OR d.message_id = ANY ($1))
           AND ($2 IS NULL OR g.group_name = $2)
        RETURNING d.*$f$, format('q%s_dead', q.queue_id))
        USING message_ids, consumer_group
    LOOP
        PERFORM deliver._requeue(q.queue_id, d.group_id, d.enqueued_at, d.ordering_key,
                                 d.headers, d.payload);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

--
-- Archive
--

-- Finished messages of a queue whose archive is on (alter_queue
-- archive_retention), oldest first; after_id pages through them.
CREATE FUNCTION deliver.archived(queue_name text, max_messages int DEFAULT 100,
                                 after_id bigint DEFAULT 0)
RETURNS TABLE (message_id bigint, payload jsonb, headers jsonb, ordering_key text,
               enqueued_at timestamptz, archived_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    IF max_messages IS NULL OR after_id IS NULL THEN
        RAISE EXCEPTION 'max_messages and after_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_messages < 1 THEN
        RAISE EXCEPTION 'max_messages must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format($f$
        SELECT a.message_id, a.payload, a.headers, a.ordering_key, a.enqueued_at, a.archived_at
          FROM deliver.%I a WHERE a.message_id > $1
         ORDER BY a.message_id LIMIT $2$f$, format('q%s_archive', q.queue_id))
    USING after_id, max_messages;
END $$;

--
-- Metrics
--

CREATE FUNCTION deliver.metrics(queue_name text)
RETURNS TABLE (consumer_group text, depth bigint, in_flight bigint,
               delayed bigint, dead_letters bigint, oldest_age interval,
               sent_total bigint, acked_total bigint, dead_total bigint,
               worker_last_run timestamptz, worker_lag interval, worker_errors bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    n_delayed bigint;
    g record;
    st record;
    w record;
BEGIN
    -- the maintenance worker of this database, if there is one
    SELECT * INTO w FROM deliver.worker_status() x WHERE x.database = current_database();
    EXECUTE format('SELECT count(*) FROM deliver.%I', format('q%s_delayed', q.queue_id)) INTO n_delayed;
    FOR g IN SELECT * FROM deliver.consumer_group c WHERE c.queue_id = q.queue_id ORDER BY c.group_id LOOP
        st := deliver._group_state(g.group_id);
        metrics.consumer_group := g.group_name;
        metrics.depth := st.backlog + st.ready + st.blocked;
        metrics.in_flight := st.in_flight;
        metrics.delayed := n_delayed;
        EXECUTE format('SELECT count(*) FROM deliver.%I WHERE group_id = $1', format('q%s_dead', q.queue_id))
            INTO metrics.dead_letters USING g.group_id;
        metrics.oldest_age := now() - st.oldest_enqueued_at;
        metrics.sent_total := st.sent_total;
        metrics.acked_total := st.acked_total;
        metrics.dead_total := st.dead_total;
        metrics.worker_last_run := w.last_run_at;
        metrics.worker_lag := clock_timestamp() - w.last_run_at;
        metrics.worker_errors := w.errors;
        RETURN NEXT;
    END LOOP;
END $$;

--
-- Alerts
--

-- Alert when a metric of a queue goes above a threshold: oldest_age (in
-- seconds: the longest any unfinished message has waited), depth (the
-- most messages waiting in one consumer group) or dead_letters (count).
-- threshold NULL removes the alert.  The maintenance worker checks every
-- deliver.alert_interval; at each crossing (up: firing, down: resolved)
-- it sends a NOTIFY on channel deliver_alerts (JSON payload) and logs it.
CREATE FUNCTION deliver.set_alert(queue_name text, metric text, threshold numeric)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    IF metric IS NULL THEN
        RAISE EXCEPTION 'metric must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF metric NOT IN ('oldest_age', 'depth', 'dead_letters') THEN
        RAISE EXCEPTION 'invalid alert metric "%"', left(metric, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use oldest_age, depth or dead_letters.';
    END IF;
    IF threshold IS NULL THEN
        DELETE FROM deliver.alert a WHERE a.queue_id = q.queue_id AND a.metric = set_alert.metric;
        RETURN;
    END IF;
    IF threshold < 0 OR threshold = 'NaN' OR threshold = 'Infinity' THEN
        RAISE EXCEPTION 'threshold must be a non-negative finite number'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO deliver.alert AS a (queue_id, metric, threshold)
    VALUES (q.queue_id, set_alert.metric, set_alert.threshold)
    ON CONFLICT ON CONSTRAINT alert_pkey DO UPDATE SET threshold = excluded.threshold;
END $$;

CREATE FUNCTION deliver.list_alerts(queue_name text DEFAULT NULL)
RETURNS TABLE (queue_name text, metric text, threshold numeric, firing boolean,
               value numeric, changed_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT q.queue_name, a.metric, a.threshold, a.firing, a.value, a.changed_at
      FROM deliver.alert a JOIN deliver.queue q USING (queue_id)
     WHERE list_alerts.queue_name IS NULL OR q.queue_name = list_alerts.queue_name
     ORDER BY q.queue_name, a.metric
$$;

-- Check every alert; returns how many changed state.
CREATE FUNCTION deliver._check_alerts()
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q       record;
    a       record;
    m       record;
    v       numeric;
    fire    boolean;
    n       int := 0;
BEGIN
    FOR q IN SELECT x.queue_id, x.queue_name FROM deliver.queue x
              WHERE EXISTS (SELECT 1 FROM deliver.alert y WHERE y.queue_id = x.queue_id)
              ORDER BY x.queue_id LOOP
        SELECT coalesce(max(extract(epoch FROM mm.oldest_age)), 0) AS oldest_age,
               coalesce(max(mm.depth), 0) AS depth,
               coalesce(sum(mm.dead_letters), 0) AS dead_letters
          INTO m FROM deliver.metrics(q.queue_name) mm;
        FOR a IN SELECT * FROM deliver.alert y WHERE y.queue_id = q.queue_id
                  ORDER BY y.metric FOR UPDATE LOOP
            v := CASE a.metric WHEN 'oldest_age' THEN round(m.oldest_age, 3)
                               WHEN 'depth' THEN m.depth
                               ELSE m.dead_letters END;
            fire := v > a.threshold;
            CONTINUE WHEN fire = a.firing;
            UPDATE deliver.alert y SET firing = fire, value = v, changed_at = now()
             WHERE y.queue_id = a.queue_id AND y.metric = a.metric;
            PERFORM pg_notify('deliver_alerts', json_build_object(
                'queue', q.queue_name, 'metric', a.metric,
                'state', CASE WHEN fire THEN 'firing' ELSE 'resolved' END,
                'value', v, 'threshold', a.threshold)::text);
            IF fire THEN
                RAISE WARNING 'deliver alert: queue "%" % is % (threshold %)',
                    q.queue_name, a.metric, v, a.threshold;
            ELSE
                RAISE LOG 'deliver alert resolved: queue "%" % is % (threshold %)',
                    q.queue_name, a.metric, v, a.threshold;
            END IF;
            n := n + 1;
        END LOOP;
    END LOOP;
    RETURN n;
END $$;

--
-- Push subscriptions
--

-- Create a push subscription: a logical replication slot named
-- subscription_name with plugin deliver, streaming the queue's messages
-- committed from now on.  Returns the slot's starting LSN.
CREATE FUNCTION deliver.create_push_subscription(queue_name text, subscription_name text,
                                                 consumer_group text DEFAULT NULL)
RETURNS pg_lsn
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q   deliver.queue := deliver._queue(queue_name);
    lsn pg_lsn;
BEGIN
    IF subscription_name IS NULL THEN
        RAISE EXCEPTION 'subscription name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF subscription_name !~ '^[a-z0-9_]{1,63}$' THEN
        RAISE EXCEPTION 'invalid subscription name "%"', left(subscription_name, 80)
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A subscription names its replication slot: 1 to 63 lower-case letters, digits and "_".';
    END IF;
    PERFORM deliver._check_group(q, consumer_group);
    IF EXISTS (SELECT 1 FROM deliver.push_subscription p
                WHERE p.subscription_name = create_push_subscription.subscription_name)
       OR EXISTS (SELECT 1 FROM pg_replication_slots r
                   WHERE r.slot_name = create_push_subscription.subscription_name) THEN
        RAISE EXCEPTION 'push subscription or replication slot "%" already exists', subscription_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    -- the slot first: a logical slot cannot be created after this
    -- transaction wrote anything
    SELECT s.lsn INTO lsn
      FROM pg_create_logical_replication_slot(subscription_name, 'deliver') AS s;
    INSERT INTO deliver.push_subscription (subscription_name, queue_id, consumer_group)
    VALUES (subscription_name, q.queue_id, consumer_group);
    RETURN lsn;
END $$;

CREATE FUNCTION deliver.drop_push_subscription(subscription_name text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM deliver.push_subscription p
     WHERE p.subscription_name = drop_push_subscription.subscription_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'push subscription "%" does not exist', left(subscription_name, 80)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_replication_slots r
                WHERE r.slot_name = drop_push_subscription.subscription_name) THEN
        PERFORM pg_drop_replication_slot(subscription_name);
    END IF;
    RETURN true;
END $$;

-- The push subscriptions, with the plugin options a client passes to
-- START_REPLICATION and each slot's position.
CREATE FUNCTION deliver.list_push_subscriptions()
RETURNS TABLE (subscription_name text, queue_name text, consumer_group text,
               slot_options text, active boolean, confirmed_lsn pg_lsn,
               created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.subscription_name, q.queue_name, p.consumer_group,
           format('queues %s', quote_literal(q.queue_name))
             || CASE WHEN p.consumer_group IS NOT NULL
                     THEN format(', consumer_group %s', quote_literal(p.consumer_group)) ELSE '' END,
           coalesce(r.active, false), r.confirmed_flush_lsn, p.created_at
      FROM deliver.push_subscription p
      JOIN deliver.queue q USING (queue_id)
      LEFT JOIN pg_replication_slots r ON r.slot_name = p.subscription_name
     ORDER BY p.subscription_name
$$;

-- How far each push subscription is behind: WAL bytes between the slot's
-- confirmed position and the current WAL insert position.
CREATE FUNCTION deliver.push_metrics()
RETURNS TABLE (subscription_name text, queue_name text, active boolean,
               confirmed_lsn pg_lsn, lag_bytes numeric, retained_wal_bytes numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.subscription_name, q.queue_name, coalesce(r.active, false), r.confirmed_flush_lsn,
           pg_wal_lsn_diff(pg_current_wal_insert_lsn(), r.confirmed_flush_lsn),
           pg_wal_lsn_diff(pg_current_wal_insert_lsn(), r.restart_lsn)
      FROM deliver.push_subscription p
      JOIN deliver.queue q USING (queue_id)
      LEFT JOIN pg_replication_slots r ON r.slot_name = p.subscription_name
     ORDER BY p.subscription_name
$$;

REVOKE EXECUTE ON FUNCTION deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval),
                           deliver.drop_queue(text), deliver.purge_queue(text),
                           deliver.create_consumer_group(text, text, text),
                           deliver.drop_consumer_group(text, text),
                           deliver.grant_queue(text, text, text), deliver.revoke_queue(text, text),
                           deliver.redrive(text, bigint[], text), deliver.maintain(text),
                           deliver.create_push_subscription(text, text, text),
                           deliver.drop_push_subscription(text),
                           deliver._checkpoint_groups(int, xid8[]), deliver._move_due(text),
                           deliver._catalog_changed(int, text, int), deliver._requeue(int, int, timestamptz, text, jsonb, jsonb),
                           deliver.alter_queue(text, interval, int, interval, interval, interval, interval),
                           deliver._sweep(text, int), deliver.set_alert(text, text, numeric),
                           deliver._check_alerts()
    FROM PUBLIC;
