-- Privileges: a role may send to or receive from a queue only when granted
-- (grant_queue / revoke_queue); administration is not for PUBLIC; no role
-- but the owner touches deliver's tables.
\ir ../helpers.psql
SELECT plan(208);

CREATE ROLE regress_deliver_nobody;
CREATE ROLE regress_deliver_sender;
CREATE ROLE regress_deliver_receiver;
CREATE ROLE regress_deliver_both;
CREATE ROLE regress_deliver_admin;
CREATE ROLE "regress_deliver ""odd""; role";
SELECT lives_ok($$SELECT deliver.create_queue('priv', retry_base => '0')$$, 'create queue priv');
SELECT lives_ok($$SELECT deliver.create_queue('priv_other')$$, 'create queue priv_other');

--
-- administration functions are not executable by PUBLIC; the others are
--
SELECT is(has_function_privilege('regress_deliver_nobody', f, 'EXECUTE'), public,
          f || CASE WHEN public THEN ' is for every role' ELSE ' is not for PUBLIC' END)
  FROM (VALUES
    ('deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval, interval, text, bigint, text, text, boolean)', false),
    ('deliver.drop_queue(text)', false),
    ('deliver.purge_queue(text)', false),
    ('deliver.create_consumer_group(text, text, text)', false),
    ('deliver.drop_consumer_group(text, text)', false),
    ('deliver.grant_queue(text, text, text)', false),
    ('deliver.revoke_queue(text, text, text)', false),
    ('deliver.redrive(text, bigint[], text, text)', false),
    ('deliver.delete_dead_letters(text, bigint[], text)', false),
    ('deliver.maintain(text)', false),
    ('deliver.send(text, jsonb, jsonb, text, text, interval, timestamptz, int)', true),
    ('deliver.send_batch(text, jsonb[], jsonb[], text[], text[], interval, timestamptz, int)', true),
    ('deliver.receive(text, int, interval, interval, text)', true),
    ('deliver.ack(text, bigint)', true),
    ('deliver.ack_batch(text, bigint[])', true),
    ('deliver.nack(text, bigint, text, interval, boolean)', true),
    ('deliver.extend_lease(text, bigint, interval)', true),
    ('deliver.list_queues()', true),
    ('deliver.list_consumer_groups(text)', true),
    ('deliver.dead_letters(text, text, int)', true),
    ('deliver.peek(text, int, text)', true),
    ('deliver.archived(text, int, bigint)', true),
    ('deliver.metrics(text)', true),
    ('deliver.has_queue_privilege(text, text)', true),
    ('deliver.list_grants(text)', true),
    ('deliver.worker_status()', false),
    ('deliver.pause_consumer_group(text, text)', false),
    ('deliver.resume_consumer_group(text, text)', false),
    ('deliver.set_consumer_group_rate(text, text, double precision, int)', false),
    ('deliver.set_fifo_key_limit(text, int)', false),
    ('deliver.delete_message(text, bigint)', false),
    ('deliver.reset_consumer_group(text, text, text)', false),
    ('deliver.replay_archive(text, text, timestamptz, bigint, int)', false),
    -- (the trigger of deliver.binding: attached to a role's own table it would
    -- make every backend recompile the bindings at each statement)
    ('deliver._bindings_changed()', false)) AS t(f, public);
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                   WHERE p.pronamespace = 'deliver'::regnamespace AND p.prosecdef
                     AND has_function_privilege('regress_deliver_nobody', p.oid, 'EXECUTE')$$,
                'no function that runs as its owner is open to PUBLIC');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                   WHERE p.pronamespace = 'deliver'::regnamespace AND p.prosecdef
                     AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%')$$,
                'every function that runs as its owner pins its search_path');

--
-- a role without grants can read the catalog and nothing else
--
SET ROLE regress_deliver_nobody;
SELECT results_eq($$SELECT queue_name, guarantee FROM deliver.list_queues() WHERE queue_name LIKE 'priv%' ORDER BY 1$$,
                  $$VALUES ('priv'::text, 'at_least_once'::text), ('priv_other', 'at_least_once')$$,
                  'a role without grants lists the queues');
SELECT results_eq($$SELECT consumer_group FROM deliver.list_consumer_groups('priv')$$,
                  ARRAY['default'], 'and their consumer groups');
SELECT throws_ok(cmd, '42501', msg, 'without grants: ' || regexp_replace(cmd, '\s+', ' ', 'g')) FROM (VALUES
    ($$SELECT deliver.send('priv', '{}')$$, 'permission denied to send to queue "priv"'),
    ($$SELECT deliver.send('priv', '{}', delay => '1 hour')$$, 'permission denied to send to queue "priv"'),
    ($$SELECT deliver.send_batch('priv', ARRAY['{}']::jsonb[])$$, 'permission denied to send to queue "priv"'),
    ($$SELECT * FROM deliver.receive('priv')$$, 'permission denied to receive from queue "priv"'),
    ($$SELECT deliver.ack('priv', 1)$$, 'permission denied to ack messages of queue "priv"'),
    ($$SELECT deliver.ack_batch('priv', ARRAY[1]::bigint[])$$, 'permission denied to ack messages of queue "priv"'),
    ($$SELECT deliver.nack('priv', 1)$$, 'permission denied to nack messages of queue "priv"'),
    ($$SELECT deliver.extend_lease('priv', 1, '1 minute')$$, 'permission denied to extend leases of queue "priv"'),
    ($$SELECT * FROM deliver.metrics('priv')$$, 'permission denied to read metrics of queue "priv"'),
    ($$SELECT * FROM deliver.dead_letters('priv')$$, 'permission denied to read dead letters of queue "priv"'),
    ($$SELECT * FROM deliver.peek('priv')$$, 'permission denied to peek at queue "priv"'),
    -- (the right is checked before the group: no probing of group names)
    ($$SELECT * FROM deliver.peek('priv', 1, 'no_such_group')$$, 'permission denied to peek at queue "priv"'),
    ($$SELECT deliver.delete_dead_letters('priv', ARRAY[1]::bigint[])$$, 'permission denied for function delete_dead_letters'),
    ($$SELECT deliver.pause_consumer_group('priv')$$, 'permission denied for function pause_consumer_group'),
    ($$SELECT deliver.resume_consumer_group('priv')$$, 'permission denied for function resume_consumer_group'),
    ($$SELECT deliver.set_consumer_group_rate('priv', 'default', 1)$$, 'permission denied for function set_consumer_group_rate'),
    ($$SELECT deliver.set_fifo_key_limit('priv', 2)$$, 'permission denied for function set_fifo_key_limit'),
    ($$SELECT deliver.delete_message('priv', 1)$$, 'permission denied for function delete_message'),
    ($$SELECT deliver.reset_consumer_group('priv', 'default', 'latest')$$, 'permission denied for function reset_consumer_group'),
    ($$SELECT * FROM deliver.replay_archive('priv', 'default')$$, 'permission denied for function replay_archive'),
    ($$SELECT deliver.create_queue('priv_mine')$$, 'permission denied for function create_queue'),
    ($$SELECT deliver.drop_queue('priv')$$, 'permission denied for function drop_queue'),
    ($$SELECT deliver.purge_queue('priv')$$, 'permission denied for function purge_queue'),
    ($$SELECT deliver.create_consumer_group('priv', 'mine')$$, 'permission denied for function create_consumer_group'),
    ($$SELECT deliver.drop_consumer_group('priv', 'default')$$, 'permission denied for function drop_consumer_group'),
    ($$SELECT deliver.grant_queue('priv', 'regress_deliver_nobody')$$, 'permission denied for function grant_queue'),
    ($$SELECT deliver.revoke_queue('priv', 'regress_deliver_nobody')$$, 'permission denied for function revoke_queue'),
    ($$SELECT deliver.redrive('priv')$$, 'permission denied for function redrive'),
    ($$SELECT * FROM deliver.maintain('priv')$$, 'permission denied for function maintain'),
    ($$SELECT deliver._catalog_changed(1)$$, 'permission denied for function _catalog_changed'),
    ($$INSERT INTO deliver.queue (queue_name, guarantee, visibility_timeout, max_attempts, fifo,
                                  dedup_window, retry_base, retry_max, created_snapshot)
       VALUES ('priv_forged', 'at_most_once', '1 s', 1, false, '1 s', '0', '0', pg_current_snapshot())$$,
     'permission denied for table queue'),
    ($$UPDATE deliver.queue SET max_attempts = 1000$$, 'permission denied for table queue')) AS t(cmd, msg);
-- nor the queue's tables directly
SELECT ok(count(*) > 0, 'the queue has tables')
  FROM deliver.queue q
  JOIN pg_class c ON c.relname ~ ('^q' || q.queue_id || '_') AND c.relkind = 'r'
                 AND c.relnamespace = 'deliver'::regnamespace
 WHERE q.queue_name = 'priv';
SELECT is(count(*) FILTER (WHERE pg_temp.try(format('SELECT * FROM deliver.%I', c.relname)) NOT LIKE '42501 %'),
          0::bigint, 'none of them is readable without grants')
  FROM deliver.queue q
  JOIN pg_class c ON c.relname ~ ('^q' || q.queue_id || '_') AND c.relkind = 'r'
                 AND c.relnamespace = 'deliver'::regnamespace
 WHERE q.queue_name = 'priv';
RESET ROLE;

--
-- grant_queue: 'send'
--
SELECT lives_ok($$SELECT deliver.grant_queue('priv', 'regress_deliver_sender', 'send')$$, 'grant send');
SET ROLE regress_deliver_sender;
SELECT is(deliver.send('priv', '{"from": "sender"}'), 1::bigint, 'a sender sends: message 1');
SELECT is(deliver.send_batch('priv', ARRAY['{"from": "sender", "batch": 1}', '{"from": "sender", "batch": 2}']::jsonb[]),
          ARRAY[2, 3]::bigint[], 'a sender sends a batch: messages 2 and 3');
SELECT is(deliver.send('priv', '{"from": "sender", "idempotent": true}', idempotency_key => 'i1'), 4::bigint,
          'a sender sends with an idempotency key: message 4');
SELECT is(deliver.send('priv', '{"from": "sender", "idempotent": true}', idempotency_key => 'i1'), 4::bigint,
          'the same key again: message 4 again');
SELECT throws_ok(cmd, '42501', msg, 'a sender: ' || cmd) FROM (VALUES
    ($$SELECT * FROM deliver.receive('priv')$$, 'permission denied to receive from queue "priv"'),
    ($$SELECT deliver.ack('priv', 1)$$, 'permission denied to ack messages of queue "priv"'),
    ($$SELECT deliver.nack('priv', 1)$$, 'permission denied to nack messages of queue "priv"'),
    ($$SELECT deliver.extend_lease('priv', 1, '1 minute')$$, 'permission denied to extend leases of queue "priv"'),
    ($$SELECT * FROM deliver.metrics('priv')$$, 'permission denied to read metrics of queue "priv"'),
    ($$SELECT * FROM deliver.peek('priv')$$, 'permission denied to peek at queue "priv"'),
    ($$SELECT deliver.send('priv_other', '{}')$$, 'permission denied to send to queue "priv_other"'),
    ($$SELECT deliver.purge_queue('priv')$$, 'permission denied for function purge_queue')) AS t(cmd, msg);
RESET ROLE;

--
-- grant_queue: 'receive'
--
SELECT lives_ok($$SELECT deliver.grant_queue('priv', 'regress_deliver_receiver', 'receive')$$, 'grant receive');
SET ROLE regress_deliver_receiver;
SELECT results_eq($$SELECT message_id, payload, deliver.ack('priv', delivery_id) FROM deliver.receive('priv')$$,
                  $$VALUES (1::bigint, '{"from": "sender"}'::jsonb, true)$$,
                  'a receiver receives and acks message 1');
SELECT results_eq($$SELECT message_id, deliver.nack('priv', delivery_id, 'not now', '0') FROM deliver.receive('priv')$$,
                  $$VALUES (2::bigint, true)$$, 'a receiver nacks message 2');
SELECT results_eq($$SELECT message_id, attempt, deliver.extend_lease('priv', delivery_id, '1 minute') IS NOT NULL,
                           deliver.ack('priv', delivery_id)
                      FROM deliver.receive('priv')$$,
                  $$VALUES (2::bigint, 2, true, true)$$,
                  'a receiver gets message 2 again (attempt 2), extends its lease and acks it');
SELECT results_eq($$WITH r AS (SELECT * FROM deliver.receive('priv', 10))
                    SELECT array_agg(message_id ORDER BY message_id), deliver.ack_batch('priv', array_agg(delivery_id)) FROM r$$,
                  $$VALUES (ARRAY[3, 4]::bigint[], 2)$$, 'a receiver acks messages 3 and 4 in a batch');
RESET ROLE;
-- a receive-only role gets delayed messages when they come due
SET ROLE regress_deliver_sender;
SELECT ok(deliver.send('priv', '{"from": "sender", "delayed": true}', delay => '300 milliseconds') IS NOT NULL,
          'a sender sends a delayed message');
RESET ROLE;
SET ROLE regress_deliver_receiver;
SELECT is((SELECT count(*) FROM deliver.receive('priv', 10, wait => '5 seconds')), 1::bigint,
          'a receive-only role gets the delayed message when it comes due');
SELECT results_eq($$SELECT consumer_group, depth, in_flight, delayed, dead_letters FROM deliver.metrics('priv')$$,
                  $$VALUES ('default'::text, 0::bigint, 1::bigint, 0::bigint, 0::bigint)$$,
                  'a receiver reads the metrics');
SELECT is((SELECT count(*) FROM deliver.dead_letters('priv')), 0::bigint, 'a receiver reads the dead letters');
SELECT is((SELECT count(*) FROM deliver.peek('priv')), 0::bigint, 'a receiver peeks (the one message is in flight)');
SELECT throws_ok(cmd, '42501', msg, 'a receiver: ' || cmd) FROM (VALUES
    ($$SELECT deliver.send('priv', '{}')$$, 'permission denied to send to queue "priv"'),
    ($$SELECT deliver.send('priv', '{}', delay => '1 hour')$$, 'permission denied to send to queue "priv"'),
    ($$SELECT deliver.send_batch('priv', ARRAY['{}']::jsonb[])$$, 'permission denied to send to queue "priv"'),
    ($$SELECT * FROM deliver.receive('priv_other')$$, 'permission denied to receive from queue "priv_other"'),
    ($$SELECT deliver.redrive('priv')$$, 'permission denied for function redrive'),
    ($$SELECT deliver.delete_dead_letters('priv', ARRAY[1]::bigint[])$$, 'permission denied for function delete_dead_letters'),
    ($$SELECT deliver.delete_message('priv', 1)$$, 'permission denied for function delete_message'),
    ($$SELECT deliver.reset_consumer_group('priv', 'default', 'latest')$$, 'permission denied for function reset_consumer_group'),
    ($$SELECT deliver.purge_queue('priv')$$, 'permission denied for function purge_queue')) AS t(cmd, msg);
RESET ROLE;
-- delete_dead_letters: EXECUTE on it is not enough, the queue's receive right is needed too
GRANT EXECUTE ON FUNCTION deliver.delete_dead_letters(text, bigint[], text)
    TO regress_deliver_sender, regress_deliver_receiver;
SET ROLE regress_deliver_sender;
SELECT throws_ok($$SELECT deliver.delete_dead_letters('priv', ARRAY[1]::bigint[])$$, '42501',
                 'permission denied to delete dead letters of queue "priv"',
                 'a sender granted delete_dead_letters cannot delete the dead letters of a queue it may not receive from');
SELECT throws_ok($$SELECT deliver.delete_dead_letters('priv', ARRAY[1]::bigint[], 'no_such_group')$$, '42501',
                 'permission denied to delete dead letters of queue "priv"',
                 'nor learn whether a consumer group exists');
RESET ROLE;
SET ROLE regress_deliver_receiver;
SELECT is(deliver.delete_dead_letters('priv', ARRAY[1]::bigint[]), 0::bigint,
          'a receiver granted delete_dead_letters may call it');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION deliver.delete_dead_letters(text, bigint[], text)
    FROM regress_deliver_sender, regress_deliver_receiver;
-- delete_message: EXECUTE on it is not enough, the queue's receive right is needed too;
-- redrive to another queue: the caller needs the right to send to it, and to
-- receive from the queue the dead letters are taken from
GRANT EXECUTE ON FUNCTION deliver.delete_message(text, bigint), deliver.redrive(text, bigint[], text, text)
    TO regress_deliver_sender, regress_deliver_receiver;
SET ROLE regress_deliver_sender;
SELECT throws_ok($$SELECT deliver.delete_message('priv', 1)$$, '42501',
                 'permission denied to delete messages of queue "priv"',
                 'a sender granted delete_message cannot delete messages of a queue it may not receive from');
SELECT throws_ok($$SELECT deliver.redrive('priv_other', NULL, NULL, 'priv')$$, '42501',
                 'permission denied to redrive to another queue the dead letters of queue "priv_other"',
                 'a sender granted redrive cannot take the dead letters of a queue it may not receive from');
RESET ROLE;
SELECT lives_ok($$SELECT deliver.grant_queue('priv_other', 'regress_deliver_sender', 'receive')$$,
                'grant the sender receive on priv_other');
SET ROLE regress_deliver_sender;
SELECT is(deliver.redrive('priv_other', NULL, NULL, 'priv'), 0::bigint,
          'with the right to receive from it, it may redrive them to a queue it may send to');
RESET ROLE;
SELECT lives_ok($$SELECT deliver.revoke_queue('priv_other', 'regress_deliver_sender', 'receive')$$,
                'and revoke it');
SET ROLE regress_deliver_receiver;
SELECT is(deliver.delete_message('priv', 999999), false, 'a receiver granted delete_message may call it');
SELECT throws_ok($$SELECT deliver.redrive('priv', NULL, NULL, 'priv_other')$$, '42501',
                 'permission denied to send to queue "priv_other"',
                 'redrive to a queue the caller may not send to is refused');
SELECT throws_ok($$SELECT deliver.redrive('priv', NULL, NULL, 'priv')$$, '42501',
                 'permission denied to send to queue "priv"',
                 'also when it names the queue itself (the right is checked first)');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION deliver.delete_message(text, bigint), deliver.redrive(text, bigint[], text, text)
    FROM regress_deliver_sender, regress_deliver_receiver;
-- a receiver cannot slip messages into the queue's tables either, nor forge
-- a finish record (which would make its consumer group skip messages), nor
-- claim an idempotency key for ever (which would swallow another
-- producer's exactly-once sends), nor read the tables
SELECT queue_id AS qid FROM deliver.queue WHERE queue_name = 'priv' \gset
SET ROLE regress_deliver_receiver;
SELECT throws_ok(format($$INSERT INTO deliver.q%s_s0 (txid, message_id, enqueued_at, payload)
                          VALUES (pg_current_xact_id(), 1000, now(), '{"forged": true}')$$, :qid),
                 '42501', format('permission denied for table q%s_s0', :qid), 'a receiver cannot insert into a segment');
RESET ROLE;
SELECT is_empty($$SELECT message_id, payload FROM deliver.receive('priv', 10)$$, 'no forged message came in');
SET ROLE regress_deliver_receiver;
SELECT throws_ok(format($$INSERT INTO deliver.q%s_done0 (group_id, kind, message_ids) VALUES (1, 'a', ARRAY[1, 2, 3])$$, :qid),
                 '42501', format('permission denied for table q%s_done0', :qid), 'a receiver cannot forge a finish record');
SELECT throws_ok(format($$SELECT * FROM deliver.q%s_dead$$, :qid),
                 '42501', format('permission denied for table q%s_dead', :qid), 'a receiver cannot read the dead letters table');
RESET ROLE;
SET ROLE regress_deliver_sender;
SELECT throws_ok(format($$INSERT INTO deliver.q%s_dedup VALUES ('k', 1, 'infinity')$$, :qid),
                 '42501', format('permission denied for table q%s_dedup', :qid), 'a sender cannot claim an idempotency key');
SELECT throws_ok(format($$UPDATE deliver.q%s_dedup SET expires_at = 'infinity'$$, :qid),
                 '42501', format('permission denied for table q%s_dedup', :qid), 'a sender cannot keep a key for ever');
SELECT throws_ok(format($$SELECT nextval('deliver.q%s_seq')$$, :qid),
                 '42501', format('permission denied for sequence q%s_seq', :qid), 'a sender cannot take message ids');
RESET ROLE;
SELECT is_empty($$SELECT c.relname, e.grantee::regrole, e.privilege_type
                    FROM pg_class c, aclexplode(c.relacl) e
                   WHERE c.relnamespace = 'deliver'::regnamespace
                     AND e.grantee <> c.relowner
                     AND NOT (c.relname IN ('queue', 'consumer_group', 'segment', 'alert', 'push_subscription', 'binding')
                              AND e.grantee = 0 AND e.privilege_type = 'SELECT')$$,
                'no role but the owner holds a privilege on deliver''s tables, whatever grant_queue granted');
SELECT results_eq($$SELECT * FROM deliver.list_grants('priv')$$,
                  $$VALUES ('priv'::text, 'regress_deliver_receiver'::text, 'receive'::text),
                           ('priv', 'regress_deliver_sender', 'send')$$,
                  'list_grants shows the grants');
-- a role that inherits a grantee's privileges has its rights; one that
-- does not (NOINHERIT) has them after SET ROLE only
CREATE ROLE regress_deliver_member IN ROLE regress_deliver_receiver;
CREATE ROLE regress_deliver_noinherit NOINHERIT IN ROLE regress_deliver_receiver;
SET ROLE regress_deliver_member;
SELECT ok(deliver.has_queue_privilege('priv', 'receive'), 'a member inherits receive');
SELECT ok(NOT deliver.has_queue_privilege('priv', 'send'), 'a member has no send right');
SELECT ok(NOT deliver.has_queue_privilege('priv', 'all'), 'a member has not all rights');
RESET ROLE;
SET ROLE regress_deliver_noinherit;
SELECT ok(NOT deliver.has_queue_privilege('priv', 'receive'), 'a NOINHERIT member does not inherit receive');
SELECT throws_ok($$SELECT * FROM deliver.receive('priv')$$, '42501', 'permission denied to receive from queue "priv"',
                 'a NOINHERIT member cannot receive');
RESET ROLE;
SELECT throws_ok(cmd, state, msg, cmd) FROM (VALUES
    ($$SELECT deliver.has_queue_privilege('priv', 'write')$$, '22023', 'invalid privilege "write"'),
    ($$SELECT deliver.has_queue_privilege('priv', NULL)$$, '22004', 'privilege must not be NULL'),
    ($$SELECT deliver.has_queue_privilege('priv_nowhere', 'send')$$, '42704', 'queue "priv_nowhere" does not exist'))
    AS t(cmd, state, msg);
-- metrics: for receivers and for members of pg_monitor; metrics() of every
-- queue shows those the caller may see
CREATE ROLE regress_deliver_monitor IN ROLE pg_monitor;
SET ROLE regress_deliver_monitor;
SELECT results_eq($$SELECT queue_name, consumer_group FROM deliver.metrics() WHERE queue_name LIKE 'priv%' ORDER BY 1, 2$$,
                  $$VALUES ('priv'::text, 'default'::text), ('priv_other', 'default')$$,
                  'a member of pg_monitor sees the metrics of every queue');
SELECT ok(count(*) > 0, 'a member of pg_monitor sees the workers') FROM deliver.worker_status();
RESET ROLE;
SET ROLE regress_deliver_receiver;
SELECT results_eq($$SELECT queue_name, consumer_group FROM deliver.metrics() WHERE queue_name LIKE 'priv%' ORDER BY 1, 2$$,
                  $$VALUES ('priv'::text, 'default'::text)$$, 'a receiver sees the metrics of its queue only');
SELECT throws_ok($$SELECT * FROM deliver.worker_status()$$, '42501', 'permission denied for function worker_status',
                 'a receiver does not see the workers');
RESET ROLE;
SET ROLE regress_deliver_nobody;
SELECT is((SELECT count(*) FROM deliver.metrics() WHERE queue_name LIKE 'priv%'), 0::bigint,
          'a role without grants sees no metrics');
RESET ROLE;
DROP ROLE regress_deliver_member;
DROP ROLE regress_deliver_noinherit;
DROP ROLE regress_deliver_monitor;

--
-- grant_queue: 'all' (the default) on an exactly-once queue, and a role name
-- that needs quoting
--
SELECT lives_ok($$SELECT deliver.create_queue('priv_eo', 'exactly_once')$$, 'create queue priv_eo');
SELECT lives_ok($$SELECT deliver.grant_queue('priv_eo', 'regress_deliver_both')$$, 'grant all (the default)');
SELECT lives_ok($$SELECT deliver.grant_queue('priv_eo', 'regress_deliver "odd"; role', 'all')$$,
                'grant all to a role whose name needs quoting');
SET ROLE regress_deliver_both;
SELECT is(deliver.send('priv_eo', '{"from": "both"}', idempotency_key => 'b1'), 1::bigint, 'all: send');
SELECT is(deliver.send('priv_eo', '{"from": "both"}', idempotency_key => 'b1'), 1::bigint, 'all: the same key, the same id');
SELECT results_eq($$SELECT message_id, payload, deliver.ack('priv_eo', delivery_id) FROM deliver.receive('priv_eo')$$,
                  $$VALUES (1::bigint, '{"from": "both"}'::jsonb, true)$$, 'all: receive and ack');
RESET ROLE;
SET ROLE "regress_deliver ""odd""; role";
SELECT ok(deliver.send('priv_eo', '{"from": "odd"}', idempotency_key => 'o1') IS NOT NULL, 'an oddly named role sends');
SELECT results_eq($$SELECT payload, deliver.ack('priv_eo', delivery_id) FROM deliver.receive('priv_eo')$$,
                  $$VALUES ('{"from": "odd"}'::jsonb, true)$$, 'an oddly named role receives and acks');
RESET ROLE;
-- grants on one queue say nothing about another
SET ROLE regress_deliver_both;
SELECT throws_ok($$SELECT deliver.send('priv', '{}')$$, '42501', 'permission denied to send to queue "priv"',
                 'grants on one queue say nothing about another');
RESET ROLE;

--
-- revoke_queue
--
SELECT ok(deliver.send('priv', '{"n": "leased by receiver"}') IS NOT NULL, 'a message for the receiver');
SET ROLE regress_deliver_receiver;
SELECT delivery_id AS d FROM deliver.receive('priv') \gset
RESET ROLE;
SELECT lives_ok($$SELECT deliver.revoke_queue('priv', 'regress_deliver_sender')$$, 'revoke from the sender');
SELECT lives_ok($$SELECT deliver.revoke_queue('priv', 'regress_deliver_receiver')$$, 'revoke from the receiver');
SELECT lives_ok($$SELECT deliver.revoke_queue('priv_eo', 'regress_deliver "odd"; role')$$, 'revoke from the odd role');
SET ROLE regress_deliver_sender;
SELECT throws_ok($$SELECT deliver.send('priv', '{}')$$, '42501', 'permission denied to send to queue "priv"',
                 'a revoked sender cannot send');
RESET ROLE;
SET ROLE regress_deliver_receiver;
SELECT throws_ok(cmd, '42501', msg, 'a revoked receiver: ' || cmd) FROM (VALUES
    ($$SELECT * FROM deliver.receive('priv')$$, 'permission denied to receive from queue "priv"'),
    (format('SELECT deliver.ack(%L, %s)', 'priv', :d), 'permission denied to ack messages of queue "priv"'),
    (format('SELECT deliver.nack(%L, %s)', 'priv', :d), 'permission denied to nack messages of queue "priv"'),
    (format('SELECT deliver.extend_lease(%L, %s, %L)', 'priv', :d, '1 minute'), 'permission denied to extend leases of queue "priv"'),
    ($$SELECT * FROM deliver.metrics('priv')$$, 'permission denied to read metrics of queue "priv"')) AS t(cmd, msg);
RESET ROLE;
SET ROLE "regress_deliver ""odd""; role";
SELECT throws_ok($$SELECT deliver.send('priv_eo', '{}', idempotency_key => 'o2')$$, '42501',
                 'permission denied to send to queue "priv_eo"', 'a revoked odd role cannot send');
RESET ROLE;
SELECT ok(deliver.ack('priv', :d), 'the revoked receiver''s lease is still there for others');
SELECT lives_ok($$SELECT deliver.revoke_queue('priv', 'regress_deliver_nobody')$$,
                'revoking a role that was never granted is harmless');
-- a grant can be narrowed by revoking part of it
SELECT lives_ok($$SELECT deliver.grant_queue('priv', 'regress_deliver_sender', 'all')$$, 'grant all to the sender');
SELECT lives_ok($$SELECT deliver.revoke_queue('priv', 'regress_deliver_sender', 'receive')$$, 'revoke its receive right');
SELECT results_eq($$SELECT * FROM deliver.list_grants('priv')$$,
                  $$VALUES ('priv'::text, 'regress_deliver_sender'::text, 'send'::text)$$,
                  'what is left of the grant is send');
SET ROLE regress_deliver_sender;
SELECT ok(deliver.send('priv', '{"n": "sender again"}') > 0, 'the narrowed grant sends');
SELECT throws_ok($$SELECT * FROM deliver.receive('priv')$$, '42501', 'permission denied to receive from queue "priv"',
                 'the narrowed grant does not receive');
RESET ROLE;

-- bad arguments
SELECT throws_ok(cmd, state, msg, cmd) FROM (VALUES
    ($$SELECT deliver.grant_queue('priv', 'regress_deliver_missing')$$, '42704', 'role "regress_deliver_missing" does not exist'),
    ($$SELECT deliver.grant_queue('priv', NULL)$$, '22004', 'role_name must not be NULL'),
    ($$SELECT deliver.grant_queue('priv', 'regress_deliver_sender', 'write')$$, '22023', 'invalid privilege "write"'),
    ($$SELECT deliver.grant_queue('priv', 'regress_deliver_sender', NULL)$$, '22004', 'privilege must not be NULL'),
    ($$SELECT deliver.grant_queue('priv_nowhere', 'regress_deliver_sender')$$, '42704', 'queue "priv_nowhere" does not exist'),
    ($$SELECT deliver.grant_queue(NULL, 'regress_deliver_sender')$$, '22004', 'queue name must not be NULL'),
    ($$SELECT deliver.revoke_queue('priv', 'regress_deliver_missing')$$, '42704', 'role "regress_deliver_missing" does not exist'),
    ($$SELECT deliver.revoke_queue('priv', NULL)$$, '22004', 'role_name must not be NULL'),
    ($$SELECT deliver.revoke_queue('priv', 'regress_deliver_sender', 'write')$$, '22023', 'invalid privilege "write"'),
    ($$SELECT deliver.revoke_queue('priv_nowhere', 'regress_deliver_sender')$$, '42704', 'queue "priv_nowhere" does not exist'),
    ($$SELECT deliver.revoke_queue(NULL, 'regress_deliver_sender')$$, '22004', 'queue name must not be NULL'))
    AS t(cmd, state, msg);

--
-- administration can be granted: the admin functions run as their owner
--
GRANT EXECUTE ON FUNCTION deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval, interval, text, bigint, text, text, boolean),
                          deliver.drop_queue(text), deliver.grant_queue(text, text, text)
   TO regress_deliver_admin;
SET ROLE regress_deliver_admin;
SELECT lives_ok($$SELECT deliver.create_queue('priv_admin', 'at_most_once')$$, 'a granted admin creates a queue');
SELECT lives_ok($$SELECT deliver.grant_queue('priv_admin', 'regress_deliver_admin')$$, 'and grants it to itself');
SELECT is(deliver.send('priv_admin', '{"admin": true}'), 1::bigint, 'and sends to it');
-- (an at-most-once receive is a statement of its own, not in a function)
SELECT message_id AS admin_id, payload AS admin_payload FROM deliver.receive('priv_admin') \gset
SELECT is(:admin_id::bigint, 1::bigint, 'and receives message 1');
SELECT is(:'admin_payload'::jsonb, '{"admin": true}'::jsonb, 'with its payload');
SELECT throws_ok($$SELECT deliver.purge_queue('priv_admin')$$, '42501', 'permission denied for function purge_queue',
                 'a function not granted stays refused');
SELECT ok(deliver.drop_queue('priv_admin'), 'a granted admin drops the queue');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval, interval, text, bigint, text, text, boolean),
                           deliver.drop_queue(text), deliver.grant_queue(text, text, text)
    FROM regress_deliver_admin;

--
-- topic routing: bind and unbind are not for PUBLIC; publish needs the right
-- to send to every queue the routing key matches
--
SELECT is(has_function_privilege('regress_deliver_nobody', f, 'EXECUTE'), public,
          f || CASE WHEN public THEN ' is for every role' ELSE ' is not for PUBLIC' END)
  FROM (VALUES
    ('deliver.bind(text, text)', false),
    ('deliver.unbind(text, text)', false),
    ('deliver.list_bindings(text)', true),
    ('deliver.test_routing(text)', true),
    ('deliver.publish(text, jsonb, jsonb, text, text, interval, boolean, timestamptz, int)', true)) AS t(f, public);
SELECT ok(deliver.bind('prv.#', 'priv'), 'bind prv.# to priv');
SELECT ok(deliver.bind('prv.*', 'priv_other'), 'bind prv.* to priv_other');
CREATE ROLE regress_deliver_router;
SELECT lives_ok($$SELECT deliver.grant_queue('priv', 'regress_deliver_router', 'send')$$, 'grant send on priv only');
SET ROLE regress_deliver_nobody;
SELECT throws_ok(cmd, '42501', msg, 'a role without grants: ' || cmd) FROM (VALUES
    ($$SELECT * FROM deliver.publish('prv.x', '{}')$$, 'permission denied to send to queue "priv"'),
    ($$SELECT deliver.bind('prv.#', 'priv_other')$$, 'permission denied for function bind'),
    ($$SELECT deliver.unbind('prv.#', 'priv')$$, 'permission denied for function unbind')) AS t(cmd, msg);
SELECT is((SELECT count(*) FROM deliver.test_routing('prv.x')), 2::bigint, 'anyone may test the routing');
SET ROLE regress_deliver_router;
SELECT throws_ok($$SELECT * FROM deliver.publish('prv.x', '{}')$$, '42501',
                 'permission denied to send to queue "priv_other"',
                 'a publish that matches a queue the role may not send to is refused');
SELECT is((SELECT array_agg(queue_name) FROM deliver.publish('prv.x.y', '{"routed": true}')), ARRAY['priv'],
          'a publish that matches only the granted queue is sent');
RESET ROLE;
SELECT ok(deliver.unbind('prv.#', 'priv'), 'unbind prv.# from priv');
SELECT ok(deliver.unbind('prv.*', 'priv_other'), 'unbind prv.* from priv_other');
SELECT lives_ok($$SELECT deliver.revoke_queue('priv', 'regress_deliver_router', 'send')$$, 'revoke send on priv');
DROP ROLE regress_deliver_router;

--
-- default privileges for the role that creates the queue tables (the
-- extension's owner: create_queue runs as it) do not open a new queue's
-- tables
--
CREATE ROLE regress_deliver_snoop;
DO $$
DECLARE
    o text := (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'deliver.queue'::regclass);
BEGIN
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA deliver GRANT ALL ON TABLES TO regress_deliver_snoop', o);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT ALL ON SEQUENCES TO PUBLIC', o);
END $$;
SELECT lives_ok($$SELECT deliver.create_queue('priv_dp')$$,
                'create queue priv_dp under default privileges that grant all on tables and sequences');
SELECT is((SELECT count(*) FROM pg_class c, aclexplode(c.relacl) e
            WHERE c.relnamespace = 'deliver'::regnamespace AND e.grantee <> c.relowner
              AND c.relname ~ format('^q%s_', (SELECT queue_id FROM deliver.queue WHERE queue_name = 'priv_dp'))),
          0::bigint, 'nobody but the owner has a right on its tables and sequence');
SELECT ok(NOT has_table_privilege('regress_deliver_snoop',
                                  format('deliver.q%s_done0', (SELECT queue_id FROM deliver.queue WHERE queue_name = 'priv_dp')),
                                  'INSERT'),
          'so a role the default privileges named cannot write its done table (forge acks)');
DO $$
DECLARE
    o text := (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'deliver.queue'::regclass);
BEGIN
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA deliver REVOKE ALL ON TABLES FROM regress_deliver_snoop', o);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s REVOKE ALL ON SEQUENCES FROM PUBLIC', o);
END $$;
SELECT ok(deliver.drop_queue('priv_dp'), 'drop priv_dp');
DROP ROLE regress_deliver_snoop;

SELECT ok(deliver.drop_queue(q), 'drop ' || q) FROM unnest(ARRAY['priv', 'priv_other', 'priv_eo']) AS q;
DROP ROLE regress_deliver_nobody;
DROP ROLE regress_deliver_sender;
DROP ROLE regress_deliver_receiver;
DROP ROLE regress_deliver_both;
DROP ROLE regress_deliver_admin;
DROP ROLE "regress_deliver ""odd""; role";
SELECT * FROM finish();
