-- delete_dead_letters(): dead letters deleted for good, by id, per group;
-- what is not a dead letter is left alone; errors.
\set VERBOSITY terse
\i test/helpers.psql
SELECT deliver.create_queue('q09', max_attempts => 1, retry_base => '0');
SELECT deliver.create_consumer_group('q09', 'second');
SELECT deliver.send_batch('q09', array_agg(jsonb_build_object('n', i))) FROM generate_series(1, 4) AS i;
-- every message dies in both groups
SELECT count(*) FILTER (WHERE deliver.nack('q09', delivery_id, 'boom', '0')) AS nacked
  FROM deliver.receive('q09', 10);
SELECT count(*) FILTER (WHERE deliver.nack('q09', delivery_id, 'boom', '0')) AS nacked
  FROM deliver.receive('q09', 10, consumer_group => 'second');
SELECT count(*) AS received FROM deliver.receive('q09', 10);
SELECT count(*) AS received FROM deliver.receive('q09', 10, consumer_group => 'second');
SELECT group_name, array_agg(message_id ORDER BY message_id) FROM deliver.dead_letters('q09')
 GROUP BY 1 ORDER BY 1;

-- one id in one group
SELECT deliver.delete_dead_letters('q09', ARRAY[1]::bigint[], 'default');
SELECT group_name, array_agg(message_id ORDER BY message_id) FROM deliver.dead_letters('q09')
 GROUP BY 1 ORDER BY 1;
-- the message stays finished: no receive gets it again
SELECT count(*) AS received FROM deliver.receive('q09', 10);
-- ids in every group; ids that are no dead letters (any more) count nothing
SELECT deliver.delete_dead_letters('q09', ARRAY[1, 2, 999]::bigint[]);
SELECT group_name, array_agg(message_id ORDER BY message_id) FROM deliver.dead_letters('q09')
 GROUP BY 1 ORDER BY 1;
SELECT deliver.delete_dead_letters('q09', '{}');
-- a delete that rolls back deletes nothing
BEGIN;
SELECT deliver.delete_dead_letters('q09', ARRAY[3, 4]::bigint[], 'second');
ROLLBACK;
SELECT count(*) AS dead FROM deliver.dead_letters('q09', 'second');
-- the metrics count what is left; a deleted dead letter is not redriven
SELECT consumer_group, dead_letters FROM deliver.metrics('q09') ORDER BY 1;
SELECT deliver.redrive('q09', ARRAY[1, 2]::bigint[]);
SELECT deliver.delete_dead_letters('q09', ARRAY[3, 4]::bigint[], 'second');
SELECT group_name, message_id FROM deliver.dead_letters('q09') ORDER BY 1, 2;

-- errors
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.delete_dead_letters('q09', NULL)$$),
    ($$SELECT deliver.delete_dead_letters('q09', ARRAY[3]::bigint[], 'nobody')$$),
    ($$SELECT deliver.delete_dead_letters('q09_nowhere', ARRAY[3]::bigint[])$$),
    ($$SELECT deliver.delete_dead_letters(NULL, ARRAY[3]::bigint[])$$)) AS t(cmd);

SELECT deliver.drop_queue('q09');
