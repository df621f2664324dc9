--
-- Flow control of a consumer group: pause and resume it, limit the rate
-- its receives hand out messages at.  The state is kept in
-- deliver.consumer_group; its shared-memory copy is reloaded when the
-- change commits (deliver._catalog_changed(..., 'flow', group_id)), which
-- also wakes the queue's long polls.
--

-- The group's row, locked, or 42704 naming it.
CREATE FUNCTION deliver._flow_group(q deliver.queue, consumer_group text)
RETURNS deliver.consumer_group
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g deliver.consumer_group;
BEGIN
    PERFORM deliver._check_name('consumer group', consumer_group);
    SELECT * INTO g FROM deliver.consumer_group x
     WHERE x.queue_id = q.queue_id AND x.group_name = consumer_group
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer group "%" does not exist on queue "%"', consumer_group, q.queue_name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN g;
END $$;

-- True when it paused the group, false when it was paused already.
CREATE FUNCTION deliver.pause_consumer_group(queue_name text, consumer_group text DEFAULT 'default')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    g deliver.consumer_group := deliver._flow_group(q, consumer_group);
BEGIN
    IF g.paused THEN
        RETURN false;
    END IF;
    UPDATE deliver.consumer_group x SET paused = true WHERE x.group_id = g.group_id;
    PERFORM deliver._catalog_changed(q.queue_id, 'flow', g.group_id);
    RETURN true;
END $$;

-- True when it resumed the group, false when it was not paused.
CREATE FUNCTION deliver.resume_consumer_group(queue_name text, consumer_group text DEFAULT 'default')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    g deliver.consumer_group := deliver._flow_group(q, consumer_group);
BEGIN
    IF NOT g.paused THEN
        RETURN false;
    END IF;
    UPDATE deliver.consumer_group x SET paused = false WHERE x.group_id = g.group_id;
    PERFORM deliver._catalog_changed(q.queue_id, 'flow', g.group_id);
    RETURN true;
END $$;

-- per_second NULL removes the limit; burst (the most a group may take at
-- once, the bucket's size) defaults to max(1, ceil(per_second)).
CREATE FUNCTION deliver.set_consumer_group_rate(queue_name text, consumer_group text,
                                                per_second double precision,
                                                burst int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
    g deliver.consumer_group := deliver._flow_group(q, consumer_group);
BEGIN
    IF per_second IS NULL THEN
        IF burst IS NOT NULL THEN
            RAISE EXCEPTION 'burst needs a rate'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass per_second too, or neither to remove the limit.';
        END IF;
    ELSE
        IF NOT (per_second > 0 AND per_second <= 1000000) THEN
            RAISE EXCEPTION 'per_second must be greater than 0 and at most 1000000'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s.', per_second);
        END IF;
        IF burst IS NULL THEN
            burst := greatest(1, ceil(per_second))::int;
        ELSIF burst < 1 OR burst > 1000000 THEN
            RAISE EXCEPTION 'burst must be between 1 and 1000000'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s.', burst);
        END IF;
    END IF;
    UPDATE deliver.consumer_group x SET rate_per_second = per_second, rate_burst = burst
     WHERE x.group_id = g.group_id;
    PERFORM deliver._catalog_changed(q.queue_id, 'flow', g.group_id);
END $$;

-- FIFO queues: how many messages of one ordering key may be in flight
-- (leased or waiting for redelivery) at once; 1 (the default) is one at a
-- time.  Receives that start after the commit apply it.
CREATE FUNCTION deliver.set_fifo_key_limit(queue_name text, max_in_flight_per_key int)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    IF max_in_flight_per_key IS NULL THEN
        RAISE EXCEPTION 'max_in_flight_per_key must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_in_flight_per_key < 1 OR max_in_flight_per_key > 10000 THEN
        RAISE EXCEPTION 'max_in_flight_per_key must be between 1 and 10000'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got %s.', max_in_flight_per_key);
    END IF;
    IF NOT q.fifo THEN
        RAISE EXCEPTION 'queue "%" is not a FIFO queue', q.queue_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Messages of a key are held back only in a FIFO queue (create_queue(..., fifo => true)).';
    END IF;
    UPDATE deliver.queue x SET fifo_key_limit = max_in_flight_per_key WHERE x.queue_id = q.queue_id;
    PERFORM deliver._catalog_changed(q.queue_id);
END $$;
