-- Bad input: every function refuses NULLs where a value is needed, unknown
-- queues, invalid names, out-of-range numbers and intervals, and unknown
-- delivery ids, with a proper SQLSTATE, and leaves nothing half done.
\set VERBOSITY terse
\i test/helpers.psql
-- state(sql): 'ok', or just the SQLSTATE
CREATE FUNCTION pg_temp.state(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT deliver.create_queue('q09', retry_base => '0');
SELECT deliver.send('q09', '{"n": 1}');
SELECT delivery_id AS d FROM deliver.receive('q09') \gset
SELECT count(*) AS relations_before FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
 WHERE s.nspname = 'deliver' \gset

--
-- NULL for every argument that needs a value: 22004 (null_value_not_allowed)
--
SELECT call, pg_temp.state(call) AS sqlstate FROM (VALUES
    ($$SELECT deliver.create_queue(NULL)$$),
    ($$SELECT deliver.drop_queue(NULL)$$),
    ($$SELECT deliver.purge_queue(NULL)$$),
    ($$SELECT deliver.create_consumer_group(NULL, 'g')$$),
    ($$SELECT deliver.create_consumer_group('q09', NULL)$$),
    ($$SELECT deliver.create_consumer_group('q09', 'g', NULL)$$),
    ($$SELECT deliver.drop_consumer_group(NULL, 'default')$$),
    ($$SELECT deliver.drop_consumer_group('q09', NULL)$$),
    ($$SELECT * FROM deliver.list_consumer_groups(NULL)$$),
    ($$SELECT deliver.grant_queue(NULL, 'postgres')$$),
    ($$SELECT deliver.grant_queue('q09', NULL)$$),
    ($$SELECT deliver.grant_queue('q09', 'postgres', NULL)$$),
    ($$SELECT deliver.revoke_queue(NULL, 'postgres')$$),
    ($$SELECT deliver.revoke_queue('q09', NULL)$$),
    ($$SELECT deliver.send(NULL, '{}')$$),
    ($$SELECT deliver.send('q09', NULL)$$),
    ($$SELECT deliver.send_batch(NULL, ARRAY['{}']::jsonb[])$$),
    ($$SELECT deliver.send_batch('q09', NULL)$$),
    ($$SELECT deliver.send_batch('q09', ARRAY[NULL]::jsonb[])$$),
    ($$SELECT * FROM deliver.receive(NULL)$$),
    ($$SELECT * FROM deliver.receive('q09', NULL)$$),
    ($$SELECT * FROM deliver.receive('q09', 1, consumer_group => NULL)$$),
    ($$SELECT deliver.ack(NULL, 1)$$),
    ($$SELECT deliver.ack('q09', NULL)$$),
    ($$SELECT deliver.ack_batch(NULL, ARRAY[1]::bigint[])$$),
    ($$SELECT deliver.ack_batch('q09', NULL)$$),
    ($$SELECT deliver.ack_batch('q09', ARRAY[NULL]::bigint[])$$),
    ($$SELECT deliver.nack(NULL, 1)$$),
    ($$SELECT deliver.nack('q09', NULL)$$),
    ($$SELECT deliver.extend_lease(NULL, 1, '1 minute')$$),
    ($$SELECT deliver.extend_lease('q09', NULL, '1 minute')$$),
    ($$SELECT deliver.extend_lease('q09', 1, NULL)$$),
    ($$SELECT * FROM deliver.dead_letters(NULL)$$),
    ($$SELECT * FROM deliver.dead_letters('q09', NULL, NULL)$$),
    ($$SELECT deliver.redrive(NULL)$$),
    ($$SELECT * FROM deliver.metrics(NULL)$$)) AS t(call);
-- NULL where an argument is optional means its default
SELECT call, pg_temp.state(call) AS sqlstate FROM (VALUES
    ($$SELECT deliver.send('q09', '{}', NULL, NULL, NULL, NULL)$$),
    ($$SELECT deliver.send_batch('q09', ARRAY['{}']::jsonb[], NULL, NULL, NULL, NULL)$$),
    ($$SELECT deliver.send_batch('q09', ARRAY['{}', '{}']::jsonb[], ARRAY[NULL, NULL]::jsonb[], ARRAY[NULL, NULL], ARRAY[NULL, NULL])$$),
    ($$SELECT * FROM deliver.receive('q09', 1, NULL, NULL)$$),
    ($$SELECT * FROM deliver.dead_letters('q09', NULL)$$),
    ($$SELECT deliver.redrive('q09', NULL, NULL)$$),
    ($$SELECT deliver.redrive('q09', ARRAY[NULL]::bigint[])$$)) AS t(call);
-- the messages sent there
SELECT array_agg(message_id ORDER BY message_id) AS received,
       bool_and(headers IS NULL AND ordering_key IS NULL) AS all_defaults
  FROM deliver.receive('q09', 10);
-- create_queue: every option left NULL takes its default (retry_base and
-- retry_max from the settings)
SET deliver.default_retry_base = '2 s';
SELECT deliver.create_queue('q09_defaults', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
RESET deliver.default_retry_base;
SELECT guarantee, visibility_timeout, max_attempts, fifo, dedup_window, retry_base, retry_max
  FROM deliver.list_queues() WHERE queue_name = 'q09_defaults';
SELECT deliver.drop_queue('q09_defaults');
-- a nack with NULL error and retry_after is a plain nack
SELECT deliver.nack('q09', :d, NULL, NULL);

--
-- unknown queues: 42704 (undefined_object), from every function
--
SELECT call, pg_temp.try(call) AS result FROM (VALUES
    ($$SELECT deliver.drop_queue('q09_missing')$$),
    ($$SELECT deliver.purge_queue('q09_missing')$$),
    ($$SELECT deliver.create_consumer_group('q09_missing', 'g')$$),
    ($$SELECT deliver.drop_consumer_group('q09_missing', 'default')$$),
    ($$SELECT * FROM deliver.list_consumer_groups('q09_missing')$$),
    ($$SELECT deliver.grant_queue('q09_missing', 'postgres')$$),
    ($$SELECT deliver.revoke_queue('q09_missing', 'postgres')$$),
    ($$SELECT deliver.send('q09_missing', '{}')$$),
    ($$SELECT deliver.send_batch('q09_missing', ARRAY['{}']::jsonb[])$$),
    ($$SELECT * FROM deliver.receive('q09_missing')$$),
    ($$SELECT deliver.ack('q09_missing', 1)$$),
    ($$SELECT deliver.ack_batch('q09_missing', ARRAY[1]::bigint[])$$),
    ($$SELECT deliver.nack('q09_missing', 1)$$),
    ($$SELECT deliver.extend_lease('q09_missing', 1, '1 minute')$$),
    ($$SELECT * FROM deliver.dead_letters('q09_missing')$$),
    ($$SELECT deliver.redrive('q09_missing')$$),
    ($$SELECT * FROM deliver.metrics('q09_missing')$$),
    ($$SELECT deliver.send('', '{}')$$),
    ($$SELECT deliver.send('Q09', '{}')$$),
    ($$SELECT deliver.send('q09 ', '{}')$$),
    ($$SELECT deliver.send(' q09', '{}')$$),
    ($$SELECT deliver.send('q09''; DROP TABLE deliver.queue; --', '{}')$$),
    ($$SELECT deliver.send('q09"; DROP TABLE deliver.queue; --', '{}')$$),
    ($$SELECT deliver.send('%s%s%s%n', '{}')$$),
    ($$SELECT * FROM deliver.receive(repeat('q', 200))$$),
    ($$SELECT * FROM deliver.receive('q09', consumer_group => 'x''; DROP TABLE deliver.queue; --')$$),
    ($$SELECT * FROM deliver.receive('q09', consumer_group => '')$$)) AS t(call);
-- the catalog is still there
SELECT count(*) AS queues FROM deliver.queue WHERE queue_name = 'q09';

--
-- invalid names: 42602 (invalid_name), nothing created
--
SELECT CASE WHEN length(name) > 20 THEN left(name, 5) || '... (' || length(name) || ' characters)'
            ELSE replace(replace(name, chr(10), '\n'), chr(9), '\t') END AS name,
       pg_temp.state(format('SELECT deliver.create_queue(%L)', name)) AS create_queue,
       pg_temp.state(format('SELECT deliver.create_consumer_group(%L, %L)', 'q09', name)) AS create_consumer_group
  FROM (VALUES
    (''),
    (' '),
    ('has space'),
    ('semi;colon'),
    ('single''quote'),
    ('double"quote'),
    ('back\slash'),
    ('new' || chr(10) || 'line'),
    ('tab' || chr(9)),
    ('.leading-dot'),
    ('-leading-dash'),
    ('per%cent'),
    ('slash/name'),
    ('ünïcödé'),
    ('x); DROP TABLE deliver.queue; --'),
    (repeat('n', 64)),
    (repeat('n', 200))) AS t(name);
-- the messages name the bad name, cut to 80 characters
SELECT pg_temp.try(format('SELECT deliver.create_queue(%L)', 'semi;colon')) AS result
UNION ALL
SELECT pg_temp.try(format('SELECT deliver.create_queue(%L)', repeat('n', 200)));
-- names up to 63 characters, with dots and dashes inside, are fine
SELECT deliver.create_queue(repeat('n', 63));
SELECT deliver.create_queue('_a.b-c_9');
SELECT deliver.create_consumer_group('q09', repeat('g', 63));
SELECT deliver.create_consumer_group('q09', '9.g-h_');
SELECT queue_name FROM deliver.list_queues()
 WHERE queue_name IN (repeat('n', 63), '_a.b-c_9') ORDER BY 1;
SELECT consumer_group FROM deliver.list_consumer_groups('q09');
SELECT deliver.drop_queue(repeat('n', 63));
SELECT deliver.drop_queue('_a.b-c_9');
SELECT deliver.drop_consumer_group('q09', repeat('g', 63));
SELECT deliver.drop_consumer_group('q09', '9.g-h_');
-- dropping with an invalid group name is refused the same way
SELECT pg_temp.try($$SELECT deliver.drop_consumer_group('q09', 'bad name')$$);

--
-- numbers out of range: 22023 (invalid_parameter_value)
--
SELECT call, pg_temp.try(call) AS result FROM (VALUES
    ($$SELECT * FROM deliver.receive('q09', 0)$$),
    ($$SELECT * FROM deliver.receive('q09', -1)$$),
    ($$SELECT * FROM deliver.receive('q09', -2147483648)$$),
    ($$SELECT * FROM deliver.receive('q09', 10001)$$),
    ($$SELECT * FROM deliver.receive('q09', 2147483647)$$),
    ($$SELECT * FROM deliver.dead_letters('q09', NULL, 0)$$),
    ($$SELECT * FROM deliver.dead_letters('q09', NULL, -5)$$),
    ($$SELECT * FROM deliver.dead_letters('q09', NULL, 2147483647)$$),
    ($$SELECT deliver.create_queue('q09_n', max_attempts => 0)$$),
    ($$SELECT deliver.create_queue('q09_n', max_attempts => -1)$$),
    ($$SELECT deliver.create_queue('q09_n', max_attempts => 2147483647)$$)) AS t(call);

--
-- intervals: negative, too long, and absurd (too large to count in
-- milliseconds, such as 292 thousand years): all 22023 (invalid_parameter_value)
--
SELECT deliver.create_queue('q09_iv');
SELECT arg, pg_temp.state(format(call, arg)) AS sqlstate, call
  FROM (VALUES
    ($$SELECT deliver.send('q09_iv', '{}', delay => %L)$$),
    ($$SELECT deliver.send_batch('q09_iv', ARRAY['{}']::jsonb[], delay => %L)$$),
    ($$SELECT * FROM deliver.receive('q09_iv', 1, visibility_timeout => %L)$$),
    ($$SELECT * FROM deliver.receive('q09_iv', 1, wait => %L)$$),
    ($$SELECT deliver.nack('q09_iv', 1, NULL, %L)$$),
    ($$SELECT deliver.extend_lease('q09_iv', 1, %L)$$),
    ($$SELECT deliver.create_queue('q09_n', visibility_timeout => %L)$$),
    ($$SELECT deliver.create_queue('q09_n', dedup_window => %L)$$),
    ($$SELECT deliver.create_queue('q09_n', retry_base => %L)$$),
    ($$SELECT deliver.create_queue('q09_n', retry_max => %L)$$)) AS c(call),
       (VALUES ('-1 millisecond'), ('-1 month'), ('400 days'), ('178000000 years'), ('-178000000 years'),
               ('106751992 days 2562047768:01:50.551616'),
               ('-106751992 days -2562047768:01:50.551616')) AS a(arg)
 ORDER BY call, arg;
-- nothing was sent
SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q09_iv');
SELECT deliver.drop_queue('q09_iv');
-- the messages of these checks: readable, with the allowed range
SELECT pg_temp.try(call) AS result FROM (VALUES
    ($$SELECT deliver.send('q09', '{}', delay => '-1 second')$$),
    ($$SELECT * FROM deliver.receive('q09', 1, visibility_timeout => '0')$$),
    ($$SELECT * FROM deliver.receive('q09', 1, wait => '2 hours')$$),
    ($$SELECT deliver.nack('q09', 1, NULL, '-1 second')$$),
    ($$SELECT deliver.extend_lease('q09', 1, '0')$$),
    ($$SELECT deliver.create_queue('q09_n', retry_max => '-1 second')$$)) AS t(call);

--
-- unknown delivery ids: 55000 (object_not_in_prerequisite_state)
--
SELECT call, pg_temp.try(call) AS result FROM (VALUES
    ($$SELECT deliver.ack('q09', 0)$$),
    ($$SELECT deliver.ack('q09', -1)$$),
    ($$SELECT deliver.ack('q09', 42)$$),
    ($$SELECT deliver.ack('q09', 1048575)$$),
    ($$SELECT deliver.ack('q09', 1048576)$$),
    ($$SELECT deliver.ack('q09', 9223372036854775807)$$),
    ($$SELECT deliver.ack_batch('q09', ARRAY[42, 43]::bigint[])$$),
    ($$SELECT deliver.nack('q09', 42)$$),
    ($$SELECT deliver.nack('q09', -42, 'error', '0')$$),
    ($$SELECT deliver.extend_lease('q09', 42, '1 minute')$$)) AS t(call);
-- a real delivery id with a wrong queue name
SELECT deliver.send('q09', '{"n": "real"}') > 0 AS sent;
SELECT delivery_id AS d FROM deliver.receive('q09') \gset
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q09_missing', :d));
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q09', :d + 1));
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q09', -:d));
SELECT deliver.ack('q09', :d);

--
-- wrong argument types and array shapes
--
SELECT call, pg_temp.state(call) AS sqlstate FROM (VALUES
    ($$SELECT deliver.send('q09', 'not json')$$),
    ($$SELECT deliver.send_batch('q09', ARRAY['{}']::jsonb[], ordering_keys => ARRAY[['a']])$$),
    ($$SELECT deliver.send_batch('q09', '[0:1]={"{}","{}"}'::jsonb[])$$),
    ($$SELECT deliver.ack_batch('q09', ARRAY[[1, 2], [3, 4]]::bigint[])$$),
    ($$SELECT * FROM deliver.receive('q09', 1, visibility_timeout => 'soon')$$)) AS t(call);

-- nothing was left half done
SELECT count(*) - :relations_before AS new_relations
  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'deliver';
SELECT queue_name FROM deliver.list_queues() WHERE queue_name LIKE 'q09%' OR queue_name LIKE 'n%';
SELECT consumer_group FROM deliver.list_consumer_groups('q09');
SELECT consumer_group, depth, in_flight, delayed, dead_letters FROM deliver.metrics('q09');

SELECT deliver.drop_queue('q09');
