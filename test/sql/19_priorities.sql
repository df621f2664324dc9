-- Priorities: send's priority (0-9) on queues created with priorities.
\set VERBOSITY default
\i test/helpers.psql
\set VERBOSITY terse

SELECT deliver.create_queue('q19', priorities => true, visibility_timeout => '1 hour');
SELECT deliver.create_queue('q19_plain');
SELECT queue_name, priorities FROM deliver.list_queues() WHERE queue_name LIKE 'q19%' ORDER BY 1;

-- higher priority first; equal priorities in commit order; no priority is 0
SELECT deliver.send('q19', '{"n": 1}');
SELECT deliver.send('q19', '{"n": 2}', priority => 5);
SELECT deliver.send('q19', '{"n": 3}', priority => 9);
SELECT deliver.send('q19', '{"n": 4}', priority => 5);
SELECT deliver.send('q19', '{"n": 5}', priority => 0);
SELECT deliver.send_batch('q19', ARRAY['{"n": 6}', '{"n": 7}']::jsonb[], priority => 7);
SELECT payload->>'n' AS n FROM deliver.receive('q19', 1);
SELECT payload->>'n' AS n FROM deliver.receive('q19', 3);
-- the rest (n 4 before 1 and 5); ack 1 and 5 and nack 4 (retry now): a
-- redelivery competes with its priority
SELECT payload->>'n' AS n,
       CASE WHEN payload->>'n' = '4' THEN deliver.nack('q19', delivery_id, retry_after => '0')
            ELSE deliver.ack('q19', delivery_id) END
  FROM deliver.receive('q19', 10);
SELECT deliver.send('q19', '{"n": 8}', priority => 1);
SELECT deliver.send('q19', '{"n": 9}', priority => 6);
SELECT payload->>'n' AS n, attempt FROM deliver.receive('q19', 10);

-- delayed messages keep their priority when they come due
SELECT deliver.purge_queue('q19');
SELECT deliver.send('q19', '{"n": "late-high"}', delay => '10 milliseconds', priority => 8);
SELECT deliver.send('q19', '{"n": "low"}', priority => 2);
SELECT pg_temp.wait_until($$SELECT delayed = 0 FROM deliver.metrics('q19')$$);
SELECT payload->>'n' AS n FROM deliver.receive('q19', 2);

-- publish takes a priority for every matched queue
SELECT deliver.purge_queue('q19');
SELECT deliver.bind('prio.#', 'q19');
SELECT queue_name FROM deliver.publish('prio.x', '{"n": "pub-low"}', priority => 1);
SELECT queue_name FROM deliver.publish('prio.x', '{"n": "pub-high"}', priority => 6);
SELECT payload->>'n' AS n FROM deliver.receive('q19', 2);

-- FIFO keys still hold: a later, higher message of a busy key waits
SELECT deliver.create_queue('q19_fifo', fifo => true, priorities => true, visibility_timeout => '1 hour');
SELECT deliver.send('q19_fifo', '{"n": "a1"}', ordering_key => 'a', priority => 1);
SELECT deliver.send('q19_fifo', '{"n": "a2"}', ordering_key => 'a', priority => 9);
SELECT deliver.send('q19_fifo', '{"n": "b1"}', ordering_key => 'b', priority => 5);
SELECT payload->>'n' AS n, deliver.ack('q19_fifo', delivery_id) FROM deliver.receive('q19_fifo', 10);
SELECT payload->>'n' AS n FROM deliver.receive('q19_fifo', 10);

-- a message that expired while read ahead goes to the dead letters whole
SELECT deliver.send('q19', '{"n": "stale"}', headers => '{"h": 1}', expires_at => now() - interval '1 hour',
                    priority => 9) > 0 AS sent;
SELECT deliver.send('q19', '{"n": "fresh"}', priority => 1) > 0 AS sent;
SELECT payload->>'n' AS n FROM deliver.receive('q19', 5);
SELECT payload, headers, reason FROM deliver.dead_letters('q19');

-- bad input: nothing sent
SELECT deliver.purge_queue('q19');
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.send('q19', '{}', priority => 10)$$),
    ($$SELECT deliver.send('q19', '{}', priority => -1)$$),
    ($$SELECT deliver.send('q19', '{}', priority => 2147483647)$$),
    ($$SELECT deliver.send_batch('q19', ARRAY['{}']::jsonb[], priority => 10)$$),
    ($$SELECT deliver.publish('prio.x', '{}', priority => 10)$$),
    ($$SELECT deliver.send('q19_plain', '{}', priority => 1)$$),
    ($$SELECT deliver.send_batch('q19_plain', ARRAY['{}']::jsonb[], priority => 3)$$),
    ($$SELECT deliver.send('q19_plain', '{}', delay => '1 hour', priority => 3)$$),
    ($$SELECT deliver.create_queue('q19_amo', 'at_most_once', priorities => true)$$),
    ($$SELECT deliver.alter_queue('q19_nowhere', priorities => true)$$)) AS t(cmd);
SELECT deliver.bind('plain.#', 'q19_plain');
SELECT pg_temp.try($$SELECT deliver.publish('plain.x', '{}', priority => 1)$$);
SELECT (SELECT depth FROM deliver.metrics('q19')) AS q19_depth,
       (SELECT depth + delayed FROM deliver.metrics('q19_plain')) AS plain_depth,
       (SELECT count(*) FROM deliver.queue WHERE queue_name = 'q19_amo') AS amo;
-- the errors in full
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT deliver.send('q19', '{}', priority => 10);
SELECT deliver.send('q19_plain', '{}', priority => 1);
SELECT deliver.create_queue('q19_amo', 'at_most_once', priorities => true);
\set VERBOSITY terse
\set SHOW_CONTEXT errors
-- priority 0 (or NULL) is every queue's default
SELECT deliver.send('q19_plain', '{}', priority => 0) > 0 AS sent;
SELECT deliver.send('q19_plain', '{}', priority => NULL) > 0 AS sent;

-- alter_queue: on, then off (sends with a priority refused again)
SELECT deliver.alter_queue('q19_plain', priorities => true);
SELECT deliver.send('q19_plain', '{}', priority => 3) > 0 AS sent;
SELECT deliver.alter_queue('q19_plain', max_attempts => 4);
SELECT priorities FROM deliver.list_queues() WHERE queue_name = 'q19_plain';
SELECT deliver.alter_queue('q19_plain', priorities => false);
SELECT pg_temp.try($$SELECT deliver.send('q19_plain', '{}', priority => 3)$$);
SELECT deliver.create_queue('q19_amo2', 'at_most_once');
SELECT pg_temp.try($$SELECT deliver.alter_queue('q19_amo2', priorities => true)$$);

-- privileges: priorities are administration; a sender may give a priority
CREATE ROLE regress_deliver_prio;
SELECT deliver.grant_queue('q19', 'regress_deliver_prio', 'send');
SET ROLE regress_deliver_prio;
SELECT pg_temp.try($$SELECT deliver.alter_queue('q19', priorities => false)$$);
SELECT pg_temp.try($$SELECT deliver.create_queue('q19_x', priorities => true)$$);
SELECT deliver.send('q19', '{"n": "from-role"}', priority => 3) > 0 AS sent;
RESET ROLE;
SELECT payload->>'n' AS n FROM deliver.receive('q19', 1);

-- peek lists what the group read ahead in the order a receive takes it,
-- first deliveries (not redeliveries)
SELECT deliver.purge_queue('q19');
SELECT deliver.send('q19', '{"n": "p0"}', priority => 0) > 0 AS sent;
SELECT deliver.send('q19', '{"n": "p9"}', priority => 9) > 0 AS sent;
SELECT deliver.send('q19', '{"n": "p5"}', priority => 5) > 0 AS sent;
SELECT payload->>'n' AS n FROM deliver.receive('q19', 1);
SELECT payload->>'n' AS n, attempt, redelivery FROM deliver.peek('q19', 10);
SELECT payload->>'n' AS n FROM deliver.receive('q19', 10);

-- the priority is stored in the segment (NULL for 0)
SELECT deliver.purge_queue('q19');
SELECT deliver.send('q19', '{}', priority => 4) > 0, deliver.send('q19', '{}') > 0;
SELECT format('SELECT array_agg(priority ORDER BY message_id) FROM deliver.q%s_s0', queue_id) AS s
  FROM deliver.queue WHERE queue_name = 'q19' \gset
:s;

SELECT deliver.drop_queue(queue_name) FROM deliver.list_queues() WHERE queue_name LIKE 'q19%';
SELECT deliver.unbind(pattern, queue_name) FROM deliver.list_bindings() WHERE pattern IN ('prio.#', 'plain.#');
DROP ROLE regress_deliver_prio;
