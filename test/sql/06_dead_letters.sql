-- Dead letters: max_attempts through nack or lease expiry, dead_letters(),
-- redrive(), and metrics().
\set VERBOSITY terse
\i test/helpers.psql
SELECT deliver.create_queue('q06', max_attempts => 2, retry_base => '0');
SELECT deliver.create_consumer_group('q06', 'second');

-- metrics of an empty queue
SELECT consumer_group, depth, in_flight, delayed, dead_letters, oldest_age,
       sent_total, acked_total, dead_total
  FROM deliver.metrics('q06');
SELECT * FROM deliver.dead_letters('q06');

--
-- max_attempts reached through nack: dead on the next receive, with reason and last error
--
SELECT deliver.send('q06', '{"n": "poison"}', '{"trace": "t1"}', 'key-p');
SELECT deliver.nack('q06', delivery_id, 'boom 1', '0') FROM deliver.receive('q06');
SELECT message_id, attempt, deliver.nack('q06', delivery_id, 'boom 2', '0') AS nacked
  FROM deliver.receive('q06');
-- attempt 2 was the last: the next receive moves it to the dead letters and returns nothing
SELECT message_id FROM deliver.receive('q06', 10);
SELECT message_id, payload, headers, ordering_key, attempts, reason, last_error,
       enqueued_at <= dead_at AS enqueued_before_dead
  FROM deliver.dead_letters('q06');
-- the other group still has it
SELECT message_id, payload, attempt FROM deliver.receive('q06', 10, consumer_group => 'second');

--
-- max_attempts reached through lease expiry
--
SELECT deliver.send('q06', '{"n": "slow"}');
SELECT message_id, attempt FROM deliver.receive('q06', visibility_timeout => '200 milliseconds');
-- a sleep, not a wait: the 200 ms lease runs out
SELECT pg_sleep(0.5);
SELECT message_id, attempt FROM deliver.receive('q06', visibility_timeout => '200 milliseconds');
-- a sleep, not a wait: the 200 ms lease runs out
SELECT pg_sleep(0.5);
SELECT message_id FROM deliver.receive('q06', 10);
SELECT message_id, payload, attempts, reason, last_error FROM deliver.dead_letters('q06');
-- a nack with no error text
SELECT deliver.send('q06', '{"n": "quiet"}');
SELECT deliver.nack('q06', delivery_id, NULL, '0') FROM deliver.receive('q06');
SELECT deliver.nack('q06', delivery_id, NULL, '0') FROM deliver.receive('q06');
SELECT message_id FROM deliver.receive('q06', 10);
SELECT message_id, attempts, reason, last_error FROM deliver.dead_letters('q06', 'default');
-- a dead-letter move that rolls back leaves the message where it was
SELECT deliver.send('q06', '{"n": "rolled back move"}');
SELECT deliver.nack('q06', delivery_id, 'x', '0') FROM deliver.receive('q06');
SELECT deliver.nack('q06', delivery_id, 'y', '0') FROM deliver.receive('q06');
BEGIN;
SELECT message_id FROM deliver.receive('q06', 10);
SELECT count(*) AS dead_in_tx FROM deliver.dead_letters('q06', 'default');
ROLLBACK;
SELECT count(*) AS dead_after_rollback FROM deliver.dead_letters('q06', 'default');
SELECT message_id FROM deliver.receive('q06', 10);
SELECT count(*) AS dead FROM deliver.dead_letters('q06', 'default');

--
-- dead_letters(): filter by group, limit, bad arguments
--
SELECT message_id, payload FROM deliver.dead_letters('q06', NULL, 2);
SELECT message_id FROM deliver.dead_letters('q06', 'second');
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver.dead_letters('q06', 'nobody')$$),
    ($$SELECT * FROM deliver.dead_letters('q06', NULL, 0)$$),
    ($$SELECT * FROM deliver.dead_letters('q06', NULL, -1)$$),
    ($$SELECT * FROM deliver.dead_letters('q06', NULL, NULL)$$),
    ($$SELECT * FROM deliver.dead_letters('q06_nowhere')$$),
    ($$SELECT * FROM deliver.dead_letters(NULL)$$)) AS t(cmd);

--
-- metrics(): depth, in_flight, delayed, dead_letters, oldest_age, totals
--
SELECT consumer_group, depth, in_flight, delayed, dead_letters, oldest_age IS NOT NULL AS has_oldest,
       sent_total, acked_total, dead_total
  FROM deliver.metrics('q06');

--
-- redrive(): dead letters go back to the group they died in, as new messages
--
-- one message by id
SELECT message_id AS slow_id FROM deliver.dead_letters('q06') WHERE payload = '{"n": "slow"}' \gset
SELECT deliver.redrive('q06', ARRAY[:slow_id]::bigint[]);
SELECT message_id, payload FROM deliver.dead_letters('q06', 'default');
-- only the default group gets it, as a new message (a new id) with its payload
SELECT message_id, payload, attempt FROM deliver.receive('q06', 10, consumer_group => 'second');
SELECT message_id, payload, attempt, deliver.ack('q06', delivery_id) AS acked
  FROM deliver.receive('q06', 10);
-- ids that are not dead letters redrive nothing
SELECT deliver.redrive('q06', ARRAY[:slow_id, 12345]::bigint[]);
SELECT deliver.redrive('q06', '{}');
-- by group: nothing in 'second'
SELECT deliver.redrive('q06', consumer_group => 'second');
-- all of them: headers and ordering key are kept
SELECT deliver.redrive('q06');
SELECT * FROM deliver.dead_letters('q06');
SELECT payload, headers, ordering_key, attempt FROM deliver.receive('q06', 10) ORDER BY message_id;
-- a redrive that rolls back redrives nothing
SELECT deliver.send('q06', '{"n": "dies again"}') > 0 AS sent;
SELECT deliver.nack('q06', delivery_id, 'e1', '0') FROM deliver.receive('q06', 10, consumer_group => 'second');
SELECT deliver.nack('q06', delivery_id, 'e2', '0') FROM deliver.receive('q06', 10, consumer_group => 'second')
 WHERE payload = '{"n": "dies again"}';
SELECT message_id FROM deliver.receive('q06', 10, consumer_group => 'second');
SELECT payload, reason, last_error FROM deliver.dead_letters('q06', 'second');
BEGIN;
SELECT deliver.redrive('q06', consumer_group => 'second');
ROLLBACK;
SELECT payload FROM deliver.dead_letters('q06', 'second');
SELECT deliver.redrive('q06', consumer_group => 'second');
SELECT payload, attempt FROM deliver.receive('q06', 10, consumer_group => 'second');
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.redrive('q06_nowhere')$$),
    ($$SELECT deliver.redrive('q06', consumer_group => 'nowhere')$$),
    ($$SELECT deliver.redrive(NULL)$$)) AS t(cmd);

-- a dead letter of an exactly-once queue is redriven without its idempotency key
SELECT deliver.create_queue('q06_eo', 'exactly_once', max_attempts => 1);
SELECT deliver.send('q06_eo', '{"eo": 1}', idempotency_key => 'eo-1');
SELECT deliver.nack('q06_eo', delivery_id, 'no', '0') FROM deliver.receive('q06_eo');
SELECT message_id FROM deliver.receive('q06_eo');
SELECT message_id, reason, last_error FROM deliver.dead_letters('q06_eo');
SELECT deliver.redrive('q06_eo');
SELECT message_id, payload, attempt FROM deliver.receive('q06_eo');
-- the key still maps to the first id
SELECT deliver.send('q06_eo', '{"eo": "again"}', idempotency_key => 'eo-1');

-- dropping a group drops its dead letters, and only its own
SELECT deliver.send('q06', '{"n": "dies in both groups"}') > 0 AS sent;
SELECT deliver.nack('q06', delivery_id, 'f1', '0') FROM deliver.receive('q06', 10, consumer_group => 'second');
SELECT deliver.nack('q06', delivery_id, 'f2', '0') FROM deliver.receive('q06', 10, consumer_group => 'second');
SELECT message_id FROM deliver.receive('q06', 10, consumer_group => 'second');
SELECT deliver.nack('q06', delivery_id, 'f1', '0') FROM deliver.receive('q06', 10)
 WHERE payload = '{"n": "dies in both groups"}';
SELECT deliver.nack('q06', delivery_id, 'f2', '0') FROM deliver.receive('q06', 10);
SELECT message_id FROM deliver.receive('q06', 10);
SELECT payload, consumer_group_count FROM (
    SELECT payload, count(*) AS consumer_group_count FROM deliver.dead_letters('q06') GROUP BY payload) AS d;
SELECT deliver.drop_consumer_group('q06', 'second');
SELECT payload, last_error FROM deliver.dead_letters('q06');

--
-- metrics() in detail
--
SELECT deliver.create_queue('q06_m', max_attempts => 1, retry_base => '0');
SELECT deliver.create_consumer_group('q06_m', 'other');
SELECT deliver.send_batch('q06_m', array_agg(jsonb_build_object('n', i))) FROM generate_series(1, 6) AS i;
SELECT deliver.send('q06_m', '{"n": "later"}', delay => '1 hour');
-- default: 2 acked, 1 dead, 1 in flight, 2 waiting; other: untouched
SELECT count(*) FILTER (WHERE deliver.ack('q06_m', delivery_id)) AS acked FROM deliver.receive('q06_m', 2);
SELECT deliver.nack('q06_m', delivery_id, 'bad', '0') FROM deliver.receive('q06_m');
SELECT message_id FROM deliver.receive('q06_m');
SELECT consumer_group, depth, in_flight, delayed, dead_letters,
       oldest_age >= '0' AS oldest_age_ok, sent_total, acked_total, dead_total
  FROM deliver.metrics('q06_m');
-- metrics of a queue that does not exist
SELECT pg_temp.try($$SELECT * FROM deliver.metrics('q06_nowhere')$$);
-- NULL: every queue this role may read metrics of
SELECT count(DISTINCT queue_name) >= 3 AS several FROM deliver.metrics(NULL);

--
-- More messages out of attempts than a receive takes: a receive of one
-- message moves them to the dead letters in batches (it used to overrun
-- its array of dead letters and crash the server)
--
SELECT deliver.create_queue('q06_many', max_attempts => 5, retry_base => '0');
SELECT count(*) AS sent FROM unnest(deliver.send_batch('q06_many',
    ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 160) AS i)));
SELECT count(*) FILTER (WHERE deliver.nack('q06_many', delivery_id, 'again', '0')) AS nacked
  FROM deliver.receive('q06_many', 160) \g
\g
\g
\g
\g
SELECT count(*) AS received FROM deliver.receive('q06_many', 1);
SELECT count(*) AS dead FROM deliver.dead_letters('q06_many', max_messages => 1000);
SELECT count(*) AS received FROM deliver.receive('q06_many', 1);
SELECT count(*) AS dead, min(attempts) AS attempts, min(reason) AS reason
  FROM deliver.dead_letters('q06_many', max_messages => 1000);
SELECT deliver.drop_queue('q06_many');

-- a nack's error is kept to 119 bytes, cut on a character boundary: what is
-- stored stays valid in the database encoding (pg_dump/restore read it)
SELECT deliver.create_queue('q06_utf8', max_attempts => 1);
SELECT deliver.send('q06_utf8', '{}') > 0 AS sent;
SELECT deliver.nack('q06_utf8', delivery_id, repeat('é', 100), '0') FROM deliver.receive('q06_utf8');
SELECT count(*) AS received FROM deliver.receive('q06_utf8');
SELECT last_error = repeat('é', 59) AS clipped, octet_length(last_error) AS bytes,
       convert_from(convert_to(last_error, 'UTF8'), 'UTF8') = last_error AS valid
  FROM deliver.dead_letters('q06_utf8');
SELECT deliver.drop_queue('q06_utf8');

SELECT deliver.drop_queue('q06');
SELECT deliver.drop_queue('q06_eo');
SELECT deliver.drop_queue('q06_m');
