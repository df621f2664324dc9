--
-- Catalog
--
-- Each queue owns a small set of tables named after its numeric id (never
-- after the user's queue name), so user input never reaches SQL text:
--   deliver.q<id>_s0 .. q<id>_s<n-1>  message segments (append-only, rotated)
--   deliver.q<id>_done0 .. _done<n-1> finish records (acks, at-most-once
--                                     consumption, dead-letter moves), one
--                                     table per segment, rotated with it
--   deliver.q<id>_dead               dead letters
--   deliver.q<id>_delayed            messages not yet due
--   deliver.q<id>_dedup              idempotency keys
--   deliver.q<id>_seq                message ids
--

-- The script runs as a superuser, with the search_path CREATE EXTENSION
-- gives it (the target schema, public, then pg_temp), where a database
-- owner may have put functions and operators: an operator of public that
-- matches two types exactly would win over pg_catalog's that needs a cast,
-- in a CHECK constraint for good, or in a DO block at once.  Nothing here
-- needs public: pg_catalog only, and LOCAL (CREATE EXTENSION restores it
-- after the script; a plain SET would outlast the script).
SET LOCAL search_path = pg_catalog, pg_temp;

-- The schema belongs to the extension: DROP EXTENSION removes every queue.
CREATE SCHEMA deliver;

CREATE TABLE deliver.queue (
    queue_id            serial PRIMARY KEY,
    queue_name          text NOT NULL UNIQUE,
    guarantee           text NOT NULL
                        CHECK (guarantee IN ('at_most_once', 'at_least_once', 'exactly_once')),
    visibility_timeout  interval NOT NULL,
    max_attempts        int NOT NULL,
    fifo                boolean NOT NULL,
    dedup_window        interval NOT NULL,
    retry_base          interval NOT NULL,
    retry_max           interval NOT NULL,
    segments            int NOT NULL DEFAULT 3,
    -- finished messages are copied to q<id>_archive and kept this long
    -- (NULL: no archive)
    archive_retention   interval,
    created_snapshot    pg_snapshot NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- who may send (INSERT, 'a') and receive (SELECT, 'r'): grant_queue and
    -- revoke_queue edit it; the queue's tables are never granted to anyone
    acl                 aclitem[] NOT NULL DEFAULT '{}',
    -- FIFO queues: how many messages of one ordering key may be in flight
    -- at once (set_fifo_key_limit; 1: one at a time)
    fifo_key_limit      int NOT NULL DEFAULT 1 CHECK (fifo_key_limit BETWEEN 1 AND 10000),
    -- expiry: a message's deadline is least(its expires_at, enqueued_at +
    -- message_ttl) (NULL: no ttl); an expired message is dead-lettered with
    -- reason 'expired' or dropped (on_expire)
    message_ttl         interval,
    on_expire           text NOT NULL DEFAULT 'dead_letter'
                        CHECK (on_expire IN ('dead_letter', 'drop')),
    -- depth limit: a send that would take the depth over max_depth (NULL:
    -- none) is refused (overflow 'reject') or first moves the oldest
    -- messages to the dead letters ('drop_oldest')
    max_depth           bigint CHECK (max_depth > 0),
    overflow            text NOT NULL DEFAULT 'reject' CHECK (overflow IN ('reject', 'drop_oldest')),
    -- acks that are their transaction's only work: 'durable' waits for the
    -- WAL flush; 'async' commits them without waiting (at_least_once only:
    -- after a crash an acked message may be delivered again)
    ack_commit          text NOT NULL DEFAULT 'durable' CHECK (ack_commit IN ('durable', 'async')),
    -- priorities: receive hands out a message of higher priority (send's
    -- priority, 0..9) first among those it has read ahead
    -- (deliver.priority_window), a waiting one rising a level per
    -- deliver.priority_aging; false: commit order, sends with a priority
    -- refused
    priorities          boolean NOT NULL DEFAULT false
);
-- The push output plugin (logical decoding) reads queue and group names
-- through its historic snapshot, which needs user catalog tables.
ALTER TABLE deliver.queue SET (user_catalog_table = true);

-- The segments of each queue: one 'active' takes new messages; 'closing'
-- was switched away from; 'closed' knows the xid below which all its
-- writers were (closed_xmax); 'empty' was truncated and can become active.
CREATE TABLE deliver.segment (
    queue_id    int NOT NULL REFERENCES deliver.queue ON DELETE CASCADE,
    seg         int NOT NULL,
    state       text NOT NULL CHECK (state IN ('active', 'closing', 'closed', 'empty')),
    closed_xmax xid8,
    -- a WAL position after the commit of every writer of a closed segment
    -- (set once they all finished): push slots must confirm past it
    closed_lsn  pg_lsn,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_id, seg)
);

CREATE TABLE deliver.consumer_group (
    group_id        serial PRIMARY KEY,
    queue_id        int NOT NULL REFERENCES deliver.queue ON DELETE CASCADE,
    group_name      text NOT NULL,
    -- messages visible in this snapshot are not for this group
    start_snapshot  pg_snapshot NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- flow control (sql/flow.sql): a paused group receives nothing; a rate
    -- limits what its receives hand out (a token bucket of rate_burst)
    paused          boolean NOT NULL DEFAULT false,
    rate_per_second double precision
                    CHECK (rate_per_second > 0::float8 AND rate_per_second <= 1000000::float8),
    rate_burst      int CHECK (rate_burst BETWEEN 1 AND 1000000),
    CHECK ((rate_per_second IS NULL) = (rate_burst IS NULL)),
    UNIQUE (queue_id, group_name)
);
ALTER TABLE deliver.consumer_group SET (user_catalog_table = true);

-- Push subscriptions: a logical replication slot with plugin deliver (named
-- like the subscription) streams the queue's messages; its confirmed LSN is
-- the subscription's durable position.
CREATE TABLE deliver.push_subscription (
    subscription_name text PRIMARY KEY,
    queue_id          int NOT NULL REFERENCES deliver.queue,
    consumer_group    text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- after a failover (logical slots are not replicated): the new slot's
    -- start, and the xid below which its backlog lies (restore_push_subscription)
    restored_lsn      pg_lsn,
    restored_xmax     xid8
);

-- Alert thresholds of a queue and whether each is crossed now; the
-- maintenance worker checks them (deliver._check_alerts).
CREATE TABLE deliver.alert (
    queue_id    int NOT NULL REFERENCES deliver.queue ON DELETE CASCADE,
    metric      text NOT NULL CHECK (metric IN ('oldest_age', 'depth', 'dead_letters')),
    threshold   numeric NOT NULL CHECK (threshold >= 0::numeric),
    firing      boolean NOT NULL DEFAULT false,
    value       numeric,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_id, metric)
);

-- pg_dump keeps the catalog rows (the queues' tables are not members)
SELECT pg_catalog.pg_extension_config_dump('deliver.queue', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.queue_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.consumer_group', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.segment', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.alert', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.consumer_group_group_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('deliver.push_subscription', '');

GRANT USAGE ON SCHEMA deliver TO PUBLIC;
GRANT SELECT ON deliver.queue, deliver.consumer_group, deliver.segment, deliver.alert,
                deliver.push_subscription TO PUBLIC;

-- Topic routing: deliver.publish sends to every queue with a binding whose
-- pattern matches the routing key (deliver.bind, deliver.unbind).
CREATE TABLE deliver.binding (
    pattern     text NOT NULL,
    queue_id    int NOT NULL REFERENCES deliver.queue ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pattern, queue_id)
);
CREATE INDEX binding_queue_id ON deliver.binding (queue_id);
SELECT pg_catalog.pg_extension_config_dump('deliver.binding', '');
GRANT SELECT ON deliver.binding TO PUBLIC;
