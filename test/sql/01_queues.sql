-- Queues and consumer groups: create_queue (every option and its default),
-- list_queues, purge_queue, drop_queue, create/list/drop_consumer_group.
\set VERBOSITY terse
\i test/helpers.psql
-- how many relations (tables, indexes, sequences) a queue has in schema
-- deliver: their names are made from the queue's id
CREATE FUNCTION pg_temp.queue_relations(qid int) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*)
      FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
     WHERE s.nspname = 'deliver' AND c.relname ~ ('^q' || qid || '_')
$$;

--
-- create_queue with every default
--
SELECT deliver.create_queue('q01_defaults');
SELECT queue_name, guarantee, visibility_timeout, max_attempts, fifo, dedup_window,
       retry_base, retry_max, consumer_groups, created_at <= now() AS created_before_now
  FROM deliver.list_queues() WHERE queue_name = 'q01_defaults';
-- the queue's tables exist
SELECT queue_id AS q01_defaults_id FROM deliver.queue WHERE queue_name = 'q01_defaults' \gset
SELECT pg_temp.queue_relations(:q01_defaults_id) > 0 AS has_relations;

--
-- every option, by name
--
SELECT deliver.create_queue('q01_all', guarantee => 'exactly_once',
                            visibility_timeout => '10 seconds', max_attempts => 3,
                            fifo => true, dedup_window => '1 hour',
                            retry_base => '100 milliseconds', retry_max => '1 minute');
-- and by position
SELECT deliver.create_queue('q01_amo', 'at_most_once', '1 millisecond', 1, false,
                            '1 second', '0', '0');
SELECT deliver.create_queue('q01_alo', 'at_least_once', '12 hours', 1000, true,
                            '7 days', '1 day', '7 days');
SELECT deliver.create_queue('Q01.mixed-Case_9');
SELECT queue_name, guarantee, visibility_timeout, max_attempts, fifo, dedup_window,
       retry_base, retry_max, consumer_groups
  FROM deliver.list_queues() WHERE queue_name ~* '^q01' ORDER BY queue_name COLLATE "C";

-- names are case sensitive
SELECT pg_temp.try($$SELECT deliver.send('q01.mixed-case_9', '{}')$$);
SELECT deliver.send('Q01.mixed-Case_9', '{}');

-- a queue name is unique
SELECT pg_temp.try($$SELECT deliver.create_queue('q01_defaults')$$);
SELECT pg_temp.try($$SELECT deliver.create_queue('q01_defaults', 'at_most_once')$$);

-- bad options leave no queue behind
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.create_queue('q01_bad', guarantee => 'twice')$$),
    ($$SELECT deliver.create_queue('q01_bad', guarantee => 'AT_LEAST_ONCE')$$),
    ($$SELECT deliver.create_queue('q01_bad', visibility_timeout => '0')$$),
    ($$SELECT deliver.create_queue('q01_bad', visibility_timeout => '12 hours 1 second')$$),
    ($$SELECT deliver.create_queue('q01_bad', max_attempts => 0)$$),
    ($$SELECT deliver.create_queue('q01_bad', max_attempts => 1001)$$),
    ($$SELECT deliver.create_queue('q01_bad', dedup_window => '999 milliseconds')$$),
    ($$SELECT deliver.create_queue('q01_bad', dedup_window => '8 days')$$),
    ($$SELECT deliver.create_queue('q01_bad', retry_base => '-1 second')$$),
    ($$SELECT deliver.create_queue('q01_bad', retry_base => '2 days')$$),
    ($$SELECT deliver.create_queue('q01_bad', retry_max => '-1 second')$$),
    ($$SELECT deliver.create_queue('q01_bad', retry_max => '8 days')$$)) AS t(cmd);
SELECT count(*) AS bad_queues FROM deliver.queue WHERE queue_name = 'q01_bad';

-- a queue created in a transaction that rolls back does not exist, and
-- leaves no tables behind
SELECT count(*) AS relations_before FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
 WHERE s.nspname = 'deliver' \gset
BEGIN;
SELECT deliver.create_queue('q01_rolled_back');
SELECT deliver.send('q01_rolled_back', '{"n": 1}');
ROLLBACK;
SELECT count(*) AS queues FROM deliver.list_queues() WHERE queue_name = 'q01_rolled_back';
SELECT count(*) - :relations_before AS new_relations
  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'deliver';
SELECT pg_temp.try($$SELECT deliver.send('q01_rolled_back', '{}')$$);
-- the name is free
SELECT deliver.create_queue('q01_rolled_back');
SELECT deliver.drop_queue('q01_rolled_back');

--
-- consumer groups
--
SELECT deliver.create_queue('q01_groups');
SELECT consumer_group, created_at <= now() AS created_before_now
  FROM deliver.list_consumer_groups('q01_groups');
SELECT deliver.create_consumer_group('q01_groups', 'g_latest');
SELECT deliver.create_consumer_group('q01_groups', 'g_earliest', 'earliest');
SELECT deliver.create_consumer_group('q01_groups', 'g_explicit', start_from => 'latest');
SELECT consumer_group FROM deliver.list_consumer_groups('q01_groups');
SELECT consumer_groups FROM deliver.list_queues() WHERE queue_name = 'q01_groups';
-- duplicates and bad arguments
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.create_consumer_group('q01_groups', 'g_latest')$$),
    ($$SELECT deliver.create_consumer_group('q01_groups', 'default')$$),
    ($$SELECT deliver.create_consumer_group('q01_groups', 'g_x', 'middle')$$),
    ($$SELECT deliver.create_consumer_group('q01_groups', 'g_x', NULL)$$),
    ($$SELECT deliver.create_consumer_group('q01_groups', 'bad name')$$),
    ($$SELECT deliver.create_consumer_group('q01_groups', '')$$),
    ($$SELECT deliver.create_consumer_group('q01_nowhere', 'g_x')$$),
    ($$SELECT deliver.drop_consumer_group('q01_groups', 'g_missing')$$),
    ($$SELECT deliver.drop_consumer_group('q01_nowhere', 'g_latest')$$),
    ($$SELECT * FROM deliver.list_consumer_groups('q01_nowhere')$$),
    ($$SELECT * FROM deliver.receive('q01_groups', consumer_group => 'g_missing')$$)) AS t(cmd);
-- the same group name on another queue is another group
SELECT deliver.create_consumer_group('q01_defaults', 'g_latest');
SELECT consumer_group FROM deliver.list_consumer_groups('q01_defaults');

-- dropping a group: it can no longer receive; its name can be used again
SELECT deliver.send('q01_groups', '{"n": 1}');
SELECT message_id FROM deliver.receive('q01_groups', consumer_group => 'g_latest');
SELECT deliver.drop_consumer_group('q01_groups', 'g_latest');
SELECT consumer_group FROM deliver.list_consumer_groups('q01_groups');
SELECT pg_temp.try($$SELECT * FROM deliver.receive('q01_groups', consumer_group => 'g_latest')$$);
SELECT deliver.create_consumer_group('q01_groups', 'g_latest');
-- a new group named like a dropped one starts from now: message 1 is not for it
SELECT message_id FROM deliver.receive('q01_groups', consumer_group => 'g_latest');
SELECT deliver.send('q01_groups', '{"n": 2}');
SELECT message_id FROM deliver.receive('q01_groups', consumer_group => 'g_latest');
-- the default group is a group like any other
SELECT deliver.drop_consumer_group('q01_groups', 'default');
SELECT pg_temp.try($$SELECT * FROM deliver.receive('q01_groups')$$);
SELECT consumer_group FROM deliver.list_consumer_groups('q01_groups');
-- a group created in a transaction that rolls back does not exist
BEGIN;
SELECT deliver.create_consumer_group('q01_groups', 'g_rolled_back');
ROLLBACK;
SELECT consumer_group FROM deliver.list_consumer_groups('q01_groups');

--
-- purge_queue: removes ready, in-flight and delayed messages and dead
-- letters; groups stay and start over
--
SELECT deliver.create_queue('q01_purge', max_attempts => 1, retry_base => '0');
SELECT deliver.send_batch('q01_purge', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}']::jsonb[]);
SELECT deliver.send('q01_purge', '{"n": 5}', delay => '1 hour');
-- message 1 in flight; message 2 dead after its only attempt
SELECT message_id, delivery_id AS d1 FROM deliver.receive('q01_purge') \gset
SELECT message_id, delivery_id AS d2 FROM deliver.receive('q01_purge') \gset
SELECT deliver.nack('q01_purge', :d2, 'failed');
SELECT message_id FROM deliver.receive('q01_purge');
SELECT count(*) AS dead FROM deliver.dead_letters('q01_purge');
SELECT consumer_group, depth, in_flight, delayed, dead_letters FROM deliver.metrics('q01_purge');
SELECT deliver.purge_queue('q01_purge');
SELECT consumer_group, depth, in_flight, delayed, dead_letters FROM deliver.metrics('q01_purge');
SELECT count(*) AS dead FROM deliver.dead_letters('q01_purge');
SELECT message_id FROM deliver.receive('q01_purge', 10);
-- a lease from before the purge is gone
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q01_purge', :d1));
-- the queue works on: ids go on from where they were
SELECT deliver.send('q01_purge', '{"n": 6}');
SELECT message_id, payload FROM deliver.receive('q01_purge', 10);
-- the count is of the messages removed: acked ones are not counted
SELECT deliver.send_batch('q01_purge', ARRAY['{"n": 7}', '{"n": 8}', '{"n": 9}']::jsonb[]);
SELECT deliver.ack('q01_purge', delivery_id) FROM deliver.receive('q01_purge', 2);
SELECT deliver.purge_queue('q01_purge');
-- purging an empty queue
SELECT deliver.purge_queue('q01_amo');
-- a purge that rolls back removes nothing
SELECT deliver.send('q01_amo', '{"n": 1}');
BEGIN;
SELECT deliver.purge_queue('q01_amo');
ROLLBACK;
SELECT message_id, payload FROM deliver.receive('q01_amo');

--
-- drop_queue: the queue and all its tables go; the name can be used again
--
SELECT deliver.send('q01_defaults', '{"n": 1}');
SELECT deliver.drop_queue('q01_defaults');
SELECT pg_temp.queue_relations(:q01_defaults_id) AS relations_left;
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.drop_queue('q01_defaults')$$),
    ($$SELECT deliver.send('q01_defaults', '{}')$$),
    ($$SELECT * FROM deliver.receive('q01_defaults')$$),
    ($$SELECT deliver.purge_queue('q01_defaults')$$),
    ($$SELECT * FROM deliver.metrics('q01_defaults')$$)) AS t(cmd);
-- a queue re-created under a dropped name is a new, empty queue
SELECT deliver.create_queue('q01_defaults', 'at_most_once');
SELECT message_id FROM deliver.receive('q01_defaults');
SELECT deliver.send('q01_defaults', '{"again": true}');
SELECT message_id, payload FROM deliver.receive('q01_defaults');
-- a drop that rolls back keeps the queue and its messages
SELECT deliver.send('q01_alo', '{"kept": true}');
BEGIN;
SELECT deliver.drop_queue('q01_alo');
ROLLBACK;
SELECT message_id, payload FROM deliver.receive('q01_alo');

SELECT deliver.drop_queue(queue_name) FROM deliver.list_queues() WHERE queue_name ~* '^q01';
SELECT count(*) AS left_over FROM deliver.list_queues() WHERE queue_name ~* '^q01';
