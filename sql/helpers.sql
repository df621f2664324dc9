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

-- Lock a queue for drop_queue or purge_queue: its catalog row first (as
-- maintenance and grants do), then its tables in the order every other
-- function takes them: each segment's done table and segment (receive
-- scans them so), then the delayed messages, dead letters, idempotency
-- keys and archive (a send locks its segment or the delayed table before
-- the keys).  Taking them in that order, no deadlock can arise with
-- senders, receivers and long polls.
CREATE FUNCTION deliver._lock_queue(q deliver.queue) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM deliver.queue x WHERE x.queue_id = q.queue_id FOR UPDATE;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE',
        (SELECT string_agg(format('deliver.%I, deliver.%I', format('q%s_done%s', q.queue_id, s),
                                  format('q%s_s%s', q.queue_id, s)), ', ' ORDER BY s)
           FROM generate_series(0, q.segments - 1) AS s)
        || format(', deliver.%I, deliver.%I, deliver.%I, deliver.%I',
                  format('q%s_delayed', q.queue_id), format('q%s_dead', q.queue_id),
                  format('q%s_dedup', q.queue_id), format('q%s_archive', q.queue_id)));
END $$;
