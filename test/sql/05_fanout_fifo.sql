-- Fan-out to consumer groups, start_from, and ordering (FIFO message groups).
\set VERBOSITY terse
\i test/helpers.psql

--
-- fan-out: every group gets every message once
--
SELECT deliver.create_queue('q05', retry_base => '0');
SELECT deliver.create_consumer_group('q05', 'billing');
SELECT deliver.create_consumer_group('q05', 'audit');
SELECT deliver.send_batch('q05', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[]);
SELECT message_id, payload, attempt FROM deliver.receive('q05', 10);
SELECT message_id, payload, attempt FROM deliver.receive('q05', 10, consumer_group => 'billing');
-- competing consumers in one group share the work
SELECT message_id FROM deliver.receive('q05', 2, consumer_group => 'audit');
SELECT message_id FROM deliver.receive('q05', 2, consumer_group => 'audit');
SELECT message_id FROM deliver.receive('q05', 2, consumer_group => 'audit');
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q05');
SELECT deliver.purge_queue('q05') IS NOT NULL AS purged;
-- an ack in one group does not finish the message for the others
SELECT deliver.send('q05', '{"n": 4}');
SELECT delivery_id AS d_default FROM deliver.receive('q05') \gset
SELECT delivery_id AS d_billing FROM deliver.receive('q05', consumer_group => 'billing') \gset
SELECT deliver.ack('q05', :d_default);
SELECT consumer_group, depth, in_flight, acked_total FROM deliver.metrics('q05');
SELECT message_id FROM deliver.receive('q05', consumer_group => 'audit');
SELECT deliver.ack('q05', :d_billing);
SELECT consumer_group, depth, in_flight, acked_total FROM deliver.metrics('q05');
-- nack in one group leaves the other groups alone
SELECT deliver.send('q05', '{"n": 5}');
SELECT delivery_id AS d FROM deliver.receive('q05', consumer_group => 'billing') \gset
SELECT deliver.nack('q05', :d, 'billing failed', '0');
SELECT message_id, attempt FROM deliver.receive('q05', consumer_group => 'billing');
SELECT message_id, attempt FROM deliver.receive('q05');
SELECT message_id, attempt FROM deliver.receive('q05', consumer_group => 'audit');
-- a dropped group's leases are gone; other groups are untouched
SELECT deliver.drop_consumer_group('q05', 'audit');
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q05');

--
-- start_from: latest (the default) or earliest
--
SELECT deliver.create_queue('q05_start', 'at_most_once');
SELECT deliver.send_batch('q05_start', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[]);
-- the default group has taken message 1 before the new groups exist
SELECT message_id FROM deliver.receive('q05_start');
SELECT deliver.create_consumer_group('q05_start', 'late');
SELECT deliver.create_consumer_group('q05_start', 'late_explicit', 'latest');
SELECT deliver.create_consumer_group('q05_start', 'replay', 'earliest');
SELECT deliver.send('q05_start', '{"n": 3}');
SELECT message_id FROM deliver.receive('q05_start', 10, consumer_group => 'late');
SELECT message_id FROM deliver.receive('q05_start', 10, consumer_group => 'late_explicit');
-- earliest: every message still stored, including one the default group consumed
SELECT message_id FROM deliver.receive('q05_start', 10, consumer_group => 'replay');
SELECT message_id FROM deliver.receive('q05_start', 10);
-- a group created inside the sending transaction sees that transaction's messages
BEGIN;
SELECT deliver.create_consumer_group('q05_start', 'same_tx');
SELECT deliver.send('q05_start', '{"n": 4}');
COMMIT;
SELECT message_id FROM deliver.receive('q05_start', 10, consumer_group => 'same_tx');
SELECT message_id FROM deliver.receive('q05_start', 10, consumer_group => 'late');

--
-- ordering: without FIFO, messages are delivered in send order, keys or not
--
SELECT deliver.create_queue('q05_keys', retry_base => '0');
SELECT deliver.send_batch('q05_keys', ARRAY['{"k": "a", "i": 1}', '{"k": "b", "i": 1}', '{"k": "a", "i": 2}',
                                            '{"i": 0}', '{"k": "a", "i": 3}']::jsonb[],
                          ordering_keys => ARRAY['a', 'b', 'a', NULL, 'a']);
SELECT deliver.send('q05_keys', '{"k": "b", "i": 2}', ordering_key => 'b');
SELECT message_id, ordering_key, payload FROM deliver.receive('q05_keys', 10);

--
-- FIFO: a key's next message waits while an earlier one is leased
--
SELECT deliver.create_queue('q05_fifo', fifo => true, retry_base => '0', max_attempts => 3);
SELECT deliver.send_batch('q05_fifo', ARRAY['{"a": 1}', '{"a": 2}', '{"b": 1}', '{"none": 1}', '{"a": 3}', '{"b": 2}', '{"none": 2}']::jsonb[],
                          ordering_keys => ARRAY['a', 'a', 'b', NULL, 'a', 'b', NULL]);
-- the first of each key, and the messages without a key
CREATE TEMP TABLE leases AS
    SELECT * FROM deliver.receive('q05_fifo', 10, visibility_timeout => '1 minute');
SELECT message_id, ordering_key, payload FROM leases ORDER BY message_id;
SELECT message_id FROM deliver.receive('q05_fifo', 10);
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q05_fifo');
-- acking a1 releases a2, and nothing else
SELECT deliver.ack('q05_fifo', delivery_id) FROM leases WHERE payload = '{"a": 1}';
INSERT INTO leases SELECT * FROM deliver.receive('q05_fifo', 10, visibility_timeout => '1 minute')
RETURNING message_id, ordering_key, payload;
SELECT message_id FROM deliver.receive('q05_fifo', 10);
-- a nacked message keeps its key's place: it comes back before the next of its key
SELECT deliver.nack('q05_fifo', delivery_id, 'b1 failed', '0') FROM leases WHERE payload = '{"b": 1}';
DELETE FROM leases WHERE payload = '{"b": 1}';
INSERT INTO leases SELECT * FROM deliver.receive('q05_fifo', 10, visibility_timeout => '200 milliseconds')
RETURNING message_id, ordering_key, payload, attempt;
-- so does a message whose lease ran out
-- a sleep, not a wait: the 200 ms lease runs out
SELECT pg_sleep(0.5);
SELECT message_id, ordering_key, payload, attempt
  FROM deliver.receive('q05_fifo', 10, visibility_timeout => '200 milliseconds');
-- ... until its attempts are used up: b1 goes to the dead letters (the
-- worker's sweep moves it), then b2 is next
SELECT pg_temp.wait_until($$SELECT count(*) = 1 FROM deliver.dead_letters('q05_fifo')$$);
SELECT message_id, attempts, reason FROM deliver.dead_letters('q05_fifo');
SELECT message_id, ordering_key, payload, attempt FROM deliver.receive('q05_fifo', 10, visibility_timeout => '1 minute');
-- keys without an earlier message leased go at once; a later key message waits for the key, not the queue
SELECT deliver.send('q05_fifo', '{"c": 1}', ordering_key => 'c');
SELECT deliver.send('q05_fifo', '{"a": 4}', ordering_key => 'a');
SELECT message_id, ordering_key, payload FROM deliver.receive('q05_fifo', 10, visibility_timeout => '1 minute');
-- in key order, one at a time
SELECT deliver.ack('q05_fifo', delivery_id) FROM leases WHERE payload = '{"a": 2}';
SELECT message_id, ordering_key, payload, deliver.ack('q05_fifo', delivery_id) AS acked
  FROM deliver.receive('q05_fifo', 10);
SELECT message_id, ordering_key, payload, deliver.ack('q05_fifo', delivery_id) AS acked
  FROM deliver.receive('q05_fifo', 10);
SELECT message_id, ordering_key, payload FROM deliver.receive('q05_fifo', 10);
-- an ack that rolls back keeps the key blocked; a receive that rolls back releases nothing early
SELECT deliver.send_batch('q05_fifo', ARRAY['{"d": 1}', '{"d": 2}']::jsonb[], ordering_keys => ARRAY['d', 'd']);
BEGIN;
SELECT message_id, ordering_key, payload FROM deliver.receive('q05_fifo', 10);
ROLLBACK;
SELECT message_id, ordering_key, payload, delivery_id AS d FROM deliver.receive('q05_fifo', 10) \gset
SELECT :message_id AS message_id, :'payload' AS payload;
BEGIN;
SELECT deliver.ack('q05_fifo', :d);
ROLLBACK;
SELECT message_id FROM deliver.receive('q05_fifo', 10);
SELECT deliver.ack('q05_fifo', :d);
SELECT message_id, ordering_key, payload, deliver.ack('q05_fifo', delivery_id) AS acked
  FROM deliver.receive('q05_fifo', 10);
-- FIFO groups: each consumer group has its own order
SELECT deliver.create_consumer_group('q05_fifo', 'other');
SELECT deliver.send_batch('q05_fifo', ARRAY['{"e": 1}', '{"e": 2}']::jsonb[], ordering_keys => ARRAY['e', 'e']);
SELECT message_id, payload FROM deliver.receive('q05_fifo', 10, consumer_group => 'other');
SELECT message_id, payload, deliver.ack('q05_fifo', delivery_id) AS acked
  FROM deliver.receive('q05_fifo', 10);
SELECT message_id, payload FROM deliver.receive('q05_fifo', 10);
SELECT message_id FROM deliver.receive('q05_fifo', 10, consumer_group => 'other');
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q05_fifo');

DROP TABLE leases;
SELECT deliver.drop_queue('q05');
SELECT deliver.drop_queue('q05_start');
SELECT deliver.drop_queue('q05_keys');
SELECT deliver.drop_queue('q05_fifo');
