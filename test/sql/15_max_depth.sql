-- Depth limits: max_depth with overflow 'reject' and 'drop_oldest'.
\set VERBOSITY default
\i test/helpers.psql
\set VERBOSITY terse

SELECT deliver.create_queue('q15m', max_depth => 3, visibility_timeout => '1 hour');
SELECT max_depth, overflow FROM deliver.queue WHERE queue_name = 'q15m';
SELECT deliver.send('q15m', jsonb_build_object('n', i)) FROM generate_series(1, 3) i;
-- the fourth is refused, and a batch that would go over too: nothing written
SELECT pg_temp.try($$SELECT deliver.send('q15m', '{"n": 4}')$$);
SELECT pg_temp.try($$SELECT deliver.send_batch('q15m', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[])$$);
SELECT pg_temp.try($$SELECT deliver.send('q15m', '{"n": "delayed"}', delay => '1 hour')$$);
SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q15m');
-- the error in full
\set VERBOSITY default
SELECT deliver.send_batch('q15m', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[]);
\set VERBOSITY terse
-- a message in flight is not in the depth: there is room for one
CREATE TEMP TABLE d AS SELECT message_id, delivery_id FROM deliver.receive('q15m', 1);
SELECT deliver.send('q15m', '{"n": 5}');
SELECT pg_temp.try($$SELECT deliver.send('q15m', '{"n": 6}')$$);
-- a nack puts it back in the depth: still full
SELECT deliver.nack('q15m', delivery_id, retry_after => '0') FROM d;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q15m');
SELECT pg_temp.try($$SELECT deliver.send('q15m', '{"n": 6}')$$);
-- acks make room
SELECT count(*) FROM deliver.receive('q15m', 10) r WHERE deliver.ack('q15m', r.delivery_id);
SELECT deliver.send_batch('q15m', ARRAY['{"b": 1}', '{"b": 2}', '{"b": 3}']::jsonb[]);
SELECT pg_temp.try($$SELECT deliver.send('q15m', '{"n": 7}')$$);

-- a batch larger than max_depth never fits
\set VERBOSITY default
SELECT deliver.send_batch('q15m', ARRAY['{}', '{}', '{}', '{}']::jsonb[]);
\set VERBOSITY terse

-- alter_queue: a higher limit, then none, then one below the depth
SELECT deliver.alter_queue('q15m', max_depth => 4);
SELECT deliver.send('q15m', '{"n": 8}');
SELECT pg_temp.try($$SELECT deliver.send('q15m', '{"n": 9}')$$);
SELECT deliver.alter_queue('q15m', max_depth => 0);
SELECT max_depth FROM deliver.queue WHERE queue_name = 'q15m';
SELECT deliver.send('q15m', '{"n": 9}');
SELECT deliver.alter_queue('q15m', max_depth => 2);
SELECT pg_temp.try($$SELECT deliver.send('q15m', '{"n": 10}')$$);
SELECT consumer_group, depth FROM deliver.metrics('q15m');

--
-- the group furthest behind counts
--
SELECT deliver.create_queue('q15m_g', max_depth => 2);
SELECT deliver.create_consumer_group('q15m_g', 'slow');
SELECT deliver.send('q15m_g', jsonb_build_object('n', i)) FROM generate_series(1, 2) i;
SELECT count(*) FROM deliver.receive('q15m_g', 10) r WHERE deliver.ack('q15m_g', r.delivery_id);
SELECT consumer_group, depth FROM deliver.metrics('q15m_g') ORDER BY 1;
SELECT pg_temp.try($$SELECT deliver.send('q15m_g', '{"n": 3}')$$);
SELECT count(*) FROM deliver.receive('q15m_g', 1, consumer_group => 'slow') r
 WHERE deliver.ack('q15m_g', r.delivery_id);
SELECT deliver.send('q15m_g', '{"n": 3}');

--
-- idempotency keys, redrive, at-most-once, a rolled-back send
--
SELECT deliver.create_queue('q15m_eo', 'exactly_once', max_depth => 1, max_attempts => 1);
SELECT deliver.send('q15m_eo', '{"n": 1}', idempotency_key => 'a');
-- a resend of a known key counts as a message of the call: refused when full
SELECT pg_temp.try($$SELECT deliver.send('q15m_eo', '{"n": 1}', idempotency_key => 'a')$$);
-- redrive is not limited: the dead letter goes back though the queue is full
SELECT deliver.nack('q15m_eo', r.delivery_id, retry_after => '0') FROM deliver.receive('q15m_eo', 1) r;
-- (out of attempts: the next receive moves it to the dead letters)
SELECT count(*) FROM deliver.receive('q15m_eo', 1);
SELECT deliver.send('q15m_eo', '{"n": 2}', idempotency_key => 'b');
SELECT deliver.redrive('q15m_eo');
SELECT consumer_group, depth, dead_letters FROM deliver.metrics('q15m_eo');

SELECT deliver.create_queue('q15m_amo', 'at_most_once', max_depth => 1);
SELECT deliver.send('q15m_amo', '{"n": 1}');
SELECT pg_temp.try($$SELECT deliver.send('q15m_amo', '{"n": 2}')$$);
SELECT message_id FROM deliver.receive('q15m_amo', 10);
SELECT deliver.send('q15m_amo', '{"n": 2}');

-- what a sender has not committed is not counted (its own included)
SELECT deliver.create_queue('q15m_tx', max_depth => 1);
BEGIN;
SELECT deliver.send('q15m_tx', '{"n": 1}');
SELECT deliver.send('q15m_tx', '{"n": 2}');
COMMIT;
SELECT consumer_group, depth FROM deliver.metrics('q15m_tx');
SELECT pg_temp.try($$SELECT deliver.send('q15m_tx', '{"n": 3}')$$);

--
-- overflow drop_oldest: a send over the limit moves the oldest messages of
-- each group over it to the dead letters (reason overflow), in its own
-- transaction
--
SELECT deliver.create_queue('q15m_drop', max_depth => 3, overflow => 'drop_oldest',
                            visibility_timeout => '1 hour', retry_base => '0');
SELECT deliver.create_consumer_group('q15m_drop', 'other');
SELECT deliver.send_batch('q15m_drop', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 3) i));
-- 'other' is ahead by one (acked), 'default' has one nacked (waiting for a retry)
SELECT count(*) FROM deliver.receive('q15m_drop', 1, consumer_group => 'other') r
 WHERE deliver.ack('q15m_drop', r.delivery_id);
SELECT deliver.nack('q15m_drop', r.delivery_id, retry_after => '1 hour')
  FROM deliver.receive('q15m_drop', 1) r;
SELECT deliver.send_batch('q15m_drop', ARRAY['{"n": 4}', '{"n": 5}']::jsonb[]);
-- default dropped 2 (the nacked one first), other 1
SELECT message_id, group_name, reason, attempts FROM deliver.dead_letters('q15m_drop') ORDER BY 2, 1;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q15m_drop') ORDER BY 1;
SELECT message_id, payload FROM deliver.peek('q15m_drop', 10);
-- a rolled-back send gives the dropped messages back
BEGIN;
SELECT deliver.send('q15m_drop', '{"n": "rolled back"}');
SELECT count(*) FROM deliver.dead_letters('q15m_drop');
ROLLBACK;
SELECT count(*) FROM deliver.dead_letters('q15m_drop');
SELECT message_id, payload FROM deliver.peek('q15m_drop', 10);
-- what is in flight is never dropped: the leased messages stay, their acks work
CREATE TEMP TABLE leased AS SELECT delivery_id FROM deliver.receive('q15m_drop', 10);
SELECT count(*) FROM deliver.receive('q15m_drop', 10, consumer_group => 'other') r
 WHERE deliver.ack('q15m_drop', r.delivery_id);
SELECT deliver.alter_queue('q15m_drop', max_depth => 1);
SELECT deliver.send('q15m_drop', '{"n": 6}');
SELECT deliver.send('q15m_drop', '{"n": 7}');
SELECT message_id, group_name, reason FROM deliver.dead_letters('q15m_drop') WHERE message_id >= 6 ORDER BY 2;
SELECT count(*) FILTER (WHERE deliver.ack('q15m_drop', delivery_id)) FROM leased;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q15m_drop') ORDER BY 1;
-- FIFO-held messages are not dropped: when only they are left, the send is refused
SELECT deliver.create_queue('q15m_fifo', fifo => true, max_depth => 1, overflow => 'drop_oldest');
SELECT deliver.send('q15m_fifo', '{"n": 1}', ordering_key => 'k');
SELECT message_id FROM deliver.receive('q15m_fifo', 1);
SELECT deliver.send('q15m_fifo', '{"n": 2}', ordering_key => 'k');
SELECT count(*) FROM deliver.receive('q15m_fifo', 1);
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q15m_fifo');
SELECT pg_temp.try($$SELECT deliver.send('q15m_fifo', '{"n": 3}')$$);
SELECT count(*) FROM deliver.dead_letters('q15m_fifo');
-- and a batch larger than max_depth never fits
SELECT pg_temp.try($$SELECT deliver.send_batch('q15m_drop', ARRAY['{}', '{}']::jsonb[])$$);
SELECT deliver.alter_queue('q15m_drop', overflow => 'reject');
SELECT overflow FROM deliver.queue WHERE queue_name = 'q15m_drop';

--
-- bad input
--
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.create_queue('q15m_bad', max_depth => -1)$$),
    ($$SELECT deliver.create_queue('q15m_bad', max_depth => 1000000000001)$$),
    ($$SELECT deliver.create_queue('q15m_bad', 'at_most_once', overflow => 'drop_oldest')$$),
    ($$SELECT deliver.create_queue('q15m_bad', overflow => 'block')$$),
    ($$SELECT deliver.create_queue('q15m_bad', overflow => '')$$),
    ($$SELECT deliver.alter_queue('q15m', max_depth => -5)$$),
    ($$SELECT deliver.alter_queue('q15m', overflow => 'REJECT')$$),
    ($$SELECT deliver.alter_queue('q15m_missing', max_depth => 5)$$)) AS t(cmd);
SELECT count(*) FROM deliver.queue WHERE queue_name = 'q15m_bad';
SELECT deliver.create_queue('q15m_zero', max_depth => 0, overflow => 'reject');
SELECT max_depth, overflow FROM deliver.queue WHERE queue_name = 'q15m_zero';

SELECT deliver.drop_queue(q) FROM unnest(ARRAY['q15m', 'q15m_g', 'q15m_eo', 'q15m_amo', 'q15m_tx',
                                               'q15m_zero', 'q15m_drop', 'q15m_fifo']) AS q;
