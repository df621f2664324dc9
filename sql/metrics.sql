--
-- Metrics
--

-- One row per consumer group of a queue, or (NULL) of every queue the
-- caller may read metrics of: roles that may receive from it, and members
-- of pg_monitor.  depth: messages waiting (not yet delivered, or due for
-- redelivery); oldest_age: how long the oldest unfinished message has
-- waited; the *_total counters count since the server started.
CREATE FUNCTION deliver.metrics(queue_name text DEFAULT NULL)
RETURNS TABLE (queue_name text, consumer_group text, depth bigint, in_flight bigint,
               delayed bigint, dead_letters bigint, oldest_age interval,
               sent_total bigint, acked_total bigint, dead_total bigint,
               worker_last_run timestamptz, worker_lag interval, worker_errors bigint)
    AS 'MODULE_PATHNAME', 'deliver_metrics' LANGUAGE C VOLATILE;

-- May the current user send, receive or do both ('send', 'receive', 'all')?
CREATE FUNCTION deliver.has_queue_privilege(queue_name text, privilege text)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'deliver_has_queue_privilege' LANGUAGE C STABLE;

-- The lease slots of the whole server (deliver.max_in_flight): how many are
-- free, how many of those are kept for queues below their reserve, the
-- reserve each queue in use may always hold, the most one queue may hold
-- (deliver.max_in_flight_per_queue), and the queues in use.
CREATE FUNCTION deliver.lease_slots(OUT total int, OUT free int, OUT reserved bigint,
                                    OUT reserve_per_queue int, OUT max_per_queue int,
                                    OUT queues int)
    AS 'MODULE_PATHNAME', 'deliver_lease_slots' LANGUAGE C VOLATILE;
