-- Privileges: a role may send to or receive from a queue only when granted
-- (grant_queue / revoke_queue); administration is not for PUBLIC.
\set VERBOSITY terse
\i test/helpers.psql
-- this file's try(sql) also masks the table names made from queue ids
CREATE OR REPLACE FUNCTION pg_temp.try(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || regexp_replace(regexp_replace(SQLERRM, '\d{12,}', '<id>', 'g'),
                                             '(table|sequence) q\d+_', '\1 q<id>_', 'g');
END $$;
CREATE ROLE regress_deliver_nobody;
CREATE ROLE regress_deliver_sender;
CREATE ROLE regress_deliver_receiver;
CREATE ROLE regress_deliver_both;
CREATE ROLE regress_deliver_admin;
CREATE ROLE "regress_deliver ""odd""; role";
SELECT deliver.create_queue('q08', retry_base => '0');
SELECT deliver.create_queue('q08_other');

--
-- administration functions are not executable by PUBLIC; the others are
--
SELECT f AS function, has_function_privilege('regress_deliver_nobody', f, 'EXECUTE') AS public_can_execute
  FROM unnest(ARRAY[
    'deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval)',
    'deliver.drop_queue(text)',
    'deliver.purge_queue(text)',
    'deliver.create_consumer_group(text, text, text)',
    'deliver.drop_consumer_group(text, text)',
    'deliver.grant_queue(text, text, text)',
    'deliver.revoke_queue(text, text, text)',
    'deliver.redrive(text, bigint[], text)',
    'deliver.maintain(text)',
    'deliver.send(text, jsonb, jsonb, text, text, interval)',
    'deliver.send_batch(text, jsonb[], jsonb[], text[], text[], interval)',
    'deliver.receive(text, int, interval, interval, text)',
    'deliver.ack(text, bigint)',
    'deliver.ack_batch(text, bigint[])',
    'deliver.nack(text, bigint, text, interval)',
    'deliver.extend_lease(text, bigint, interval)',
    'deliver.list_queues()',
    'deliver.list_consumer_groups(text)',
    'deliver.dead_letters(text, text, int)',
    'deliver.archived(text, int, bigint)',
    'deliver.metrics(text)',
    'deliver.has_queue_privilege(text, text)',
    'deliver.list_grants(text)',
    'deliver.worker_status()']) AS f;
-- no function that runs as its owner is open to PUBLIC
SELECT p.oid::regprocedure AS public_security_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'deliver'::regnamespace AND p.prosecdef
   AND has_function_privilege('regress_deliver_nobody', p.oid, 'EXECUTE');
-- and every one of them pins its search_path
SELECT p.oid::regprocedure AS definer_without_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'deliver'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%');

--
-- a role without grants can read the catalog and nothing else
--
SET ROLE regress_deliver_nobody;
SELECT queue_name, guarantee FROM deliver.list_queues() WHERE queue_name LIKE 'q08%' ORDER BY 1;
SELECT consumer_group FROM deliver.list_consumer_groups('q08');
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.send('q08', '{}')$$),
    ($$SELECT deliver.send('q08', '{}', delay => '1 hour')$$),
    ($$SELECT deliver.send_batch('q08', ARRAY['{}']::jsonb[])$$),
    ($$SELECT * FROM deliver.receive('q08')$$),
    ($$SELECT deliver.ack('q08', 1)$$),
    ($$SELECT deliver.ack_batch('q08', ARRAY[1]::bigint[])$$),
    ($$SELECT deliver.nack('q08', 1)$$),
    ($$SELECT deliver.extend_lease('q08', 1, '1 minute')$$),
    ($$SELECT * FROM deliver.metrics('q08')$$),
    ($$SELECT * FROM deliver.dead_letters('q08')$$),
    ($$SELECT deliver.create_queue('q08_mine')$$),
    ($$SELECT deliver.drop_queue('q08')$$),
    ($$SELECT deliver.purge_queue('q08')$$),
    ($$SELECT deliver.create_consumer_group('q08', 'mine')$$),
    ($$SELECT deliver.drop_consumer_group('q08', 'default')$$),
    ($$SELECT deliver.grant_queue('q08', 'regress_deliver_nobody')$$),
    ($$SELECT deliver.revoke_queue('q08', 'regress_deliver_nobody')$$),
    ($$SELECT deliver.redrive('q08')$$),
    ($$SELECT * FROM deliver.maintain('q08')$$),
    ($$SELECT deliver._catalog_changed(1)$$),
    ($$SELECT deliver._requeue(1, 1, now(), NULL, NULL, '{}')$$),
    ($$INSERT INTO deliver.queue (queue_name, guarantee, visibility_timeout, max_attempts, fifo,
                                  dedup_window, retry_base, retry_max, created_snapshot)
       VALUES ('q08_forged', 'at_most_once', '1 s', 1, false, '1 s', '0', '0', pg_current_snapshot())$$),
    ($$UPDATE deliver.queue SET max_attempts = 1000$$)) AS t(cmd);
-- nor the queue's tables directly
SELECT count(*) > 0 AS has_tables,
       count(*) FILTER (WHERE pg_temp.try(format('SELECT * FROM deliver.%I', c.relname)) NOT LIKE '42501 %') AS readable
  FROM deliver.queue q
  JOIN pg_class c ON c.relname ~ ('^q' || q.queue_id || '_') AND c.relkind = 'r'
                 AND c.relnamespace = 'deliver'::regnamespace
 WHERE q.queue_name = 'q08';
RESET ROLE;

--
-- grant_queue: 'send'
--
SELECT deliver.grant_queue('q08', 'regress_deliver_sender', 'send');
SET ROLE regress_deliver_sender;
SELECT deliver.send('q08', '{"from": "sender"}');
SELECT deliver.send_batch('q08', ARRAY['{"from": "sender", "batch": 1}', '{"from": "sender", "batch": 2}']::jsonb[]);
SELECT deliver.send('q08', '{"from": "sender", "idempotent": true}', idempotency_key => 'i1');
SELECT deliver.send('q08', '{"from": "sender", "idempotent": true}', idempotency_key => 'i1');
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver.receive('q08')$$),
    ($$SELECT deliver.ack('q08', 1)$$),
    ($$SELECT deliver.nack('q08', 1)$$),
    ($$SELECT deliver.extend_lease('q08', 1, '1 minute')$$),
    ($$SELECT * FROM deliver.metrics('q08')$$),
    ($$SELECT deliver.send('q08_other', '{}')$$),
    ($$SELECT deliver.purge_queue('q08')$$)) AS t(cmd);
RESET ROLE;

--
-- grant_queue: 'receive'
--
SELECT deliver.grant_queue('q08', 'regress_deliver_receiver', 'receive');
SET ROLE regress_deliver_receiver;
SELECT message_id, payload, deliver.ack('q08', delivery_id) AS acked FROM deliver.receive('q08');
SELECT message_id, deliver.nack('q08', delivery_id, 'not now', '0') AS nacked FROM deliver.receive('q08');
SELECT message_id, attempt, deliver.extend_lease('q08', delivery_id, '1 minute') IS NOT NULL AS extended,
       deliver.ack('q08', delivery_id) AS acked
  FROM deliver.receive('q08');
WITH r AS (SELECT * FROM deliver.receive('q08', 10))
SELECT array_agg(message_id ORDER BY message_id) AS ids, deliver.ack_batch('q08', array_agg(delivery_id)) AS acked
  FROM r;
RESET ROLE;
-- a receive-only role gets delayed messages when they come due
SET ROLE regress_deliver_sender;
SELECT deliver.send('q08', '{"from": "sender", "delayed": true}', delay => '300 milliseconds') IS NOT NULL AS sent;
RESET ROLE;
SET ROLE regress_deliver_receiver;
SELECT count(*) AS delayed_received FROM deliver.receive('q08', 10, wait => '5 seconds');
SELECT consumer_group, depth, in_flight, delayed, dead_letters FROM deliver.metrics('q08');
SELECT count(*) AS dead FROM deliver.dead_letters('q08');
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.send('q08', '{}')$$),
    ($$SELECT deliver.send('q08', '{}', delay => '1 hour')$$),
    ($$SELECT deliver.send_batch('q08', ARRAY['{}']::jsonb[])$$),
    ($$SELECT * FROM deliver.receive('q08_other')$$),
    ($$SELECT deliver.redrive('q08')$$),
    ($$SELECT deliver.purge_queue('q08')$$)) AS t(cmd);
RESET ROLE;
-- a receiver cannot slip messages into the queue's tables either
SELECT format('INSERT INTO deliver.%I (txid, message_id, enqueued_at, payload)
               VALUES (pg_current_xact_id(), 1000, now(), %L)', c.relname, '{"forged": true}') AS forge
  FROM deliver.queue q
  JOIN pg_class c ON c.relname = format('q%s_s0', q.queue_id) AND c.relnamespace = 'deliver'::regnamespace
 WHERE q.queue_name = 'q08' \gset
SET ROLE regress_deliver_receiver;
SELECT pg_temp.try(:'forge');
RESET ROLE;
SELECT message_id, payload FROM deliver.receive('q08', 10);
-- nor forge a finish record (which would make its consumer group skip
-- messages), nor claim an idempotency key for ever (which would swallow
-- another producer's exactly-once sends), nor read the tables
SELECT q.queue_id AS qid FROM deliver.queue q WHERE q.queue_name = 'q08' \gset
SET ROLE regress_deliver_receiver;
SELECT pg_temp.try(format($$INSERT INTO deliver.q%s_done0 (group_id, kind, message_ids)
                           VALUES (1, 'a', ARRAY[1, 2, 3])$$, :qid));
SELECT pg_temp.try(format($$SELECT * FROM deliver.q%s_dead$$, :qid));
RESET ROLE;
SET ROLE regress_deliver_sender;
SELECT pg_temp.try(format($$INSERT INTO deliver.q%s_dedup VALUES ('k', 1, 'infinity')$$, :qid));
SELECT pg_temp.try(format($$UPDATE deliver.q%s_dedup SET expires_at = 'infinity'$$, :qid));
SELECT pg_temp.try(format($$SELECT nextval('deliver.q%s_seq')$$, :qid));
RESET ROLE;
-- no role but the owner holds any privilege on any of deliver's tables,
-- whatever was granted through grant_queue
SELECT c.relname, e.grantee::regrole, e.privilege_type
  FROM pg_class c, aclexplode(c.relacl) e
 WHERE c.relnamespace = 'deliver'::regnamespace
   AND e.grantee <> c.relowner
   AND NOT (c.relname IN ('queue', 'consumer_group', 'segment', 'alert', 'push_subscription')
            AND e.grantee = 0 AND e.privilege_type = 'SELECT');
SELECT * FROM deliver.list_grants('q08');
-- a role that inherits a grantee's privileges has its rights; one that
-- does not (NOINHERIT) has them after SET ROLE only
CREATE ROLE regress_deliver_member IN ROLE regress_deliver_receiver;
CREATE ROLE regress_deliver_noinherit NOINHERIT IN ROLE regress_deliver_receiver;
SET ROLE regress_deliver_member;
SELECT deliver.has_queue_privilege('q08', 'receive') AS receive,
       deliver.has_queue_privilege('q08', 'send') AS send,
       deliver.has_queue_privilege('q08', 'all') AS "all";
RESET ROLE;
SET ROLE regress_deliver_noinherit;
SELECT deliver.has_queue_privilege('q08', 'receive') AS receive;
SELECT pg_temp.try($$SELECT * FROM deliver.receive('q08')$$);
RESET ROLE;
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.has_queue_privilege('q08', 'write')$$),
    ($$SELECT deliver.has_queue_privilege('q08', NULL)$$),
    ($$SELECT deliver.has_queue_privilege('q08_nowhere', 'send')$$)) AS t(cmd);
-- metrics: for receivers and for members of pg_monitor; metrics() of every
-- queue shows those the caller may see
CREATE ROLE regress_deliver_monitor IN ROLE pg_monitor;
SET ROLE regress_deliver_monitor;
SELECT queue_name, consumer_group FROM deliver.metrics() WHERE queue_name LIKE 'q08%' ORDER BY 1, 2;
SELECT count(*) > 0 AS sees_worker FROM deliver.worker_status();
RESET ROLE;
SET ROLE regress_deliver_receiver;
SELECT queue_name, consumer_group FROM deliver.metrics() WHERE queue_name LIKE 'q08%' ORDER BY 1, 2;
SELECT pg_temp.try($$SELECT * FROM deliver.worker_status()$$);
RESET ROLE;
SET ROLE regress_deliver_nobody;
SELECT count(*) AS visible FROM deliver.metrics() WHERE queue_name LIKE 'q08%';
RESET ROLE;
DROP ROLE regress_deliver_member;
DROP ROLE regress_deliver_noinherit;
DROP ROLE regress_deliver_monitor;

--
-- grant_queue: 'all' (the default) on an exactly-once queue, and a role name
-- that needs quoting
--
SELECT deliver.create_queue('q08_eo', 'exactly_once');
SELECT deliver.grant_queue('q08_eo', 'regress_deliver_both');
SELECT deliver.grant_queue('q08_eo', 'regress_deliver "odd"; role', 'all');
SET ROLE regress_deliver_both;
SELECT deliver.send('q08_eo', '{"from": "both"}', idempotency_key => 'b1');
SELECT deliver.send('q08_eo', '{"from": "both"}', idempotency_key => 'b1');
SELECT message_id, payload, deliver.ack('q08_eo', delivery_id) AS acked FROM deliver.receive('q08_eo');
RESET ROLE;
SET ROLE "regress_deliver ""odd""; role";
SELECT deliver.send('q08_eo', '{"from": "odd"}', idempotency_key => 'o1') IS NOT NULL AS sent;
SELECT payload, deliver.ack('q08_eo', delivery_id) AS acked FROM deliver.receive('q08_eo');
RESET ROLE;
-- grants on one queue say nothing about another
SET ROLE regress_deliver_both;
SELECT pg_temp.try($$SELECT deliver.send('q08', '{}')$$);
RESET ROLE;

--
-- revoke_queue
--
SELECT deliver.send('q08', '{"n": "leased by receiver"}') IS NOT NULL AS sent;
SET ROLE regress_deliver_receiver;
SELECT delivery_id AS d FROM deliver.receive('q08') \gset
RESET ROLE;
SELECT deliver.revoke_queue('q08', 'regress_deliver_sender');
SELECT deliver.revoke_queue('q08', 'regress_deliver_receiver');
SELECT deliver.revoke_queue('q08_eo', 'regress_deliver "odd"; role');
SET ROLE regress_deliver_sender;
SELECT pg_temp.try($$SELECT deliver.send('q08', '{}')$$);
RESET ROLE;
SET ROLE regress_deliver_receiver;
SELECT pg_temp.try($$SELECT * FROM deliver.receive('q08')$$);
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q08', :d));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q08', :d));
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q08', :d, '1 minute'));
SELECT pg_temp.try($$SELECT * FROM deliver.metrics('q08')$$);
RESET ROLE;
SET ROLE "regress_deliver ""odd""; role";
SELECT pg_temp.try($$SELECT deliver.send('q08_eo', '{}', idempotency_key => 'o2')$$);
RESET ROLE;
-- the revoked receiver's lease is still there for others
SELECT deliver.ack('q08', :d);
-- revoking a role that was never granted is harmless
SELECT deliver.revoke_queue('q08', 'regress_deliver_nobody');
-- a grant can be narrowed by revoking part of it
SELECT deliver.grant_queue('q08', 'regress_deliver_sender', 'all');
SELECT deliver.revoke_queue('q08', 'regress_deliver_sender', 'receive');
SELECT * FROM deliver.list_grants('q08');
SET ROLE regress_deliver_sender;
SELECT deliver.send('q08', '{"n": "sender again"}') > 0 AS sent;
SELECT pg_temp.try($$SELECT * FROM deliver.receive('q08')$$);
RESET ROLE;

-- bad arguments
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.grant_queue('q08', 'regress_deliver_missing')$$),
    ($$SELECT deliver.grant_queue('q08', NULL)$$),
    ($$SELECT deliver.grant_queue('q08', 'regress_deliver_sender', 'write')$$),
    ($$SELECT deliver.grant_queue('q08', 'regress_deliver_sender', NULL)$$),
    ($$SELECT deliver.grant_queue('q08_nowhere', 'regress_deliver_sender')$$),
    ($$SELECT deliver.grant_queue(NULL, 'regress_deliver_sender')$$),
    ($$SELECT deliver.revoke_queue('q08', 'regress_deliver_missing')$$),
    ($$SELECT deliver.revoke_queue('q08', NULL)$$),
    ($$SELECT deliver.revoke_queue('q08', 'regress_deliver_sender', 'write')$$),
    ($$SELECT deliver.revoke_queue('q08_nowhere', 'regress_deliver_sender')$$),
    ($$SELECT deliver.revoke_queue(NULL, 'regress_deliver_sender')$$)) AS t(cmd);

--
-- administration can be granted: the admin functions run as their owner
--
GRANT EXECUTE ON FUNCTION deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval),
                          deliver.drop_queue(text), deliver.grant_queue(text, text, text)
   TO regress_deliver_admin;
SET ROLE regress_deliver_admin;
SELECT deliver.create_queue('q08_admin', 'at_most_once');
SELECT deliver.grant_queue('q08_admin', 'regress_deliver_admin');
SELECT deliver.send('q08_admin', '{"admin": true}');
SELECT message_id, payload FROM deliver.receive('q08_admin');
SELECT pg_temp.try($$SELECT deliver.purge_queue('q08_admin')$$);
SELECT deliver.drop_queue('q08_admin');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval),
                           deliver.drop_queue(text), deliver.grant_queue(text, text, text)
    FROM regress_deliver_admin;

SELECT deliver.drop_queue('q08');
SELECT deliver.drop_queue('q08_other');
SELECT deliver.drop_queue('q08_eo');
DROP ROLE regress_deliver_nobody;
DROP ROLE regress_deliver_sender;
DROP ROLE regress_deliver_receiver;
DROP ROLE regress_deliver_both;
DROP ROLE regress_deliver_admin;
DROP ROLE "regress_deliver ""odd""; role";
