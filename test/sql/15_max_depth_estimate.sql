-- max_depth without a count: a send far from the limit is judged from the
-- group's last count and what was sent and finished since (an upper bound
-- of its depth); near the limit it counts.  Every case checks that sends
-- are accepted and refused exactly as the limit says.
\set VERBOSITY default
\i test/helpers.psql
\set VERBOSITY terse

SELECT deliver.create_queue('q15e', max_depth => 4, visibility_timeout => '1 hour');
SELECT deliver.send('q15e', jsonb_build_object('n', i)) FROM generate_series(1, 4) i;
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 5}')$$);

-- acks of messages in flight lower the estimate: room for exactly two
CREATE TEMP TABLE d AS SELECT message_id, delivery_id FROM deliver.receive('q15e', 2);
SELECT count(*) FROM d WHERE deliver.ack('q15e', delivery_id);
SELECT deliver.send_batch('q15e', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[]) IS NOT NULL AS sent;
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 6}')$$);
SELECT depth, in_flight FROM deliver.metrics('q15e');

-- messages in flight are not in the depth: room for two more
DROP TABLE d;
CREATE TEMP TABLE d AS SELECT message_id, delivery_id FROM deliver.receive('q15e', 2);
SELECT deliver.send('q15e', '{"n": 7}') IS NOT NULL AS sent;
SELECT deliver.send('q15e', '{"n": 8}') IS NOT NULL AS sent;
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 9}')$$);
-- acking them frees nothing in the depth: still full
SELECT count(*) FROM d WHERE deliver.ack('q15e', delivery_id);
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 9}')$$);

-- dead-letter moves lower it too
DROP TABLE d;
CREATE TEMP TABLE d AS SELECT message_id, delivery_id FROM deliver.receive('q15e', 3);
SELECT count(*) FROM d WHERE deliver.nack('q15e', delivery_id, dead_letter => true);
SELECT deliver.send_batch('q15e', ARRAY['{"b": 3}', '{"b": 4}', '{"b": 5}']::jsonb[]) IS NOT NULL AS sent;
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 10}')$$);
SELECT depth, in_flight, dead_letters FROM deliver.metrics('q15e');

-- a rolled-back ack does not count
DROP TABLE d;
CREATE TEMP TABLE d AS SELECT message_id, delivery_id FROM deliver.receive('q15e', 1);
BEGIN;
SELECT count(*) FROM d WHERE deliver.ack('q15e', delivery_id);
ROLLBACK;
SELECT deliver.send('q15e', '{"n": 11}') IS NOT NULL AS sent;
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 12}')$$);
SELECT count(*) FROM d WHERE deliver.ack('q15e', delivery_id);
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 12}')$$);

-- purge_queue empties it: room for four again, not five
SELECT deliver.purge_queue('q15e') > 0 AS purged;
SELECT deliver.send_batch('q15e', ARRAY['{}', '{}', '{}']::jsonb[]) IS NOT NULL AS sent;
SELECT deliver.send('q15e', '{"n": 13}') IS NOT NULL AS sent;
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 14}')$$);

-- reset_consumer_group: 'latest' finishes everything (room for four), then
-- 'earliest' brings every stored message back (full again, no send since)
SELECT deliver.reset_consumer_group('q15e', 'default', 'latest');
SELECT deliver.send_batch('q15e', ARRAY['{}', '{}']::jsonb[]) IS NOT NULL AS sent;
SELECT deliver.reset_consumer_group('q15e', 'default', 'earliest');
SELECT depth > 4 AS over FROM deliver.metrics('q15e');
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 15}')$$);
SELECT deliver.reset_consumer_group('q15e', 'default', 'latest');
SELECT deliver.send_batch('q15e', ARRAY['{}', '{}', '{}', '{}']::jsonb[]) IS NOT NULL AS sent;
SELECT pg_temp.try($$SELECT deliver.send('q15e', '{"n": 16}')$$);

-- two groups: the one behind decides; a far limit is judged without a count
SELECT deliver.create_queue('q15e2', max_depth => 1000, visibility_timeout => '1 hour');
SELECT deliver.create_consumer_group('q15e2', 'fast');
SELECT deliver.send_batch('q15e2', array_agg(jsonb_build_object('n', i))) IS NOT NULL AS sent
  FROM generate_series(1, 600) i;
SELECT count(*) FROM deliver.receive('q15e2', 500, consumer_group => 'fast') r
  WHERE deliver.ack('q15e2', r.delivery_id);
SELECT deliver.send('q15e2', jsonb_build_object('n', i)) IS NOT NULL AS sent FROM generate_series(1, 3) i;
SELECT deliver.send_batch('q15e2', array_agg(jsonb_build_object('n', i))) IS NOT NULL AS sent
  FROM generate_series(1, 397) i;
SELECT pg_temp.try($$SELECT deliver.send('q15e2', '{"n": 0}')$$);
SELECT consumer_group, depth FROM deliver.metrics('q15e2') ORDER BY 1;
SELECT count(*) FROM deliver.receive('q15e2', 10) r WHERE deliver.ack('q15e2', r.delivery_id);
SELECT deliver.send_batch('q15e2', array_agg(jsonb_build_object('n', i))) IS NOT NULL AS sent
  FROM generate_series(1, 10) i;
SELECT pg_temp.try($$SELECT deliver.send('q15e2', '{"n": 0}')$$);

-- overflow drop_oldest: far from the limit nothing is dropped
SELECT deliver.create_queue('q15e3', max_depth => 3, overflow => 'drop_oldest');
SELECT deliver.send('q15e3', jsonb_build_object('n', i)) IS NOT NULL AS sent FROM generate_series(1, 2) i;
SELECT count(*) FROM deliver.receive('q15e3', 1) r WHERE deliver.ack('q15e3', r.delivery_id);
SELECT deliver.send('q15e3', jsonb_build_object('n', i)) IS NOT NULL AS sent FROM generate_series(3, 4) i;
SELECT depth, dead_letters FROM deliver.metrics('q15e3');
SELECT deliver.send('q15e3', '{"n": 5}') IS NOT NULL AS sent;
SELECT depth, dead_letters FROM deliver.metrics('q15e3');
SELECT payload FROM deliver.peek('q15e3', 10) ORDER BY message_id;

-- at_most_once: its receives are not counted as finishes; the count still is exact
SELECT deliver.create_queue('q15e4', max_depth => 3, guarantee => 'at_most_once');
SELECT deliver.send('q15e4', jsonb_build_object('n', i)) IS NOT NULL AS sent FROM generate_series(1, 3) i;
SELECT count(*) FROM deliver.receive('q15e4', 2);
SELECT deliver.send('q15e4', jsonb_build_object('n', i)) IS NOT NULL AS sent FROM generate_series(4, 5) i;
SELECT pg_temp.try($$SELECT deliver.send('q15e4', '{"n": 6}')$$);

SELECT deliver.drop_queue('q15e');
SELECT deliver.drop_queue('q15e2');
SELECT deliver.drop_queue('q15e3');
SELECT deliver.drop_queue('q15e4');
