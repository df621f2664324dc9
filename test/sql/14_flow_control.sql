-- Flow control of a consumer group: pause_consumer_group,
-- resume_consumer_group, set_consumer_group_rate.
\set VERBOSITY terse
\i test/helpers.psql

--
-- pause and resume
--
SELECT deliver.create_queue('q14_pause');
SELECT deliver.create_consumer_group('q14_pause', 'other');
SELECT deliver.send_batch('q14_pause', array['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[]) IS NOT NULL AS sent;
-- a lease taken before the pause keeps working
CREATE TEMP TABLE held AS SELECT delivery_id, payload FROM deliver.receive('q14_pause', 1);
SELECT payload FROM held;
SELECT deliver.pause_consumer_group('q14_pause');            -- true: paused now
SELECT deliver.pause_consumer_group('q14_pause', 'default'); -- false: was paused
SELECT consumer_group, paused, rate_per_second, rate_burst FROM deliver.list_consumer_groups('q14_pause');
SELECT count(*) AS received FROM deliver.receive('q14_pause', 10);
SELECT count(*) AS received_after_wait FROM deliver.receive('q14_pause', 10, wait => '50 milliseconds');
-- peek still shows what a receive would hand out; the other group is not paused
SELECT payload FROM deliver.peek('q14_pause', 10);
SELECT payload FROM deliver.receive('q14_pause', 10, consumer_group => 'other') ORDER BY message_id;
SELECT deliver.extend_lease('q14_pause', delivery_id, '1 minute') > now() AS extended FROM held;
SELECT deliver.nack('q14_pause', delivery_id, 'again', '0') AS nacked FROM held;
SELECT count(*) AS received_after_nack FROM deliver.receive('q14_pause', 10);
SELECT deliver.resume_consumer_group('q14_pause');           -- true: resumed
SELECT deliver.resume_consumer_group('q14_pause');           -- false: was not paused
SELECT payload, attempt FROM deliver.receive('q14_pause', 10) ORDER BY message_id;
-- a pause rolled back changes nothing
BEGIN;
SELECT deliver.pause_consumer_group('q14_pause');
ROLLBACK;
SELECT consumer_group, paused FROM deliver.list_consumer_groups('q14_pause');
SELECT deliver.send('q14_pause', '{"n": 4}') IS NOT NULL AS sent;
SELECT payload FROM deliver.receive('q14_pause', 10);
-- inside one transaction the pause applies once it commits
BEGIN;
SELECT deliver.pause_consumer_group('q14_pause');
SELECT deliver.resume_consumer_group('q14_pause');
COMMIT;
SELECT deliver.send('q14_pause', '{"n": 5}') IS NOT NULL AS sent;
SELECT payload FROM deliver.receive('q14_pause', 10);

-- every guarantee
SELECT deliver.create_queue('q14_amo', 'at_most_once');
SELECT deliver.create_queue('q14_eo', 'exactly_once');
SELECT deliver.send('q14_amo', '{"amo": 1}') IS NOT NULL AS sent;
SELECT deliver.send('q14_eo', '{"eo": 1}', idempotency_key => 'k1') IS NOT NULL AS sent;
SELECT deliver.pause_consumer_group('q14_amo'), deliver.pause_consumer_group('q14_eo');
SELECT count(*) AS received FROM deliver.receive('q14_amo', 10);
SELECT count(*) AS received FROM deliver.receive('q14_eo', 10);
SELECT deliver.resume_consumer_group('q14_amo'), deliver.resume_consumer_group('q14_eo');
SELECT payload FROM deliver.receive('q14_amo', 10);
SELECT payload FROM deliver.receive('q14_eo', 10);

--
-- rate limit
--
SELECT deliver.create_queue('q14_rate');
SELECT deliver.send_batch('q14_rate', array['{"r": 1}', '{"r": 2}', '{"r": 3}', '{"r": 4}', '{"r": 5}']::jsonb[]) IS NOT NULL AS sent;
SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 0.001, 3);
SELECT consumer_group, paused, rate_per_second, rate_burst FROM deliver.list_consumer_groups('q14_rate');
-- the bucket starts full: 3 messages, then nothing until the next token (in 1000 s)
CREATE TEMP TABLE got AS SELECT delivery_id, payload FROM deliver.receive('q14_rate', 2);
SELECT payload FROM got ORDER BY payload;
SELECT deliver.nack('q14_rate', delivery_id, NULL, '0') AS nacked FROM got;
-- a redelivery takes a token too
SELECT payload, attempt FROM deliver.receive('q14_rate', 10);
SELECT count(*) AS received FROM deliver.receive('q14_rate', 10);
SELECT count(*) AS received_after_wait FROM deliver.receive('q14_rate', 10, wait => '50 milliseconds');
-- a new limit starts with a full bucket
SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 0.001, 2);
SELECT count(*) AS received FROM deliver.receive('q14_rate', 10);
SELECT count(*) AS received FROM deliver.receive('q14_rate', 10);
-- burst defaults to max(1, ceil(per_second))
SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 2.5);
SELECT rate_per_second, rate_burst FROM deliver.list_consumer_groups('q14_rate');
SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 0.25, NULL);
SELECT rate_per_second, rate_burst FROM deliver.list_consumer_groups('q14_rate');
-- NULL removes the limit
SELECT deliver.set_consumer_group_rate('q14_rate', 'default', NULL);
SELECT rate_per_second, rate_burst FROM deliver.list_consumer_groups('q14_rate');
SELECT count(*) AS received FROM deliver.receive('q14_rate', 10);
-- paused and rate-limited: the pause wins; resumed: the rate applies
SELECT deliver.send_batch('q14_rate', array['{"r": 6}', '{"r": 7}']::jsonb[]) IS NOT NULL AS sent;
SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 0.001, 1);
SELECT deliver.pause_consumer_group('q14_rate');
SELECT count(*) AS received FROM deliver.receive('q14_rate', 10);
SELECT deliver.resume_consumer_group('q14_rate');
SELECT count(*) AS received FROM deliver.receive('q14_rate', 10);
SELECT count(*) AS received FROM deliver.receive('q14_rate', 10);

--
-- bad input
--
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.pause_consumer_group(NULL)$$),
    ($$SELECT deliver.pause_consumer_group('q14_missing')$$),
    ($$SELECT deliver.pause_consumer_group('q14_pause', 'nope')$$),
    ($$SELECT deliver.pause_consumer_group('q14_pause', NULL)$$),
    ($$SELECT deliver.pause_consumer_group('q14_pause', 'bad name')$$),
    ($$SELECT deliver.resume_consumer_group(NULL)$$),
    ($$SELECT deliver.resume_consumer_group('q14_missing')$$),
    ($$SELECT deliver.resume_consumer_group('q14_pause', 'nope')$$),
    ($$SELECT deliver.resume_consumer_group('q14_pause', NULL)$$),
    ($$SELECT deliver.set_consumer_group_rate(NULL, 'default', 1)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_missing', 'default', 1)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'nope', 1)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', NULL, 1)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 0)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', -1)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 'NaN')$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 'Infinity')$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 1000001)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 1, 0)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 1, -5)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', 1, 1000001)$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_rate', 'default', NULL, 3)$$)) AS t(cmd);
-- nothing changed
SELECT consumer_group, paused, rate_per_second, rate_burst FROM deliver.list_consumer_groups('q14_rate');

--
-- privileges: admin only, even for a role with every right on the queue
--
CREATE ROLE regress_deliver_flow;
SELECT deliver.grant_queue('q14_pause', 'regress_deliver_flow', 'all');
SELECT f AS function, has_function_privilege('regress_deliver_flow', f, 'EXECUTE') AS can_execute
  FROM unnest(ARRAY[
    'deliver.pause_consumer_group(text, text)',
    'deliver.resume_consumer_group(text, text)',
    'deliver.set_consumer_group_rate(text, text, double precision, int)',
    'deliver.list_consumer_groups(text)']) AS f;
SET ROLE regress_deliver_flow;
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.pause_consumer_group('q14_pause')$$),
    ($$SELECT deliver.resume_consumer_group('q14_pause')$$),
    ($$SELECT deliver.set_consumer_group_rate('q14_pause', 'default', 1)$$),
    ($$UPDATE deliver.consumer_group SET paused = true$$)) AS t(cmd);
SELECT consumer_group, paused FROM deliver.list_consumer_groups('q14_pause');
RESET ROLE;
SELECT deliver.revoke_queue('q14_pause', 'regress_deliver_flow', 'all');
DROP ROLE regress_deliver_flow;

--
-- FIFO queues: messages of one key in flight at once
--
SELECT deliver.create_queue('q14_fifo', fifo => true);
SELECT count(deliver.send('q14_fifo', jsonb_build_object('n', i), ordering_key => 'a')) AS sent
  FROM generate_series(1, 6) i;
SELECT count(deliver.send('q14_fifo', jsonb_build_object('n', i), ordering_key => 'b')) AS sent
  FROM generate_series(7, 8) i;
SELECT fifo_key_limit FROM deliver.queue WHERE queue_name = 'q14_fifo';
-- the default: one message of a key at a time
CREATE TEMP TABLE f1 AS SELECT delivery_id, payload FROM deliver.receive('q14_fifo', 10);
SELECT payload FROM f1 ORDER BY payload->>'n';
SELECT deliver.set_fifo_key_limit('q14_fifo', 3);
SELECT fifo_key_limit FROM deliver.queue WHERE queue_name = 'q14_fifo';
-- messages already held back behind their key go out as their key's messages finish
SELECT count(*) AS received FROM deliver.receive('q14_fifo', 10);
SELECT deliver.ack_batch('q14_fifo', array_agg(delivery_id)) AS acked FROM f1;
CREATE TEMP TABLE f2 AS SELECT delivery_id, payload FROM deliver.receive('q14_fifo', 10);
SELECT payload FROM f2 ORDER BY (payload->>'n')::int;
SELECT count(*) AS received FROM deliver.receive('q14_fifo', 10);
-- one of them finishes: one more of the key goes out
SELECT deliver.ack('q14_fifo', delivery_id) AS acked FROM f2 WHERE payload->>'n' = '2';
SELECT payload FROM deliver.receive('q14_fifo', 10);
-- new messages of a key: up to the limit at once
SELECT count(deliver.send('q14_fifo', jsonb_build_object('n', i), ordering_key => 'c')) AS sent
  FROM generate_series(9, 13) i;
SELECT payload FROM deliver.receive('q14_fifo', 10) ORDER BY (payload->>'n')::int;
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.set_fifo_key_limit('q14_fifo', 0)$$),
    ($$SELECT deliver.set_fifo_key_limit('q14_fifo', 10001)$$),
    ($$SELECT deliver.set_fifo_key_limit('q14_fifo', NULL)$$),
    ($$SELECT deliver.set_fifo_key_limit(NULL, 2)$$),
    ($$SELECT deliver.set_fifo_key_limit('q14_missing', 2)$$),
    ($$SELECT deliver.set_fifo_key_limit('q14_rate', 2)$$)) AS t(cmd);
SELECT has_function_privilege('public', 'deliver.set_fifo_key_limit(text, int)', 'EXECUTE') AS public_may_execute;

--
-- FIFO keys in turn (fifo_key_limit above 1): a key with many messages
-- ready does not keep the others waiting
--
SELECT deliver.create_queue('q14_turn', fifo => true);
SELECT deliver.set_fifo_key_limit('q14_turn', 3);
SELECT count(deliver.send('q14_turn', jsonb_build_object('n', 'hot' || i), ordering_key => 'hot')) AS sent
  FROM generate_series(1, 6) i;
SELECT deliver.send('q14_turn', '{"n": "b1"}', ordering_key => 'b') IS NOT NULL AS sent;
SELECT deliver.send('q14_turn', '{"n": "b2"}', ordering_key => 'b') IS NOT NULL AS sent;
SELECT deliver.send('q14_turn', '{"n": "c1"}', ordering_key => 'c') IS NOT NULL AS sent;
SELECT deliver.send('q14_turn', '{"n": "none1"}') IS NOT NULL AS sent;
-- a receive of 4: the first of each key, then the keys' second ones
CREATE TEMP TABLE t1 AS SELECT o, delivery_id, payload->>'n' AS n
  FROM deliver.receive('q14_turn', 4) WITH ORDINALITY AS r(message_id, delivery_id, payload, headers,
       ordering_key, attempt, enqueued_at, lease_expires_at, o);
SELECT o, n FROM t1 ORDER BY o;
-- peek lists what the next receives hand out, in their order (read ahead,
-- not redeliveries): hot2, b2, hot3
SELECT payload->>'n' AS n, attempt, redelivery FROM deliver.peek('q14_turn', 10);
-- receives of one, in turn across receives: hot and b have one message
-- out each (hot2 is the earlier), then b has fewer out than hot
SELECT payload->>'n' AS n FROM deliver.receive('q14_turn', 1);
SELECT payload->>'n' AS n FROM deliver.receive('q14_turn', 1);
-- hot3, the last one ready: hot then has 3 out (its limit)
SELECT payload->>'n' AS n FROM deliver.receive('q14_turn', 10);
-- a new key goes out before hot4 (let out by hot1's ack), though read later
SELECT deliver.send('q14_turn', '{"n": "d1"}', ordering_key => 'd') IS NOT NULL AS sent;
SELECT deliver.ack('q14_turn', delivery_id) AS acked FROM t1 WHERE n = 'hot1';
SELECT payload->>'n' AS n FROM deliver.receive('q14_turn', 10);
-- with the limit back to 1: hot has 3 out, so hot5 waits; d1 and b2 hold theirs
SELECT deliver.set_fifo_key_limit('q14_turn', 1);
SELECT deliver.ack('q14_turn', delivery_id) AS acked FROM t1 WHERE n <> 'hot1';
SELECT count(*) AS received FROM deliver.receive('q14_turn', 10);
SELECT deliver.drop_queue('q14_turn');
-- a message waiting for its redelivery counts as out: with hot1 nacked
-- (retried in an hour), b1 goes before hot2
SELECT deliver.create_queue('q14_turn2', fifo => true);
SELECT deliver.set_fifo_key_limit('q14_turn2', 2);
SELECT count(deliver.send('q14_turn2', jsonb_build_object('n', 'hot' || i), ordering_key => 'hot')) AS sent
  FROM generate_series(1, 2) i;
SELECT deliver.send('q14_turn2', '{"n": "b1"}', ordering_key => 'b') IS NOT NULL AS sent;
SELECT payload->>'n' AS n, deliver.nack('q14_turn2', delivery_id, retry_after => '1 hour') AS nacked
  FROM deliver.receive('q14_turn2', 1);
SELECT payload->>'n' AS n FROM deliver.receive('q14_turn2', 1);
SELECT payload->>'n' AS n FROM deliver.receive('q14_turn2', 1);
SELECT deliver.drop_queue('q14_turn2');
-- a limit lowered while more of a key are ready (read ahead, holding their
-- key): they go out only as the key's messages out drop below the new
-- limit, on both receive paths (limit 2: keys in turn; limit 1: in order)
SELECT deliver.create_queue('q14_lower', fifo => true, visibility_timeout => '1 hour');
SELECT deliver.set_fifo_key_limit('q14_lower', 4);
SELECT count(deliver.send('q14_lower', jsonb_build_object('n', 'hot' || i), ordering_key => 'hot')) AS sent
  FROM generate_series(1, 6) i;
CREATE TEMP TABLE t_lower AS SELECT delivery_id, payload->>'n' AS n FROM deliver.receive('q14_lower', 1);
SELECT n FROM t_lower;
-- hot2-hot4 were read ahead with hot1 and hold the key
SELECT payload->>'n' AS n FROM deliver.peek('q14_lower', 10);
SELECT deliver.set_fifo_key_limit('q14_lower', 2);
-- hot1 out: one more may go, hot2
INSERT INTO t_lower SELECT delivery_id, payload->>'n' FROM deliver.receive('q14_lower', 10) RETURNING n;
SELECT payload->>'n' AS n FROM deliver.peek('q14_lower', 10);
SELECT deliver.set_fifo_key_limit('q14_lower', 1);
SELECT deliver.ack('q14_lower', delivery_id) AS acked FROM t_lower WHERE n = 'hot1';
-- hot2 still out (the limit is 1 now): nothing
SELECT count(*) AS received FROM deliver.receive('q14_lower', 10);
SELECT deliver.ack('q14_lower', delivery_id) AS acked FROM t_lower WHERE n = 'hot2';
-- then one at a time, in order
SELECT payload->>'n' AS n, deliver.ack('q14_lower', delivery_id) AS acked FROM deliver.receive('q14_lower', 10);
SELECT payload->>'n' AS n, deliver.ack('q14_lower', delivery_id) AS acked FROM deliver.receive('q14_lower', 10);
SELECT deliver.drop_queue('q14_lower');

SELECT deliver.drop_queue('q14_pause');
SELECT deliver.drop_queue('q14_amo');
SELECT deliver.drop_queue('q14_eo');
SELECT deliver.drop_queue('q14_rate');
