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
