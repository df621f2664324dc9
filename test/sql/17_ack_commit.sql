-- ack_commit: 'durable' (default) or 'async' acks of at_least_once queues.
\set VERBOSITY default
\i test/helpers.psql
\set VERBOSITY terse

-- the default, and the choice at creation
SELECT deliver.create_queue('q17');
SELECT deliver.create_queue('q17_async', ack_commit => 'async', visibility_timeout => '1 hour',
                            max_attempts => 3);
SELECT queue_name, guarantee, ack_commit FROM deliver.list_queues()
 WHERE queue_name LIKE 'q17%' ORDER BY queue_name;

-- bad input: nothing created or changed
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.create_queue('q17_bad', ack_commit => 'eventually')$$),
    ($$SELECT deliver.create_queue('q17_bad', ack_commit => '')$$),
    ($$SELECT deliver.create_queue('q17_bad', ack_commit => 'ASYNC')$$),
    ($$SELECT deliver.create_queue('q17_bad', ack_commit => repeat('x', 10000))$$),
    ($$SELECT deliver.create_queue('q17_bad', 'exactly_once', ack_commit => 'async')$$),
    ($$SELECT deliver.create_queue('q17_bad', 'at_most_once', ack_commit => 'async')$$),
    ($$SELECT deliver.alter_queue('q17', ack_commit => 'sometimes')$$),
    ($$SELECT deliver.alter_queue('q17_nowhere', ack_commit => 'async')$$),
    ($$SELECT deliver.alter_queue(NULL, ack_commit => 'async')$$)) AS t(cmd);
SELECT count(*) FROM deliver.queue WHERE queue_name = 'q17_bad';
-- the errors in full
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT deliver.create_queue('q17_bad', 'exactly_once', ack_commit => 'async');
SELECT deliver.create_queue('q17_bad', 'at_most_once', ack_commit => 'async');
SELECT deliver.create_queue('q17_bad', ack_commit => 'never');
\set VERBOSITY terse
\set SHOW_CONTEXT errors
-- exactly-once and at-most-once queues take 'durable' only, at creation and later
SELECT deliver.create_queue('q17_eo', 'exactly_once', ack_commit => 'durable');
SELECT deliver.create_queue('q17_amo', 'at_most_once');
SELECT pg_temp.try($$SELECT deliver.alter_queue('q17_eo', ack_commit => 'async')$$);
SELECT pg_temp.try($$SELECT deliver.alter_queue('q17_amo', ack_commit => 'async')$$);
SELECT deliver.alter_queue('q17_eo', ack_commit => 'durable');
SELECT queue_name, ack_commit FROM deliver.list_queues() WHERE queue_name IN ('q17_eo', 'q17_amo')
 ORDER BY queue_name;

-- alter_queue: on, left alone by other options (NULL), off, on again
SELECT deliver.alter_queue('q17', ack_commit => 'async');
SELECT deliver.alter_queue('q17', max_attempts => 4);
SELECT ack_commit, max_attempts FROM deliver.list_queues() WHERE queue_name = 'q17';
SELECT deliver.alter_queue('q17', ack_commit => 'durable');
SELECT ack_commit FROM deliver.list_queues() WHERE queue_name = 'q17';

-- privileges: the options are administration (create_queue, alter_queue)
CREATE ROLE regress_deliver_ack_commit;
SELECT deliver.grant_queue('q17_async', 'regress_deliver_ack_commit', 'receive');
SET ROLE regress_deliver_ack_commit;
SELECT pg_temp.try($$SELECT deliver.alter_queue('q17_async', ack_commit => 'durable')$$);
SELECT pg_temp.try($$SELECT deliver.create_queue('q17_mine', ack_commit => 'async')$$);
RESET ROLE;
SELECT ack_commit FROM deliver.list_queues() WHERE queue_name = 'q17_async';

-- Which commits skip the flush wait: the DEBUG1 line says so at commit.
SELECT deliver.send_batch('q17_async', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}',
                                              '{"n": 5}', '{"n": 6}', '{"n": 7}', '{"n": 8}']::jsonb[]);
SELECT deliver.send_batch('q17', ARRAY['{"d": 1}', '{"d": 2}']::jsonb[]);
CREATE TEMP TABLE r AS SELECT payload->>'n' AS n, delivery_id FROM deliver.receive('q17_async', 8);
CREATE TEMP TABLE rd AS SELECT payload->>'d' AS n, delivery_id FROM deliver.receive('q17', 2);
CREATE TABLE q17_effects (n text);
SET client_min_messages = debug1;
-- an ack on its own (autocommit): async
SELECT deliver.ack('q17_async', delivery_id) FROM r WHERE n = '1';
-- acks alone in a transaction block (ack, ack_batch): async
BEGIN;
SELECT deliver.ack('q17_async', delivery_id) FROM r WHERE n = '2';
SELECT deliver.ack_batch('q17_async', array_agg(delivery_id)) FROM r WHERE n = '3';
COMMIT;
-- the consumer's effect first, then the ack: durable, no line
BEGIN;
INSERT INTO q17_effects VALUES ('4');
SELECT deliver.ack('q17_async', delivery_id) FROM r WHERE n = '4';
COMMIT;
-- the ack first, then the effect: durable, no line
BEGIN;
SELECT deliver.ack('q17_async', delivery_id) FROM r WHERE n = '5';
INSERT INTO q17_effects VALUES ('5');
COMMIT;
-- an effect between two acks: durable
BEGIN;
SELECT deliver.ack('q17_async', delivery_id) FROM r WHERE n = '6';
INSERT INTO q17_effects VALUES ('6');
SELECT deliver.ack('q17_async', delivery_id) FROM r WHERE n = '7';
COMMIT;
-- with an ack of a durable queue in the same transaction: durable
BEGIN;
SELECT deliver.ack('q17_async', delivery_id) FROM r WHERE n = '8';
SELECT deliver.ack('q17', delivery_id) FROM rd WHERE n = '1';
COMMIT;
-- a durable queue's ack alone: durable
SELECT deliver.ack('q17', delivery_id) FROM rd WHERE n = '2';
RESET client_min_messages;
-- nothing leaks into the session
SHOW synchronous_commit;
SELECT count(*) FROM q17_effects;
SELECT consumer_group, depth, in_flight, acked_total FROM deliver.metrics('q17_async');

-- a rolled-back async ack gives the message back; a prepared one is durable
SELECT deliver.send('q17_async', '{"n": 9}');
SELECT delivery_id AS d9 FROM deliver.receive('q17_async', 1) \gset
SET client_min_messages = debug1;
BEGIN;
SELECT deliver.ack('q17_async', :d9);
ROLLBACK;
BEGIN;
SELECT deliver.ack('q17_async', :d9);
PREPARE TRANSACTION 'q17_prepared';
COMMIT PREPARED 'q17_prepared';
RESET client_min_messages;
SELECT consumer_group, depth, in_flight, acked_total FROM deliver.metrics('q17_async');
SET client_min_messages = debug1;
-- a nack to the dead letters is a finish too: async when alone
SELECT deliver.send('q17_async', '{"n": 10}');
RESET client_min_messages;
CREATE TEMP TABLE r10 AS SELECT delivery_id FROM deliver.receive('q17_async', 1);
SET client_min_messages = debug1;
SELECT deliver.nack('q17_async', delivery_id, 'bad', dead_letter => true) FROM r10;
-- a plain nack writes nothing: no commit to wait for
SELECT deliver.send('q17_async', '{"n": 11}');
RESET client_min_messages;
CREATE TEMP TABLE r11 AS SELECT delivery_id FROM deliver.receive('q17_async', 1);
SET client_min_messages = debug1;
SELECT deliver.nack('q17_async', delivery_id, retry_after => '0') FROM r11;
RESET client_min_messages;
SELECT consumer_group, depth, in_flight, acked_total, dead_letters FROM deliver.metrics('q17_async');

-- turned off, the same lone ack waits for the flush again
SELECT deliver.alter_queue('q17_async', ack_commit => 'durable');
CREATE TEMP TABLE r12 AS SELECT delivery_id FROM deliver.receive('q17_async', 1);
SET client_min_messages = debug1;
SELECT deliver.ack('q17_async', delivery_id) FROM r12;
RESET client_min_messages;

DROP TABLE q17_effects;
SELECT deliver.drop_queue(q) FROM unnest(ARRAY['q17', 'q17_async', 'q17_eo', 'q17_amo']) q;
DROP ROLE regress_deliver_ack_commit;
