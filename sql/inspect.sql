--
-- Inspection: deleting single messages
--

-- Remove a message that some consumer group has not finished: no group gets
-- it (again); a lease on it ends; a delayed one is deleted.  Finished with
-- the caller's transaction, durably (it stays gone after a restart).  false
-- when no group had it unfinished.  Not for PUBLIC (sql/privileges.sql),
-- and the caller must also be allowed to receive from the queue.
CREATE FUNCTION deliver.delete_message(queue_name text, message_id bigint)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'deliver_delete_message' LANGUAGE C VOLATILE;

-- Move a consumer group's position (seek): to 'earliest' (every message
-- still stored is delivered again), 'latest' (every message stored now is
-- finished for it), a message id or a time (text castable to timestamptz):
-- the transaction that sent the first stored message at or after it and
-- every later one are delivered (again), earlier ones are finished for the
-- group.  The group's finish records and restart points are dropped and
-- its leases end when the transaction commits; dead letters stay.  Not for
-- PUBLIC (sql/privileges.sql).
CREATE FUNCTION deliver.reset_consumer_group(queue_name text, consumer_group text, "to" text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q      deliver.queue := deliver._queue(queue_name);
    gid    int;
    segs   text;
    t      xid8;
    oldest record;
    ts     timestamptz;
    id     bigint;
    s      pg_snapshot;
    start  pg_snapshot;
    d      text;
BEGIN
    IF consumer_group IS NULL OR "to" IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN consumer_group IS NULL THEN 'consumer_group' ELSE 'to' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT g.group_id INTO gid FROM deliver.consumer_group g
     WHERE g.queue_id = q.queue_id AND g.group_name = consumer_group FOR UPDATE;
    IF gid IS NULL THEN
        RAISE EXCEPTION 'consumer group "%" does not exist on queue "%"', left(consumer_group, 80), q.queue_name
            USING ERRCODE = 'undefined_object';
    END IF;
    -- no finish record of the queue is written until this ends (acks and
    -- restart points wait), so none from before the reset survives it
    EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE',
        (SELECT string_agg(format('deliver.%I', format('q%s_done%s', q.queue_id, n)), ', ' ORDER BY n)
           FROM generate_series(0, q.segments - 1) AS n));
    segs := (SELECT string_agg(format('SELECT txid, message_id, enqueued_at FROM deliver.%I',
                                      format('q%s_s%s', q.queue_id, n)), ' UNION ALL ')
               FROM generate_series(0, q.segments - 1) AS n);

    IF "to" = 'earliest' THEN
        start := q.created_snapshot;
    ELSIF "to" = 'latest' THEN
        start := deliver._latest_snapshot();
    ELSE
        IF "to" ~ '^-?[0-9]{1,19}$' THEN
            id := "to"::bigint;
        ELSE
            BEGIN
                ts := "to"::timestamptz;
            EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow
                           OR invalid_parameter_value OR numeric_value_out_of_range THEN
                RAISE EXCEPTION 'invalid position "%"', left("to", 80)
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Use earliest, latest, a message id or a time (timestamptz).';
            END;
        END IF;
        EXECUTE format('SELECT min(message_id) AS id, min(enqueued_at) AS at FROM (%s) m', segs) INTO oldest;
        IF id IS NOT NULL AND oldest.id IS NOT NULL AND id < oldest.id THEN
            RAISE EXCEPTION 'message % is older than what queue "%" stores', id, q.queue_name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The oldest message stored is %s.', oldest.id),
                      HINT = 'Use earliest to deliver every stored message again.';
        END IF;
        IF ts IS NOT NULL AND oldest.at IS NOT NULL AND ts < oldest.at THEN
            RAISE EXCEPTION 'time % is older than what queue "%" stores', ts, q.queue_name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The oldest message stored was sent at %s.', oldest.at),
                      HINT = 'Use earliest to deliver every stored message again.';
        END IF;
        IF id IS NOT NULL THEN
            EXECUTE format('SELECT min(txid) FROM (%s) m WHERE message_id >= $1', segs) INTO t USING id;
        ELSE
            EXECUTE format('SELECT min(txid) FROM (%s) m WHERE enqueued_at >= $1', segs) INTO t USING ts;
        END IF;
        s := deliver._latest_snapshot();
        IF t IS NULL THEN
            start := s;             -- past every stored message: as latest
        ELSE
            -- finished: what committed below t; delivered: t and later, and
            -- what still runs below t (it commits later)
            start := format('%s:%s:%s', least(pg_snapshot_xmin(s), t), t,
                            (SELECT coalesce(string_agg(x::text, ',' ORDER BY x), '')
                               FROM pg_snapshot_xip(s) AS x WHERE x < t))::pg_snapshot;
        END IF;
    END IF;

    UPDATE deliver.consumer_group g SET start_snapshot = start WHERE g.group_id = gid;
    -- the group's finish records go, but for deleted messages
    -- (delete_message), which stay deleted: those are written again
    -- without their restart points
    FOR d IN SELECT format('q%s_done%s', q.queue_id, n) FROM generate_series(0, q.segments - 1) AS n LOOP
        EXECUTE format('WITH x AS (DELETE FROM deliver.%I WHERE group_id = $1 RETURNING kind, message_ids)
                        INSERT INTO deliver.%I (group_id, kind, message_ids)
                        SELECT $1, kind, message_ids FROM x WHERE kind = ''x''', d, d) USING gid;
    END LOOP;
    -- at commit: the group's leases end and it recovers from its new start
    PERFORM deliver._catalog_changed(q.queue_id, 'forget_group', gid);
END $$;
