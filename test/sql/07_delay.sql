-- Delayed messages and long polling.
\set VERBOSITY terse
\i test/helpers.psql
-- the maintenance worker moves delayed messages when they come due (it
-- comes up within seconds of the database's creation)
SELECT pg_temp.wait_until($$SELECT runs > 0 FROM deliver.worker_status()$$) AS worker_runs;
SELECT deliver.create_queue('q07');

--
-- a delayed message is invisible before its time and visible after
--
SELECT deliver.send('q07', '{"n": "in 1 s"}', delay => '1 second');
SELECT deliver.send('q07', '{"n": "in 1 hour"}', delay => '1 hour');
SELECT deliver.send('q07', '{"n": "now"}');
SELECT message_id, payload FROM deliver.receive('q07', 10);
SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q07');
-- a long poll returns it when it comes due; it keeps the time it was sent
SELECT message_id, payload, attempt, enqueued_at <= clock_timestamp() - interval '1 second' AS enqueued_at_send
  FROM deliver.receive('q07', 10, wait => '30 seconds');
SELECT message_id FROM deliver.receive('q07', 10);
SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q07');

-- a delay of 0 (or NULL) is no delay
SELECT deliver.send('q07', '{"n": "zero"}', delay => '0');
SELECT deliver.send('q07', '{"n": "null"}', delay => NULL);
SELECT message_id, payload FROM deliver.receive('q07', 10);

-- send_batch with a delay: the whole batch waits, and keeps its order
SELECT deliver.send_batch('q07', ARRAY['{"b": 1}', '{"b": 2}', '{"b": 3}']::jsonb[],
                          ordering_keys => ARRAY['k', NULL, 'k'], delay => '1 second');
SELECT message_id FROM deliver.receive('q07', 10);
SELECT message_id, payload, ordering_key FROM deliver.receive('q07', 10, wait => '30 seconds');

-- a delayed message sent in a transaction that rolls back never shows up
BEGIN;
SELECT deliver.send('q07', '{"n": "rolled back"}', delay => '100 milliseconds');
ROLLBACK;
-- a sleep, not a wait: its due time passes
SELECT pg_sleep(0.4);
SELECT message_id, payload FROM deliver.receive('q07', 10);

-- delayed messages with idempotency keys are deduplicated like the others
SELECT deliver.create_queue('q07_eo', 'exactly_once');
SELECT deliver.send('q07_eo', '{"n": 1}', idempotency_key => 'd1', delay => '300 milliseconds');
SELECT deliver.send('q07_eo', '{"n": 2}', idempotency_key => 'd1', delay => '300 milliseconds');
SELECT deliver.send('q07_eo', '{"n": 3}', idempotency_key => 'd1');
SELECT message_id, payload FROM deliver.receive('q07_eo', 10, wait => '30 seconds');
SELECT message_id, payload FROM deliver.receive('q07_eo', 10);

-- every consumer group gets a delayed message
SELECT deliver.create_consumer_group('q07', 'other');
SELECT deliver.send('q07', '{"n": "for both"}', delay => '300 milliseconds');
SELECT message_id, payload FROM deliver.receive('q07', 10, wait => '30 seconds', consumer_group => 'other');
SELECT message_id, payload FROM deliver.receive('q07', 10, wait => '30 seconds');

--
-- long poll
--
-- on an empty queue, wait returns nothing when it runs out
SELECT count(*) FROM deliver.receive('q07', 10, wait => '200 milliseconds');
-- a message already there is returned at once
SELECT deliver.send('q07', '{"n": "waiting"}');
SELECT message_id, payload FROM deliver.receive('q07', 10, wait => '30 seconds');
-- wait returns when a delayed message comes due (well before the wait runs out)
SELECT deliver.send('q07', '{"n": "due soon"}', delay => '300 milliseconds');
SELECT message_id, payload FROM deliver.receive('q07', 10, wait => '30 seconds');
-- ... and when a nacked message is due again
SELECT deliver.send('q07', '{"n": "nacked"}');
SELECT deliver.nack('q07', delivery_id, 'later', '300 milliseconds') FROM deliver.receive('q07');
SELECT message_id, payload, attempt FROM deliver.receive('q07', 10, wait => '30 seconds');
-- ... and when a lease runs out
SELECT deliver.create_queue('q07_expire', retry_base => '0');
SELECT deliver.send('q07_expire', '{"n": "expiring"}');
SELECT message_id FROM deliver.receive('q07_expire', visibility_timeout => '300 milliseconds');
SELECT message_id, attempt FROM deliver.receive('q07_expire', 10, wait => '30 seconds');

SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q07');
-- a purge removes delayed messages
SELECT deliver.purge_queue('q07') >= 1 AS purged;
SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q07');

-- a group created after a delayed message was sent does not get it
-- (start_from latest: only messages sent after the group was created)
SELECT deliver.create_queue('q07_late');
SELECT deliver.send('q07_late', '{"n": "before the group"}', delay => '300 milliseconds');
SELECT deliver.create_consumer_group('q07_late', 'late');
SELECT deliver.send('q07_late', '{"n": "after the group"}', delay => '300 milliseconds');
CREATE TEMP TABLE got AS
    SELECT 'late' AS grp, * FROM deliver.receive('q07_late', 10, wait => '30 seconds', consumer_group => 'late');
-- both have come due (the worker moved them)
SELECT pg_temp.wait_until($$SELECT bool_and(delayed = 0) FROM deliver.metrics('q07_late')$$) AS both_due;
INSERT INTO got SELECT 'late', * FROM deliver.receive('q07_late', 10, consumer_group => 'late');
INSERT INTO got SELECT 'default', * FROM deliver.receive('q07_late', 10, wait => '30 seconds');
INSERT INTO got SELECT 'default', * FROM deliver.receive('q07_late', 10);
SELECT grp, message_id, payload FROM got ORDER BY grp, message_id;
DROP TABLE got;

SELECT deliver.drop_queue('q07_late');
SELECT deliver.drop_queue('q07');
SELECT deliver.drop_queue('q07_eo');
SELECT deliver.drop_queue('q07_expire');
