--
-- Administration (run as the extension owner; EXECUTE is not granted to
-- PUBLIC: grant it to the roles that may manage queues)
--

-- Options left out or NULL take their defaults: guarantee at_least_once,
-- visibility_timeout 30 s, max_attempts 5, fifo false, dedup_window 5 min,
-- retry_base and retry_max from deliver.default_retry_base/_max,
-- message_ttl none, on_expire dead_letter, max_depth none, overflow reject,
-- ack_commit durable, priorities false.
CREATE FUNCTION deliver.create_queue(
    queue_name         text,
    guarantee          text DEFAULT NULL,
    visibility_timeout interval DEFAULT NULL,
    max_attempts       int DEFAULT NULL,
    fifo               boolean DEFAULT NULL,
    dedup_window       interval DEFAULT NULL,
    retry_base         interval DEFAULT NULL,
    retry_max          interval DEFAULT NULL,
    message_ttl        interval DEFAULT NULL,
    on_expire          text DEFAULT NULL,
    max_depth          bigint DEFAULT NULL,
    overflow           text DEFAULT NULL,
    ack_commit         text DEFAULT NULL,
    priorities         boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q   deliver.queue;
    s   int;
    t   text;
    r   record;
    -- payloads over about 2 kB are compressed: lz4 (several times faster
    -- than pglz, the default) when the server has it
    z   text := CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_settings
                                   WHERE name = 'default_toast_compression'
                                     AND 'lz4' = ANY (enumvals))
                     THEN 'lz4' ELSE 'pglz' END;
BEGIN
    PERFORM deliver._check_name('queue', queue_name);
    -- NULL means the default (the gateway and PostgREST pass NULL for an
    -- option the request leaves out)
    guarantee := coalesce(guarantee, 'at_least_once');
    visibility_timeout := coalesce(visibility_timeout, interval '30 seconds');
    max_attempts := coalesce(max_attempts, 5);
    fifo := coalesce(fifo, false);
    dedup_window := coalesce(dedup_window, interval '5 minutes');
    retry_base := coalesce(retry_base, current_setting('deliver.default_retry_base')::interval);
    retry_max := coalesce(retry_max, current_setting('deliver.default_retry_max')::interval);
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
    on_expire := coalesce(on_expire, 'dead_letter');
    IF message_ttl = interval '0' THEN
        message_ttl := NULL;
    END IF;
    PERFORM deliver._check_expiry(message_ttl, on_expire);
    overflow := coalesce(overflow, 'reject');
    IF max_depth = 0 THEN
        max_depth := NULL;
    END IF;
    PERFORM deliver._check_depth(max_depth, overflow, guarantee);
    ack_commit := coalesce(ack_commit, 'durable');
    PERFORM deliver._check_ack_commit(ack_commit, guarantee);
    priorities := coalesce(priorities, false);
    PERFORM deliver._check_priorities(priorities, guarantee);
    IF EXISTS (SELECT 1 FROM deliver.queue x WHERE x.queue_name = create_queue.queue_name) THEN
        RAISE EXCEPTION 'queue "%" already exists', queue_name
            USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO deliver.queue (queue_name, guarantee, visibility_timeout, max_attempts,
                               fifo, dedup_window, retry_base, retry_max, created_snapshot,
                               message_ttl, on_expire, max_depth, overflow, ack_commit,
                               priorities)
    VALUES (create_queue.queue_name, create_queue.guarantee, create_queue.visibility_timeout,
            create_queue.max_attempts, create_queue.fifo, create_queue.dedup_window,
            create_queue.retry_base, create_queue.retry_max, deliver._latest_snapshot(),
            create_queue.message_ttl, create_queue.on_expire, create_queue.max_depth,
            create_queue.overflow, create_queue.ack_commit, create_queue.priorities)
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
                payload      jsonb COMPRESSION %s NOT NULL,
                expires_at   timestamptz,
                priority     smallint)
            WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)$f$, t, z);
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
            payload      jsonb COMPRESSION %s NOT NULL,
            attempts     int NOT NULL,
            reason       text NOT NULL,
            last_error   text,
            dead_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (group_id, message_id))$f$,
        format('q%s_dead', q.queue_id), z);
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
            payload      jsonb COMPRESSION %s NOT NULL,
            expires_at   timestamptz,
            priority     smallint)$f$,
        format('q%s_delayed', q.queue_id), z);
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
            payload      jsonb COMPRESSION %s NOT NULL,
            archived_at  timestamptz NOT NULL DEFAULT now())$f$,
        format('q%s_archive', q.queue_id), z);
    EXECUTE format('CREATE INDEX %I ON deliver.%I (archived_at)',
                   format('q%s_archived_at', q.queue_id), format('q%s_archive', q.queue_id));

    -- nobody but the owner has a right on the queue's tables, whatever
    -- default privileges (ALTER DEFAULT PRIVILEGES) would have given: a
    -- grantee who could write them could lose or forge messages
    FOR r IN SELECT DISTINCT c.relname, e.grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) e
              WHERE c.relnamespace = 'deliver'::pg_catalog.regnamespace
                AND c.relname ~ pg_catalog.format('^q%s_', q.queue_id)
                AND e.grantee <> c.relowner LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON deliver.%I FROM %s', r.relname,
            CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::pg_catalog.regrole::text END);
    END LOOP;

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
    PERFORM deliver._lock_queue(q);
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
    PERFORM deliver._lock_queue(q);
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
               consumer_groups text[], created_at timestamptz,
               message_ttl interval, on_expire text, max_depth bigint, overflow text,
               ack_commit text, priorities boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT q.queue_name, q.guarantee, q.visibility_timeout, q.max_attempts, q.fifo,
           q.dedup_window, q.retry_base, q.retry_max, q.archive_retention,
           ARRAY(SELECT g.group_name FROM deliver.consumer_group g
                  WHERE g.queue_id = q.queue_id ORDER BY g.group_id),
           q.created_at, q.message_ttl, q.on_expire, q.max_depth, q.overflow,
           q.ack_commit, q.priorities
      FROM deliver.queue q
     ORDER BY q.queue_name
$$;

-- Change a queue's delivery settings; NULL leaves a setting as it is.
-- Leases already handed out keep their expiry.  archive_retention turns
-- the archive on (finished messages are kept that long in q<id>_archive,
-- read with deliver.archived()); '0' turns it off.  message_ttl sets the
-- queue's ttl ('0' removes it) and on_expire what expiry does; both apply
-- to the messages already stored too.  max_depth sets the depth limit ('0'
-- removes it), overflow what a send beyond it does ('reject' or
-- 'drop_oldest').  ack_commit: how acks that are their transaction's only
-- work commit ('durable' or 'async', sql/ack_commit.sql); a change applies
-- to the acks that start after it commits.  priorities turns priority
-- order on or off (at_least_once and exactly_once queues only); off, a
-- send with a priority is refused.
CREATE FUNCTION deliver.alter_queue(
    queue_name         text,
    visibility_timeout interval DEFAULT NULL,
    max_attempts       int DEFAULT NULL,
    dedup_window       interval DEFAULT NULL,
    retry_base         interval DEFAULT NULL,
    retry_max          interval DEFAULT NULL,
    archive_retention  interval DEFAULT NULL,
    message_ttl        interval DEFAULT NULL,
    on_expire          text DEFAULT NULL,
    max_depth          bigint DEFAULT NULL,
    overflow           text DEFAULT NULL,
    ack_commit         text DEFAULT NULL,
    priorities         boolean DEFAULT NULL)
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
    PERFORM deliver._check_expiry(CASE WHEN message_ttl = interval '0' THEN NULL ELSE message_ttl END,
                                  coalesce(on_expire, 'dead_letter'));
    PERFORM deliver._check_depth(CASE WHEN max_depth = 0 THEN NULL ELSE max_depth END,
                                 coalesce(overflow, q.overflow), q.guarantee);
    IF ack_commit IS NOT NULL THEN
        PERFORM deliver._check_ack_commit(ack_commit, q.guarantee);
    END IF;
    IF priorities THEN
        PERFORM deliver._check_priorities(priorities, q.guarantee);
    END IF;
    UPDATE deliver.queue x
       SET visibility_timeout = coalesce(alter_queue.visibility_timeout, x.visibility_timeout),
           max_attempts = coalesce(alter_queue.max_attempts, x.max_attempts),
           dedup_window = coalesce(alter_queue.dedup_window, x.dedup_window),
           retry_base = coalesce(alter_queue.retry_base, x.retry_base),
           retry_max = coalesce(alter_queue.retry_max, x.retry_max),
           archive_retention = CASE WHEN alter_queue.archive_retention IS NULL THEN x.archive_retention
                                    WHEN alter_queue.archive_retention = interval '0' THEN NULL
                                    ELSE alter_queue.archive_retention END,
           message_ttl = CASE WHEN alter_queue.message_ttl IS NULL THEN x.message_ttl
                              WHEN alter_queue.message_ttl = interval '0' THEN NULL
                              ELSE alter_queue.message_ttl END,
           on_expire = coalesce(alter_queue.on_expire, x.on_expire),
           max_depth = CASE WHEN alter_queue.max_depth IS NULL THEN x.max_depth
                            WHEN alter_queue.max_depth = 0 THEN NULL
                            ELSE alter_queue.max_depth END,
           overflow = coalesce(alter_queue.overflow, x.overflow),
           ack_commit = coalesce(alter_queue.ack_commit, x.ack_commit),
           priorities = coalesce(alter_queue.priorities, x.priorities)
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
RETURNS TABLE (consumer_group text, created_at timestamptz,
               paused boolean, rate_per_second double precision, rate_burst int)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    RETURN QUERY SELECT g.group_name, g.created_at, g.paused, g.rate_per_second, g.rate_burst
                   FROM deliver.consumer_group g
                  WHERE g.queue_id = q.queue_id ORDER BY g.group_id;
END $$;

-- Access to a queue: 'send' lets a role send; 'receive' lets it receive,
-- ack, nack, extend leases and read dead letters, the archive and metrics;
-- 'all' both.  The rights are kept in the queue's acl (INSERT: send,
-- SELECT: receive) and checked by deliver's functions, which then write
-- with the owner's rights: no role is ever granted anything on the queue's
-- tables.  Membership counts as for table privileges (a role that inherits
-- a grantee's privileges has its rights).
-- The acl letters of a privilege: 'a' (INSERT) to send, 'r' (SELECT) to
-- receive.
CREATE FUNCTION deliver._acl_privileges(privilege text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF privilege IS NULL THEN
        RAISE EXCEPTION 'privilege must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    CASE privilege
        WHEN 'send' THEN RETURN 'a';
        WHEN 'receive' THEN RETURN 'r';
        WHEN 'all' THEN RETURN 'ar';
        ELSE RAISE EXCEPTION 'invalid privilege "%"', left(privilege, 80)
                 USING ERRCODE = 'invalid_parameter_value', HINT = 'Use send, receive or all.';
    END CASE;
END $$;

-- The oid of a role named exactly role_name, or an error.
CREATE FUNCTION deliver._role(role_name text) RETURNS oid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r oid;
BEGIN
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'role_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT oid INTO r FROM pg_roles WHERE rolname = role_name;
    IF r IS NULL THEN
        RAISE EXCEPTION 'role "%" does not exist', left(role_name, 80) USING ERRCODE = 'undefined_object';
    END IF;
    RETURN r;
END $$;

-- The acl letters role holds in acl.
CREATE FUNCTION deliver._acl_of(acl aclitem[], role oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(string_agg(DISTINCT CASE e.privilege_type WHEN 'INSERT' THEN 'a' ELSE 'r' END, ''
                               ORDER BY CASE e.privilege_type WHEN 'INSERT' THEN 'a' ELSE 'r' END), '')
      FROM unnest(acl) AS a, aclexplode(ARRAY[a]) e
     WHERE e.grantee = role
$$;

-- acl with role's entry holding the acl letters privs ('' removes it).
CREATE FUNCTION deliver._acl_set(acl aclitem[], role oid, privs text) RETURNS aclitem[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(x.a), '{}') FROM (
        SELECT a FROM unnest(acl) AS a
         WHERE NOT EXISTS (SELECT 1 FROM aclexplode(ARRAY[a]) e WHERE e.grantee = role)
        UNION ALL
        SELECT format('%s=%s/%s', role::regrole, privs,
                      (SELECT relowner FROM pg_class WHERE oid = 'deliver.queue'::regclass)::regrole)::aclitem
         WHERE privs <> '') AS x
$$;

CREATE FUNCTION deliver.grant_queue(queue_name text, role_name text, privilege text DEFAULT 'all')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q    deliver.queue := deliver._queue(queue_name);
    r    oid := deliver._role(role_name);
    add  text := deliver._acl_privileges(privilege);
    have text;
BEGIN
    PERFORM 1 FROM deliver.queue x WHERE x.queue_id = q.queue_id FOR UPDATE;
    SELECT deliver._acl_of(x.acl, r) INTO have FROM deliver.queue x WHERE x.queue_id = q.queue_id;
    UPDATE deliver.queue x
       SET acl = deliver._acl_set(x.acl, r,
                     CASE WHEN position('a' IN have || add) > 0 THEN 'a' ELSE '' END ||
                     CASE WHEN position('r' IN have || add) > 0 THEN 'r' ELSE '' END)
     WHERE x.queue_id = q.queue_id;
    PERFORM deliver._catalog_changed(q.queue_id);
END $$;

-- Take privilege ('send', 'receive' or 'all', the default) away from a role.
CREATE FUNCTION deliver.revoke_queue(queue_name text, role_name text, privilege text DEFAULT 'all')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q    deliver.queue := deliver._queue(queue_name);
    r    oid := deliver._role(role_name);
    gone text := deliver._acl_privileges(privilege);
    have text;
BEGIN
    PERFORM 1 FROM deliver.queue x WHERE x.queue_id = q.queue_id FOR UPDATE;
    SELECT deliver._acl_of(x.acl, r) INTO have FROM deliver.queue x WHERE x.queue_id = q.queue_id;
    UPDATE deliver.queue x
       SET acl = deliver._acl_set(x.acl, r, translate(have, gone, ''))
     WHERE x.queue_id = q.queue_id;
    PERFORM deliver._catalog_changed(q.queue_id);
END $$;

-- Who may do what on a queue (or every queue).
CREATE FUNCTION deliver.list_grants(queue_name text DEFAULT NULL)
RETURNS TABLE (queue_name text, role_name text, privilege text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT q.queue_name, e.grantee::regrole::text,
           CASE e.privilege_type WHEN 'INSERT' THEN 'send' ELSE 'receive' END
      FROM deliver.queue q, unnest(q.acl) AS a, aclexplode(ARRAY[a]) e
     WHERE list_grants.queue_name IS NULL OR q.queue_name = list_grants.queue_name
     ORDER BY 1, 2, 3
$$;
