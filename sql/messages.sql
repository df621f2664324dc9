--
-- C entry points
--

-- The latest snapshot as pg_snapshot (not the transaction's snapshot).
CREATE FUNCTION deliver._latest_snapshot() RETURNS pg_snapshot
    AS 'MODULE_PATHNAME', 'deliver_latest_snapshot' LANGUAGE C VOLATILE;

-- Tell every backend that the catalog changed (now and again at commit);
-- at commit, action 'reset' makes the queue's groups start over from their
-- durable state, 'forget' drops their shared state (queue dropped), and
-- 'forget_group' drops the shared state of group_id.
CREATE FUNCTION deliver._catalog_changed(queue_id int, action text DEFAULT 'none',
                                         group_id int DEFAULT 0) RETURNS void
    AS 'MODULE_PATHNAME', 'deliver_catalog_changed' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION deliver.send(
    queue_name      text,
    payload         jsonb,
    headers         jsonb DEFAULT NULL,
    ordering_key    text DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    delay           interval DEFAULT NULL,
    expires_at      timestamptz DEFAULT NULL,
    priority        int DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'deliver_send' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.send_batch(
    queue_name       text,
    payloads         jsonb[],
    headers          jsonb[] DEFAULT NULL,
    ordering_keys    text[] DEFAULT NULL,
    idempotency_keys text[] DEFAULT NULL,
    delay            interval DEFAULT NULL,
    expires_at       timestamptz DEFAULT NULL,
    priority         int DEFAULT NULL)
RETURNS bigint[]
    AS 'MODULE_PATHNAME', 'deliver_send_batch' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.receive(
    queue_name         text,
    max_messages       int DEFAULT 1,
    visibility_timeout interval DEFAULT NULL,
    wait               interval DEFAULT '0',
    consumer_group     text DEFAULT 'default')
RETURNS TABLE (
    message_id       bigint,
    delivery_id      bigint,
    payload          jsonb,
    headers          jsonb,
    ordering_key     text,
    attempt          int,
    enqueued_at      timestamptz,
    lease_expires_at timestamptz)
    AS 'MODULE_PATHNAME', 'deliver_receive' LANGUAGE C VOLATILE ROWS 100;

-- The next messages a receive of the consumer group would hand out (the
-- redeliveries due first, then the messages not delivered yet), without
-- leasing them: nothing of the group changes.  For roles that may receive
-- from the queue.
CREATE FUNCTION deliver.peek(queue_name text, max_messages int DEFAULT 10,
                             consumer_group text DEFAULT 'default')
RETURNS TABLE (message_id bigint, payload jsonb, headers jsonb, ordering_key text,
               attempt int, enqueued_at timestamptz, redelivery boolean)
    AS 'MODULE_PATHNAME', 'deliver_peek' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.ack(queue_name text, delivery_id bigint)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'deliver_ack' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.ack_batch(queue_name text, delivery_ids bigint[])
RETURNS int
    AS 'MODULE_PATHNAME', 'deliver_ack_batch' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.nack(
    queue_name  text,
    delivery_id bigint,
    error       text DEFAULT NULL,
    retry_after interval DEFAULT NULL,
    dead_letter boolean DEFAULT false)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'deliver_nack' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver.extend_lease(
    queue_name         text,
    delivery_id        bigint,
    visibility_timeout interval)
RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'deliver_extend_lease' LANGUAGE C VOLATILE;

-- Write every group's restart point; say which closed segments (given by
-- their closed_xmax) hold only finished messages.
CREATE FUNCTION deliver._checkpoint_groups(queue_id int, closed_xmax xid8[]) RETURNS boolean[]
    AS 'MODULE_PATHNAME', 'deliver_checkpoint_groups' LANGUAGE C VOLATILE STRICT;

-- Move delayed messages that came due into the active segment.
CREATE FUNCTION deliver._move_due(queue_name text) RETURNS void
    AS 'MODULE_PATHNAME', 'deliver_move_due' LANGUAGE C VOLATILE;

CREATE FUNCTION deliver._next_xid() RETURNS xid8
    AS 'MODULE_PATHNAME', 'deliver_next_xid' LANGUAGE C VOLATILE;

-- Per-group live state kept in shared memory.
CREATE FUNCTION deliver._group_state(
    group_id int,
    OUT backlog bigint, OUT in_flight bigint, OUT ready bigint,
    OUT blocked bigint, OUT oldest_enqueued_at timestamptz,
    OUT sent_total bigint, OUT acked_total bigint, OUT dead_total bigint)
    AS 'MODULE_PATHNAME', 'deliver_group_state' LANGUAGE C VOLATILE STRICT;

-- Expire leases, move messages out of attempts to the dead letters, wake
-- long polls when messages are ready (the maintenance worker's sweep).
-- Consumer groups nobody received from for deliver.idle_release give their
-- lease slots back (released).
CREATE FUNCTION deliver._sweep(queue_name text, max_dead int DEFAULT 1000,
    OUT expired bigint, OUT ready bigint, OUT dead_lettered bigint, OUT released bigint)
    AS 'MODULE_PATHNAME', 'deliver_sweep' LANGUAGE C VOLATILE;

-- The maintenance workers, one row per database in deliver.database.
CREATE FUNCTION deliver.worker_status()
RETURNS TABLE (database text, pid int, started_at timestamptz, last_run_at timestamptz,
               last_run_duration interval, runs bigint, errors bigint,
               expired_total bigint, dead_total bigint, released_total bigint,
               last_error text, last_error_at timestamptz)
    AS 'MODULE_PATHNAME', 'deliver_worker_status' LANGUAGE C VOLATILE;
