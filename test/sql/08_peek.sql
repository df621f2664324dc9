-- peek(): the next messages a receive would hand out, without leasing them
-- and without moving the cursor: the redeliveries due first, then the
-- messages not delivered yet; per consumer group; errors.
\set VERBOSITY terse
\i test/helpers.psql
SELECT deliver.create_queue('q08', max_attempts => 3, retry_base => '0');
SELECT deliver.create_consumer_group('q08', 'other');

-- an empty queue
SELECT * FROM deliver.peek('q08');
SELECT deliver.send_batch('q08', array_agg(jsonb_build_object('n', i)),
                          ordering_keys => array_agg('k' || i)) FROM generate_series(1, 5) AS i;
SELECT deliver.send('q08', '{"n": 6}', '{"h": "x"}');
-- the first three, twice: peeking changes nothing
SELECT message_id, payload, headers, ordering_key, attempt, redelivery,
       enqueued_at <= now() AS enqueued FROM deliver.peek('q08', 3);
SELECT message_id, attempt FROM deliver.peek('q08', 3);
-- the metrics did not move: six waiting, none in flight
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q08') ORDER BY 1;
-- a receive gets what peek showed
SELECT message_id, attempt FROM deliver.receive('q08', 2);
-- now the rest of the open window: messages 3 to 6
SELECT message_id, headers FROM deliver.peek('q08', 10);
-- the other group still sees all six
SELECT array_agg(message_id ORDER BY message_id) FROM deliver.peek('q08', 10, 'other');

-- a nacked message comes first, with its next attempt; one nacked with a
-- retry delay does not show until it is due
SELECT message_id, deliver.nack('q08', delivery_id, CASE message_id WHEN 3 THEN 'again' ELSE 'later' END,
                                 CASE message_id WHEN 3 THEN '0' ELSE '1 hour' END::interval)
  FROM deliver.receive('q08', 2);
SELECT message_id, attempt, redelivery FROM deliver.peek('q08', 3);
SELECT message_id, attempt, redelivery FROM deliver.peek('q08', 3);
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q08') ORDER BY 1;
SELECT message_id, attempt FROM deliver.receive('q08', 3);
-- messages committed after the window opened come after it
SELECT deliver.send('q08', '{"n": 7}');
SELECT message_id, attempt, redelivery FROM deliver.peek('q08', 10);
-- a message sent in a transaction still open is not shown
BEGIN;
SELECT deliver.send('q08', '{"n": "open"}') AS open_id \gset
SELECT count(*) AS peeked FROM deliver.peek('q08', 10) WHERE payload = '{"n": "open"}';
COMMIT;
SELECT message_id = :open_id AS open_shown_after_commit FROM deliver.peek('q08', 10)
 WHERE payload = '{"n": "open"}';
-- a message whose attempts are used up is not shown (a receive moves it
-- to the dead letters)
SELECT deliver.create_queue('q08_dead', max_attempts => 1, retry_base => '0');
SELECT deliver.send('q08_dead', '{"n": "poison"}');
SELECT deliver.nack('q08_dead', delivery_id, 'bad', '0') FROM deliver.receive('q08_dead');
SELECT count(*) AS peeked FROM deliver.peek('q08_dead');
SELECT count(*) AS received FROM deliver.receive('q08_dead');
SELECT count(*) AS dead FROM deliver.dead_letters('q08_dead');
-- an at-most-once queue: peek does not consume
SELECT deliver.create_queue('q08_amo', 'at_most_once');
SELECT deliver.send('q08_amo', '{"amo": 1}');
SELECT message_id, attempt FROM deliver.peek('q08_amo');
SELECT message_id, attempt FROM deliver.peek('q08_amo');

-- errors
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver.peek('q08', 0)$$),
    ($$SELECT * FROM deliver.peek('q08', 100001)$$),
    ($$SELECT * FROM deliver.peek('q08', NULL)$$),
    ($$SELECT * FROM deliver.peek('q08', 1, 'nobody')$$),
    ($$SELECT * FROM deliver.peek('q08', 1, NULL)$$),
    ($$SELECT * FROM deliver.peek('q08_nowhere')$$),
    ($$SELECT * FROM deliver.peek(NULL)$$)) AS t(cmd);

SELECT deliver.drop_queue('q08');
SELECT deliver.drop_queue('q08_dead');
SELECT deliver.drop_queue('q08_amo');
