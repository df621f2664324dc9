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

-- After a failover: the subscription's slot created anew on this primary
-- (PostgreSQL 15 does not replicate logical slots; the subscription's row
-- came with the standby, its slot did not).  Returns the new slot's start.
-- What was committed before that start is the subscription's backlog
-- (push_backlog); maintain() keeps it stored until the slot has confirmed
-- a position past its start, as it keeps everything while the slot is
-- missing.
CREATE FUNCTION deliver.restore_push_subscription(subscription_name text)
RETURNS pg_lsn
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p   deliver.push_subscription;
    t   text;
    lsn pg_lsn;
BEGIN
    IF subscription_name IS NULL THEN
        RAISE EXCEPTION 'subscription name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO p FROM deliver.push_subscription x
     WHERE x.subscription_name = restore_push_subscription.subscription_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'push subscription "%" does not exist', left(subscription_name, 80)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_replication_slots r WHERE r.slot_name = p.subscription_name) THEN
        RAISE EXCEPTION 'push subscription "%" has its replication slot', p.subscription_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Only a subscription whose slot is missing (after a failover) is restored.';
    END IF;
    -- no segment of the queue is truncated between the slot's creation and
    -- the commit of its start below (until then maintain() sees a slot
    -- with nothing to hold the backlog for)
    FOR t IN SELECT format('q%s_s%s', x.queue_id, x.seg) FROM deliver.segment x
              WHERE x.queue_id = p.queue_id ORDER BY x.seg LOOP
        EXECUTE format('LOCK TABLE deliver.%I IN ACCESS SHARE MODE', t);
    END LOOP;
    -- (a logical slot cannot be created after this transaction wrote anything)
    SELECT s.lsn INTO lsn
      FROM pg_create_logical_replication_slot(p.subscription_name, 'deliver') AS s;
    -- every transaction that committed before the slot's start has an xid
    -- below this snapshot's xmax
    UPDATE deliver.push_subscription x
       SET restored_lsn = lsn, restored_xmax = pg_snapshot_xmax(pg_current_snapshot())
     WHERE x.subscription_name = p.subscription_name;
    RETURN lsn;
END $$;

-- The backlog of a restored push subscription: the messages of its queue
-- committed before its new slot's start (transactions with an xid below
-- restored_xmax), and at or after `since` (the commit_time of the last
-- transaction the consumer handled, less a margin; NULL: every message
-- still stored), in commit-time order.  Handle them, then stream from the
-- slot: a transaction that was running at the restore may come both ways.
CREATE FUNCTION deliver.push_backlog(subscription_name text, since timestamptz DEFAULT NULL)
RETURNS TABLE (queue text, message_id bigint, payload jsonb, headers jsonb, ordering_key text,
               enqueued_at timestamptz, commit_time timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p     deliver.push_subscription;
    q     deliver.queue;
    gid   int;
    segs  text;
    i     int;
BEGIN
    IF subscription_name IS NULL THEN
        RAISE EXCEPTION 'subscription name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO p FROM deliver.push_subscription x WHERE x.subscription_name = push_backlog.subscription_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'push subscription "%" does not exist', left(subscription_name, 80)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF p.restored_xmax IS NULL THEN
        RAISE EXCEPTION 'push subscription "%" was not restored', p.subscription_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'After a failover, call deliver.restore_push_subscription() first.';
    END IF;
    IF NOT current_setting('track_commit_timestamp')::boolean THEN
        RAISE EXCEPTION 'push_backlog needs track_commit_timestamp = on' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO q FROM deliver.queue x WHERE x.queue_id = p.queue_id;
    IF p.consumer_group IS NOT NULL THEN
        SELECT g.group_id INTO gid FROM deliver.consumer_group g
         WHERE g.queue_id = q.queue_id AND g.group_name = p.consumer_group;
    END IF;
    -- A transaction that committed before the slot's start may still be
    -- running for snapshots (waiting for a synchronous standby): its
    -- messages are read once it is done.
    FOR i IN 1 .. 1000 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(pg_current_snapshot()) x
                               WHERE x < p.restored_xmax AND pg_xact_status(x) = 'committed');
        IF i = 1000 THEN
            RAISE EXCEPTION 'transactions that committed are still running'
                USING ERRCODE = 'lock_not_available',
                      DETAIL = 'They wait for a synchronous standby, most likely.', HINT = 'Try again.';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    SELECT string_agg(format('SELECT * FROM deliver.%I', format('q%s_s%s', x.queue_id, x.seg)), ' UNION ALL ')
      INTO segs FROM deliver.segment x WHERE x.queue_id = q.queue_id;
    -- A copy stored for one consumer group is the subscription's if it is
    -- for its group; without a group, one copy of each message is (as the
    -- output plugin emits them).
    RETURN QUERY EXECUTE format($f$
        SELECT %L::text, m.message_id, m.payload, m.headers, m.ordering_key, m.enqueued_at, m.commit_time
          FROM (SELECT DISTINCT ON (s.txid, s.message_id) s.*,
                       pg_xact_commit_timestamp(s.txid::xid) AS commit_time
                  FROM (%s) s
                 WHERE s.txid < $1
                   AND (s.target_group IS NULL OR $2 IS NULL OR s.target_group = $3)
                 ORDER BY s.txid, s.message_id) m
         WHERE $4 IS NULL OR m.commit_time IS NULL OR m.commit_time >= $4
         ORDER BY m.commit_time NULLS FIRST, m.message_id$f$, q.queue_name, segs)
      USING p.restored_xmax, p.consumer_group, gid, since;
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
