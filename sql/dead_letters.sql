--
-- Dead letters
--

-- The oldest dead letters of one consumer group, or (NULL) of every group.
-- For roles that may receive from the queue.
CREATE FUNCTION deliver.dead_letters(queue_name text, consumer_group text DEFAULT NULL,
                                     max_messages int DEFAULT 100)
RETURNS TABLE (message_id bigint, group_name text, payload jsonb, headers jsonb,
               ordering_key text, attempts int, reason text, last_error text,
               enqueued_at timestamptz, dead_at timestamptz)
    AS 'MODULE_PATHNAME', 'deliver_dead_letters' LANGUAGE C VOLATILE;

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
