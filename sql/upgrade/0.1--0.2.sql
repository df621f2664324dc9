--
-- Upgrade 0.1 -> 0.2: the tables; the functions follow (sql/*.sql)
--

-- The script runs as a superuser, with the search_path CREATE EXTENSION
-- gives it (the target schema, public, then pg_temp), where a database
-- owner may have put functions and operators: an operator of public that
-- matches two types exactly would win over pg_catalog's that needs a cast,
-- in a CHECK constraint for good, or in a DO block at once.  Nothing here
-- needs public: pg_catalog only, and LOCAL (ALTER EXTENSION restores it
-- after the script; a plain SET would outlast the script).
SET LOCAL search_path = pg_catalog, pg_temp;

-- The one such constraint of 0.1, made again with pg_catalog's operator
-- (an install of 0.1 may have bound another).
ALTER TABLE deliver.alert DROP CONSTRAINT alert_threshold_check,
    ADD CONSTRAINT alert_threshold_check CHECK (threshold >= 0::numeric);

-- Queue privileges move from GRANTs on each queue's tables (which let a
-- grantee write them directly) to the queue's acl: INSERT on a segment was
-- the right to send, SELECT on it the right to receive.
ALTER TABLE deliver.queue ADD COLUMN acl aclitem[] NOT NULL DEFAULT '{}';

DO $upgrade$
DECLARE
    q      record;
    r      record;
    t      text;
    owner  oid := (SELECT relowner FROM pg_catalog.pg_class WHERE oid = 'deliver.queue'::pg_catalog.regclass);
BEGIN
    FOR q IN SELECT queue_id, segments FROM deliver.queue LOOP
        UPDATE deliver.queue x SET acl = coalesce((
            SELECT pg_catalog.array_agg(pg_catalog.format('%s=%s/%s', g.grantee::pg_catalog.regrole, g.privs,
                                                          owner::pg_catalog.regrole)::pg_catalog.aclitem)
              FROM (SELECT e.grantee,
                           pg_catalog.string_agg(CASE e.privilege_type WHEN 'INSERT' THEN 'a' ELSE 'r' END, ''
                                                 ORDER BY e.privilege_type) AS privs
                      FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) e
                     WHERE c.oid = pg_catalog.format('deliver.q%s_s0', q.queue_id)::pg_catalog.regclass
                       AND e.privilege_type IN ('INSERT', 'SELECT') AND e.grantee <> owner
                       AND e.grantee <> 0
                     GROUP BY e.grantee) g), '{}')
         WHERE x.queue_id = q.queue_id;
        -- nobody but the owner keeps a right on the queue's tables
        FOR t IN SELECT c.relname FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = 'deliver'::pg_catalog.regnamespace
                    AND c.relname ~ pg_catalog.format('^q%s_', q.queue_id) LOOP
            FOR r IN SELECT DISTINCT e.grantee FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) e
                      WHERE c.relnamespace = 'deliver'::pg_catalog.regnamespace AND c.relname = t
                        AND e.grantee <> owner LOOP
                EXECUTE pg_catalog.format('REVOKE ALL ON deliver.%I FROM %s', t,
                    CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::pg_catalog.regrole::text END);
            END LOOP;
        END LOOP;
    END LOOP;
END $upgrade$;

-- A push subscription restored after a failover (restore_push_subscription)
ALTER TABLE deliver.push_subscription ADD COLUMN restored_lsn pg_lsn, ADD COLUMN restored_xmax xid8;

-- Flow control of a consumer group (sql/flow.sql)
ALTER TABLE deliver.consumer_group
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN rate_per_second double precision
        CHECK (rate_per_second > 0::float8 AND rate_per_second <= 1000000::float8),
    ADD COLUMN rate_burst int CHECK (rate_burst BETWEEN 1 AND 1000000),
    ADD CHECK ((rate_per_second IS NULL) = (rate_burst IS NULL));

-- FIFO queues: messages of one ordering key in flight at once (sql/flow.sql)
ALTER TABLE deliver.queue
    ADD COLUMN fifo_key_limit int NOT NULL DEFAULT 1 CHECK (fifo_key_limit BETWEEN 1 AND 10000);

-- Message expiry: the queue's ttl and what happens to expired messages;
-- each message's own deadline (send's expires_at) and priority in the
-- segments and the delayed table.  The depth limit: max_depth and overflow.
ALTER TABLE deliver.queue ADD COLUMN message_ttl interval,
    ADD COLUMN on_expire text NOT NULL DEFAULT 'dead_letter'
        CHECK (on_expire IN ('dead_letter', 'drop')),
    ADD COLUMN max_depth bigint CHECK (max_depth > 0),
    ADD COLUMN overflow text NOT NULL DEFAULT 'reject' CHECK (overflow IN ('reject', 'drop_oldest'));

DO $upgrade$
DECLARE
    q record;
    s int;
BEGIN
    FOR q IN SELECT queue_id, segments FROM deliver.queue LOOP
        FOR s IN 0 .. q.segments - 1 LOOP
            EXECUTE pg_catalog.format('ALTER TABLE deliver.%I ADD COLUMN expires_at timestamptz, '
                                      'ADD COLUMN priority smallint',
                                      pg_catalog.format('q%s_s%s', q.queue_id, s));
        END LOOP;
        EXECUTE pg_catalog.format('ALTER TABLE deliver.%I ADD COLUMN expires_at timestamptz, '
                                  'ADD COLUMN priority smallint',
                                  pg_catalog.format('q%s_delayed', q.queue_id));
    END LOOP;
END $upgrade$;

-- How an ack that is its transaction's only work commits: 'durable' (waits
-- for the WAL flush) or 'async' (sql/admin.sql, src/ackcommit.c).
ALTER TABLE deliver.queue ADD COLUMN ack_commit text NOT NULL DEFAULT 'durable'
    CHECK (ack_commit IN ('durable', 'async'));

-- Priorities: send's priority in the segments and the delayed table (added
-- above), the queue's switch (sql/priorities.sql).
ALTER TABLE deliver.queue ADD COLUMN priorities boolean NOT NULL DEFAULT false;

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

-- Every function of 0.1 is dropped and created anew below.
DO $upgrade$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT d.objid::regprocedure FROM pg_catalog.pg_depend d
              WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'deliver') LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s', f);
    END LOOP;
END $upgrade$;
