--
-- Archive
--

-- Finished messages of a queue whose archive is on (alter_queue
-- archive_retention), oldest first; after_id pages through them.
-- For roles that may receive from the queue.
CREATE FUNCTION deliver.archived(queue_name text, max_messages int DEFAULT 100,
                                 after_id bigint DEFAULT 0)
RETURNS TABLE (message_id bigint, payload jsonb, headers jsonb, ordering_key text,
               enqueued_at timestamptz, archived_at timestamptz)
    AS 'MODULE_PATHNAME', 'deliver_archived' LANGUAGE C VOLATILE;
