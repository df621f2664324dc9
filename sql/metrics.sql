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
