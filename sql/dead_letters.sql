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

-- Send dead letters back to the group they died in, as new messages (one
-- send per group, keeping each message's first enqueued_at).  message_ids
-- NULL means all of them.  With to_queue they are sent to that queue
-- instead (once per message, to every group there, as new messages; the
-- caller needs the right to send to it).  Returns how many dead letters were
-- redriven.
CREATE FUNCTION deliver.redrive(queue_name text, message_ids bigint[] DEFAULT NULL,
                                consumer_group text DEFAULT NULL, to_queue text DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'deliver_redrive' LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- Delete the dead letters of these messages for good (of one consumer
-- group, or NULL: of every group).  Returns how many were deleted.  Not for
-- PUBLIC (sql/privileges.sql), and the caller must also be allowed to
-- receive from the queue.
CREATE FUNCTION deliver.delete_dead_letters(queue_name text, message_ids bigint[],
                                            consumer_group text DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'deliver_delete_dead_letters' LANGUAGE C VOLATILE;
