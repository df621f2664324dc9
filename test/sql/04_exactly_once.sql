-- exactly-once: idempotency keys, fenced acks, transactional consume and
-- two-phase commit.
\set VERBOSITY terse
\i test/helpers.psql
SELECT deliver.create_queue('q04', 'exactly_once', retry_base => '0');
-- the consumer's own writes (a plain table: prepared transactions cannot use temporary ones)
CREATE TABLE q04_effects (message_id bigint, payload jsonb);

--
-- producer idempotency
--
-- every message needs an idempotency key
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.send('q04', '{"n": 1}')$$),
    ($$SELECT deliver.send('q04', '{"n": 1}', idempotency_key => NULL)$$),
    ($$SELECT deliver.send_batch('q04', ARRAY['{"n": 1}']::jsonb[])$$),
    ($$SELECT deliver.send_batch('q04', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[], idempotency_keys => ARRAY['a', NULL])$$),
    ($$SELECT deliver.send('q04', '{"n": 1}', idempotency_key => '')$$)) AS t(cmd);
SELECT count(*) AS stored FROM deliver.receive('q04', 10);
-- the first send of a key stores a message; a second returns the first id and stores nothing
SELECT deliver.send('q04', '{"n": "first"}', idempotency_key => 'k1') AS k1 \gset
SELECT :k1 AS k1;
SELECT deliver.send('q04', '{"n": "second"}', idempotency_key => 'k1') = :k1 AS same_id;
SELECT deliver.send('q04', '{"n": "third"}', '{"h": 1}', 'some-key', 'k1', '1 hour') = :k1 AS same_id;
SELECT deliver.send_batch('q04', ARRAY['{"n": "fourth"}']::jsonb[], idempotency_keys => ARRAY['k1']) = ARRAY[:k1]::bigint[] AS same_id;
-- keys are exact: case and spaces count
SELECT deliver.send('q04', '{"n": "K1"}', idempotency_key => 'K1') <> :k1 AS new_id;
SELECT deliver.send('q04', '{"n": "k1 "}', idempotency_key => 'k1 ') <> :k1 AS new_id;
SELECT message_id = :k1 AS is_k1, payload, headers, ordering_key FROM deliver.receive('q04', 10)
 ORDER BY message_id;
SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q04');
-- duplicates inside one batch get the first one's id; a key seen before gets its old id
SELECT deliver.send_batch('q04', ARRAY['{"b": "a1"}', '{"b": "b1"}', '{"b": "a2"}', '{"b": "k1"}', '{"b": "b2"}']::jsonb[],
                          idempotency_keys => ARRAY['a', 'b', 'a', 'k1', 'b']) AS ids \gset
SELECT ids[1] = ids[3] AS a_same, ids[2] = ids[5] AS b_same, ids[1] <> ids[2] AS a_b_differ,
       ids[4] = :k1 AS k1_same
  FROM (SELECT :'ids'::bigint[] AS ids) AS t;
SELECT payload FROM deliver.receive('q04', 10) ORDER BY message_id;
-- the same key on another queue is another key
SELECT deliver.create_queue('q04_other', 'exactly_once');
SELECT deliver.send('q04_other', '{"other": true}', idempotency_key => 'k1');
SELECT message_id, payload FROM deliver.receive('q04_other');
-- idempotency keys are optional on other queues, and work there too
SELECT deliver.create_queue('q04_alo');
SELECT deliver.send('q04_alo', '{"n": 1}');
SELECT deliver.send('q04_alo', '{"n": 2}', idempotency_key => 'x');
SELECT deliver.send('q04_alo', '{"n": 3}', idempotency_key => 'x');
SELECT message_id, payload FROM deliver.receive('q04_alo', 10);
-- a key claimed by a transaction that rolled back is free again
BEGIN;
SELECT deliver.send('q04', '{"r": "rolled back"}', idempotency_key => 'r') AS r1 \gset
ROLLBACK;
SELECT deliver.send('q04', '{"r": "committed"}', idempotency_key => 'r') <> :r1 AS new_id;
SELECT payload FROM deliver.receive('q04', 10);
-- a key stays claimed after the message was acked, and after a purge
SELECT deliver.send('q04', '{"p": 1}', idempotency_key => 'p') AS p1 \gset
SELECT deliver.ack('q04', delivery_id) FROM deliver.receive('q04');
SELECT deliver.send('q04', '{"p": 2}', idempotency_key => 'p') = :p1 AS same_id;
SELECT deliver.purge_queue('q04') IS NOT NULL AS purged;
SELECT deliver.send('q04', '{"p": 3}', idempotency_key => 'p') = :p1 AS same_id;
SELECT count(*) AS stored FROM deliver.receive('q04', 10);
-- after the dedup window a key is new again
SELECT deliver.create_queue('q04_window', 'exactly_once', dedup_window => '1 second');
SELECT deliver.send('q04_window', '{"w": 1}', idempotency_key => 'w') AS w1 \gset
SELECT deliver.send('q04_window', '{"w": 2}', idempotency_key => 'w') = :w1 AS same_id;
-- a sleep, not a wait: the dedup window (1 second) passes
SELECT pg_sleep(1.5);
SELECT deliver.send('q04_window', '{"w": 3}', idempotency_key => 'w') <> :w1 AS new_id;
SELECT payload FROM deliver.receive('q04_window', 10);

--
-- fenced acks
--
SELECT deliver.send('q04', '{"f": 1}', idempotency_key => 'f1') > 0 AS sent;
SELECT delivery_id AS d_old FROM deliver.receive('q04', visibility_timeout => '200 milliseconds') \gset
-- a sleep, not a wait: the 200 ms lease runs out
SELECT pg_sleep(0.5);
-- the lease ran out and the message went to another consumer
SELECT payload, attempt, delivery_id AS d_new FROM deliver.receive('q04') \gset
SELECT :'payload' AS payload, :attempt AS attempt;
-- an ack with the stale token is rejected, and changes nothing
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q04', :d_old));
SELECT pg_temp.try(format('SELECT deliver.ack_batch(%L, ARRAY[%s])', 'q04', :d_old));
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q04');
-- the current token acks it; a second ack changes nothing
SELECT deliver.ack('q04', :d_new);
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q04', :d_new));
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q04');
SELECT message_id FROM deliver.receive('q04');

--
-- transactional consume: receive, own writes and ack commit or roll back together
--
-- commit: the effect is there and the message is gone
SELECT deliver.send('q04', '{"t": 2}', idempotency_key => 't2') > 0 AS sent;
BEGIN;
SELECT message_id, delivery_id AS d, payload FROM deliver.receive('q04') \gset
INSERT INTO q04_effects VALUES (:message_id, :'payload');
SELECT deliver.ack('q04', :d);
COMMIT;
SELECT payload FROM q04_effects;
SELECT message_id FROM deliver.receive('q04');
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q04');
-- rollback: no effect, and the message is free at once
SELECT deliver.send('q04', '{"t": 3}', idempotency_key => 't3') > 0 AS sent;
BEGIN;
SELECT message_id, delivery_id AS d, payload FROM deliver.receive('q04') \gset
INSERT INTO q04_effects VALUES (:message_id, :'payload');
SELECT deliver.ack('q04', :d);
ROLLBACK;
SELECT payload FROM q04_effects;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q04');
SELECT payload, delivery_id <> :d AS new_delivery_id FROM deliver.receive('q04', visibility_timeout => '1 minute');
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q04', :d));
SELECT deliver.purge_queue('q04') IS NOT NULL AS purged;
-- a transaction that fails after receiving frees the message at once too
SELECT deliver.send('q04', '{"t": 4}', idempotency_key => 't4') > 0 AS sent;
BEGIN;
SELECT payload FROM deliver.receive('q04');
SELECT 1 / 0;
ROLLBACK;
SELECT payload FROM deliver.receive('q04');
SELECT deliver.purge_queue('q04') IS NOT NULL AS purged;
-- rolling back to a savepoint frees what was received after it
SELECT deliver.send('q04', '{"t": 5}', idempotency_key => 't5') > 0 AS sent;
BEGIN;
SAVEPOINT before_receive;
SELECT payload FROM deliver.receive('q04');
ROLLBACK TO SAVEPOINT before_receive;
SELECT message_id, delivery_id AS d, payload FROM deliver.receive('q04') \gset
SELECT :'payload' AS payload;
INSERT INTO q04_effects VALUES (:message_id, :'payload');
-- an ack rolled back to a savepoint can be done again
SAVEPOINT before_ack;
SELECT deliver.ack('q04', :d);
ROLLBACK TO SAVEPOINT before_ack;
SELECT deliver.ack('q04', :d);
COMMIT;
SELECT payload FROM q04_effects ORDER BY message_id;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q04');

--
-- two-phase commit
--
-- send in a prepared transaction: nothing until COMMIT PREPARED
SELECT acked_total, sent_total AS sent_before FROM deliver.metrics('q04') \gset
BEGIN;
SELECT deliver.send('q04', '{"2pc": "send committed"}', idempotency_key => 'tp1') AS tp1 \gset
PREPARE TRANSACTION 'q04_send_commit';
SELECT payload FROM deliver.receive('q04');
COMMIT PREPARED 'q04_send_commit';
SELECT message_id = :tp1 AS same_id, payload, delivery_id AS d FROM deliver.receive('q04') \gset
SELECT :'same_id'::boolean AS same_id, :'payload' AS payload;
SELECT sent_total - :sent_before AS sent FROM deliver.metrics('q04');
-- ack in a prepared transaction
BEGIN;
INSERT INTO q04_effects VALUES (:tp1, :'payload');
SELECT deliver.ack('q04', :d);
PREPARE TRANSACTION 'q04_ack_commit';
-- while it is prepared the message is neither redelivered nor ackable elsewhere
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q04', :d));
SELECT payload FROM deliver.receive('q04');
COMMIT PREPARED 'q04_ack_commit';
SELECT payload FROM q04_effects WHERE message_id = :tp1;
SELECT consumer_group, depth, in_flight, acked_total - :acked_total AS acked FROM deliver.metrics('q04');
SELECT payload FROM deliver.receive('q04');
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q04', :d));
-- send rolled back: nothing, and its key is free again
BEGIN;
SELECT deliver.send('q04', '{"2pc": "send rolled back"}', idempotency_key => 'tp2') AS tp2 \gset
PREPARE TRANSACTION 'q04_send_rollback';
ROLLBACK PREPARED 'q04_send_rollback';
SELECT payload FROM deliver.receive('q04');
SELECT deliver.send('q04', '{"2pc": "sent again"}', idempotency_key => 'tp2') <> :tp2 AS new_id;
-- ack rolled back: the lease is as it was, the same token acks it
SELECT message_id, delivery_id AS d, payload FROM deliver.receive('q04', visibility_timeout => '1 minute') \gset
SELECT :'payload' AS payload;
BEGIN;
INSERT INTO q04_effects VALUES (:message_id, :'payload');
SELECT deliver.ack('q04', :d);
PREPARE TRANSACTION 'q04_ack_rollback';
ROLLBACK PREPARED 'q04_ack_rollback';
SELECT count(*) AS effects FROM q04_effects WHERE message_id = :message_id;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q04');
SELECT deliver.ack('q04', :d);
-- ack rolled back after its lease ran out: the message is redelivered at once
SELECT deliver.send('q04', '{"2pc": "lease ran out"}', idempotency_key => 'tp3') > 0 AS sent;
SELECT delivery_id AS d FROM deliver.receive('q04', visibility_timeout => '200 milliseconds') \gset
BEGIN;
SELECT deliver.ack('q04', :d);
PREPARE TRANSACTION 'q04_ack_expired';
-- a sleep, not a wait: the 200 ms lease runs out while the ack is prepared
SELECT pg_sleep(0.5);
SELECT payload FROM deliver.receive('q04');
ROLLBACK PREPARED 'q04_ack_expired';
WITH r AS (SELECT * FROM deliver.receive('q04'))
SELECT payload, attempt, delivery_id <> :d AS new_delivery_id, deliver.ack('q04', delivery_id) AS acked FROM r;
-- receive in a prepared transaction that rolls back: the message comes back
SELECT deliver.send('q04', '{"2pc": "received, rolled back"}', idempotency_key => 'tp4') > 0 AS sent;
BEGIN;
SELECT payload FROM deliver.receive('q04', visibility_timeout => '200 milliseconds');
PREPARE TRANSACTION 'q04_receive_rollback';
ROLLBACK PREPARED 'q04_receive_rollback';
-- a sleep, not a wait: the 200 ms lease runs out
SELECT pg_sleep(0.5);
WITH r AS (SELECT * FROM deliver.receive('q04'))
SELECT payload, deliver.ack('q04', delivery_id) AS acked FROM r;
-- receive and ack in one prepared transaction, committed
SELECT deliver.send('q04', '{"2pc": "received and acked"}', idempotency_key => 'tp5') > 0 AS sent;
BEGIN;
SELECT deliver.ack('q04', delivery_id) FROM deliver.receive('q04');
PREPARE TRANSACTION 'q04_receive_ack';
COMMIT PREPARED 'q04_receive_ack';
SELECT payload FROM deliver.receive('q04');
SELECT consumer_group, depth, in_flight, acked_total - :acked_total AS acked FROM deliver.metrics('q04');
SELECT count(*) AS prepared_left FROM pg_prepared_xacts WHERE gid LIKE 'q04%';

DROP TABLE q04_effects;
SELECT deliver.drop_queue('q04');
SELECT deliver.drop_queue('q04_other');
SELECT deliver.drop_queue('q04_alo');
SELECT deliver.drop_queue('q04_window');
