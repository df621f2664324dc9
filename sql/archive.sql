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

-- Send archived messages again to one consumer group, as new messages
-- keeping their time of first sending, ordering key, headers and payload:
-- those enqueued at or after since (NULL: all), with ids after after_id, by
-- id, at most max_messages per call.  The archive keeps its copies.
-- last_id is the last id replayed (NULL: none): pass it as the next call's
-- after_id to go on.  Not for PUBLIC (sql/privileges.sql).
CREATE FUNCTION deliver.replay_archive(queue_name text, consumer_group text,
                                       since timestamptz DEFAULT NULL,
                                       after_id bigint DEFAULT 0,
                                       max_messages int DEFAULT 100,
                                       OUT replayed bigint, OUT last_id bigint)
    AS 'MODULE_PATHNAME', 'deliver_replay_archive' LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
