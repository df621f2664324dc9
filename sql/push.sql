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
