-- Bad input: every function refuses NULLs where a value is needed, unknown
-- queues, invalid names, out-of-range numbers and intervals, and unknown
-- delivery ids, with a proper SQLSTATE, and leaves nothing half done.
\ir ../helpers.psql
SELECT plan(240);

SELECT lives_ok($$SELECT deliver.create_queue('bad_input', retry_base => '0')$$, 'create queue bad_input');
SELECT is(deliver.send('bad_input', '{"n": 1}'), 1::bigint, 'message 1');
SELECT delivery_id AS d FROM deliver.receive('bad_input') \gset
SELECT count(*) AS relations_before FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
 WHERE s.nspname = 'deliver' \gset

--
-- NULL for every argument that needs a value: 22004 (null_value_not_allowed)
--
SELECT throws_ok(call, '22004', NULL, call) FROM (VALUES
    ($$SELECT deliver.create_queue(NULL)$$),
    ($$SELECT deliver.drop_queue(NULL)$$),
    ($$SELECT deliver.purge_queue(NULL)$$),
    ($$SELECT deliver.create_consumer_group(NULL, 'g')$$),
    ($$SELECT deliver.create_consumer_group('bad_input', NULL)$$),
    ($$SELECT deliver.create_consumer_group('bad_input', 'g', NULL)$$),
    ($$SELECT deliver.drop_consumer_group(NULL, 'default')$$),
    ($$SELECT deliver.drop_consumer_group('bad_input', NULL)$$),
    ($$SELECT * FROM deliver.list_consumer_groups(NULL)$$),
    ($$SELECT deliver.grant_queue(NULL, 'postgres')$$),
    ($$SELECT deliver.grant_queue('bad_input', NULL)$$),
    ($$SELECT deliver.grant_queue('bad_input', 'postgres', NULL)$$),
    ($$SELECT deliver.revoke_queue(NULL, 'postgres')$$),
    ($$SELECT deliver.revoke_queue('bad_input', NULL)$$),
    ($$SELECT deliver.send(NULL, '{}')$$),
    ($$SELECT deliver.send('bad_input', NULL)$$),
    ($$SELECT deliver.send_batch(NULL, ARRAY['{}']::jsonb[])$$),
    ($$SELECT deliver.send_batch('bad_input', NULL)$$),
    ($$SELECT deliver.send_batch('bad_input', ARRAY[NULL]::jsonb[])$$),
    ($$SELECT * FROM deliver.receive(NULL)$$),
    ($$SELECT * FROM deliver.receive('bad_input', NULL)$$),
    ($$SELECT * FROM deliver.receive('bad_input', 1, consumer_group => NULL)$$),
    ($$SELECT deliver.ack(NULL, 1)$$),
    ($$SELECT deliver.ack('bad_input', NULL)$$),
    ($$SELECT deliver.ack_batch(NULL, ARRAY[1]::bigint[])$$),
    ($$SELECT deliver.ack_batch('bad_input', NULL)$$),
    ($$SELECT deliver.ack_batch('bad_input', ARRAY[NULL]::bigint[])$$),
    ($$SELECT deliver.nack(NULL, 1)$$),
    ($$SELECT deliver.nack('bad_input', NULL)$$),
    ($$SELECT deliver.extend_lease(NULL, 1, '1 minute')$$),
    ($$SELECT deliver.extend_lease('bad_input', NULL, '1 minute')$$),
    ($$SELECT deliver.extend_lease('bad_input', 1, NULL)$$),
    ($$SELECT * FROM deliver.dead_letters(NULL)$$),
    ($$SELECT * FROM deliver.dead_letters('bad_input', NULL, NULL)$$),
    ($$SELECT deliver.redrive(NULL)$$)) AS t(call);
-- metrics(NULL) is the metrics of every queue
SELECT lives_ok($$SELECT * FROM deliver.metrics(NULL)$$, 'SELECT * FROM deliver.metrics(NULL)');
-- NULL where an argument is optional means its default (one statement: the
-- sends are not committed when the receive runs)
SELECT lives_ok(call, call) FROM (VALUES
    ($$SELECT deliver.send('bad_input', '{}', NULL, NULL, NULL, NULL)$$),
    ($$SELECT deliver.send_batch('bad_input', ARRAY['{}']::jsonb[], NULL, NULL, NULL, NULL)$$),
    ($$SELECT deliver.send_batch('bad_input', ARRAY['{}', '{}']::jsonb[], ARRAY[NULL, NULL]::jsonb[], ARRAY[NULL, NULL], ARRAY[NULL, NULL])$$),
    ($$SELECT * FROM deliver.receive('bad_input', 1, NULL, NULL)$$),
    ($$SELECT * FROM deliver.dead_letters('bad_input', NULL)$$),
    ($$SELECT deliver.redrive('bad_input', NULL, NULL)$$),
    ($$SELECT deliver.redrive('bad_input', ARRAY[NULL]::bigint[])$$)) AS t(call);
SELECT results_eq($$SELECT array_agg(message_id ORDER BY message_id), bool_and(headers IS NULL AND ordering_key IS NULL)
                      FROM deliver.receive('bad_input', 10)$$,
                  $$VALUES (ARRAY[2, 3, 4, 5]::bigint[], true)$$,
                  'the messages sent with NULL options were stored with the defaults');
-- create_queue: every option left NULL takes its default (retry_base and
-- retry_max from the settings)
SET deliver.default_retry_base = '2 s';
SELECT lives_ok($$SELECT deliver.create_queue('bad_input_defaults', NULL, NULL, NULL, NULL, NULL, NULL, NULL)$$,
                'create_queue with every option NULL');
RESET deliver.default_retry_base;
SELECT results_eq($$SELECT guarantee, visibility_timeout, max_attempts, fifo, dedup_window, retry_base, retry_max
                      FROM deliver.list_queues() WHERE queue_name = 'bad_input_defaults'$$,
                  $$VALUES ('at_least_once'::text, interval '30 seconds', 5, false, interval '5 minutes',
                            interval '2 seconds', interval '5 minutes')$$,
                  'every NULL option took its default');
SELECT ok(deliver.drop_queue('bad_input_defaults'), 'drop bad_input_defaults');
SELECT ok(deliver.nack('bad_input', :d, NULL, NULL), 'a nack with NULL error and retry_after is a plain nack');

--
-- unknown queues: 42704 (undefined_object), from every function
--
SELECT throws_ok(call, '42704', msg, call) FROM (VALUES
    ($$SELECT deliver.drop_queue('bad_input_missing')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.purge_queue('bad_input_missing')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.create_consumer_group('bad_input_missing', 'g')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.drop_consumer_group('bad_input_missing', 'default')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT * FROM deliver.list_consumer_groups('bad_input_missing')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.grant_queue('bad_input_missing', 'postgres')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.revoke_queue('bad_input_missing', 'postgres')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.send('bad_input_missing', '{}')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.send_batch('bad_input_missing', ARRAY['{}']::jsonb[])$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT * FROM deliver.receive('bad_input_missing')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.ack('bad_input_missing', 1)$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.ack_batch('bad_input_missing', ARRAY[1]::bigint[])$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.nack('bad_input_missing', 1)$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.extend_lease('bad_input_missing', 1, '1 minute')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT * FROM deliver.dead_letters('bad_input_missing')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.redrive('bad_input_missing')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT * FROM deliver.metrics('bad_input_missing')$$, 'queue "bad_input_missing" does not exist'),
    ($$SELECT deliver.send('', '{}')$$, 'queue "" does not exist'),
    ($$SELECT deliver.send('BAD_INPUT', '{}')$$, 'queue "BAD_INPUT" does not exist'),
    ($$SELECT deliver.send('bad_input ', '{}')$$, 'queue "bad_input " does not exist'),
    ($$SELECT deliver.send(' bad_input', '{}')$$, 'queue " bad_input" does not exist'),
    ($$SELECT deliver.send('bad_input''; DROP TABLE deliver.queue; --', '{}')$$,
     'queue "bad_input''; DROP TABLE deliver.queue; --" does not exist'),
    ($$SELECT deliver.send('bad_input"; DROP TABLE deliver.queue; --', '{}')$$,
     'queue "bad_input"; DROP TABLE deliver.queue; --" does not exist'),
    ($$SELECT deliver.send('%s%s%s%n', '{}')$$, 'queue "%s%s%s%n" does not exist'),
    ($$SELECT * FROM deliver.receive(repeat('q', 200))$$,
     format('queue "%s" does not exist', repeat('q', 80))),
    ($$SELECT * FROM deliver.receive('bad_input', consumer_group => 'x''; DROP TABLE deliver.queue; --')$$,
     'consumer group "x''; DROP TABLE deliver.queue; --" does not exist on queue "bad_input"'),
    ($$SELECT * FROM deliver.receive('bad_input', consumer_group => '')$$,
     'consumer group "" does not exist on queue "bad_input"')) AS t(call, msg);
SELECT is((SELECT count(*) FROM deliver.queue WHERE queue_name = 'bad_input'), 1::bigint, 'the catalog is still there');

--
-- invalid names: 42602 (invalid_name), nothing created
--
SELECT throws_ok(format('SELECT deliver.%s(%s%L)', f, prefix, name), '42602', NULL,
                 f || ' refuses the name ' ||
                 CASE WHEN length(name) > 20 THEN left(name, 5) || '... (' || length(name) || ' characters)'
                      ELSE '"' || replace(replace(name, chr(10), '\n'), chr(9), '\t') || '"' END)
  FROM (VALUES ('create_queue', ''), ('create_consumer_group', quote_literal('bad_input') || ', ')) AS f(f, prefix),
       (VALUES
    (1, ''),
    (2, ' '),
    (3, 'has space'),
    (4, 'semi;colon'),
    (5, 'single''quote'),
    (6, 'double"quote'),
    (7, 'back\slash'),
    (8, 'new' || chr(10) || 'line'),
    (9, 'tab' || chr(9)),
    (10, '.leading-dot'),
    (11, '-leading-dash'),
    (12, 'per%cent'),
    (13, 'slash/name'),
    (14, 'ünïcödé'),
    (15, 'x); DROP TABLE deliver.queue; --'),
    (16, repeat('n', 64)),
    (17, repeat('n', 200))) AS t(i, name)
 ORDER BY i, f;
-- the messages name the bad name, cut to 80 characters
SELECT throws_ok(format('SELECT deliver.create_queue(%L)', 'semi;colon'), '42602', 'invalid queue name "semi;colon"',
                 'the message names the bad name');
SELECT throws_ok(format('SELECT deliver.create_queue(%L)', repeat('n', 200)), '42602',
                 format('invalid queue name "%s"', repeat('n', 80)), 'cut to 80 characters');
-- names up to 63 characters, with dots and dashes inside, are fine
SELECT lives_ok(format('SELECT deliver.create_queue(%L)', repeat('n', 63)), 'a queue name of 63 characters');
SELECT lives_ok($$SELECT deliver.create_queue('_a.b-c_9')$$, 'a queue name with dots and dashes inside');
SELECT lives_ok(format('SELECT deliver.create_consumer_group(%L, %L)', 'bad_input', repeat('g', 63)),
                'a group name of 63 characters');
SELECT lives_ok($$SELECT deliver.create_consumer_group('bad_input', '9.g-h_')$$, 'a group name with dots and dashes inside');
SELECT results_eq($$SELECT queue_name FROM deliver.list_queues()
                     WHERE queue_name IN (repeat('n', 63), '_a.b-c_9') ORDER BY 1$$,
                  ARRAY['_a.b-c_9', repeat('n', 63)], 'the queues are there');
SELECT results_eq($$SELECT consumer_group FROM deliver.list_consumer_groups('bad_input')$$,
                  ARRAY['default', repeat('g', 63), '9.g-h_'], 'the groups are there');
SELECT ok(deliver.drop_queue(repeat('n', 63)), 'drop the queue of 63 characters');
SELECT ok(deliver.drop_queue('_a.b-c_9'), 'drop the queue with dots and dashes');
SELECT ok(deliver.drop_consumer_group('bad_input', repeat('g', 63)), 'drop the group of 63 characters');
SELECT ok(deliver.drop_consumer_group('bad_input', '9.g-h_'), 'drop the group with dots and dashes');
SELECT throws_ok($$SELECT deliver.drop_consumer_group('bad_input', 'bad name')$$, '42602',
                 'invalid consumer group name "bad name"', 'dropping with an invalid group name is refused the same way');

--
-- numbers out of range: 22023 (invalid_parameter_value)
--
SELECT throws_ok(call, '22023', msg, call) FROM (VALUES
    ($$SELECT * FROM deliver.receive('bad_input', 0)$$, 'max_messages must be between 1 and 10000'),
    ($$SELECT * FROM deliver.receive('bad_input', -1)$$, 'max_messages must be between 1 and 10000'),
    ($$SELECT * FROM deliver.receive('bad_input', -2147483648)$$, 'max_messages must be between 1 and 10000'),
    ($$SELECT * FROM deliver.receive('bad_input', 10001)$$, 'max_messages must be between 1 and 10000'),
    ($$SELECT * FROM deliver.receive('bad_input', 2147483647)$$, 'max_messages must be between 1 and 10000'),
    ($$SELECT * FROM deliver.dead_letters('bad_input', NULL, 0)$$, 'max_messages must be at least 1'),
    ($$SELECT * FROM deliver.dead_letters('bad_input', NULL, -5)$$, 'max_messages must be at least 1'),
    ($$SELECT deliver.create_queue('bad_input_n', max_attempts => 0)$$, 'max_attempts must be between 1 and 1000'),
    ($$SELECT deliver.create_queue('bad_input_n', max_attempts => -1)$$, 'max_attempts must be between 1 and 1000'),
    ($$SELECT deliver.create_queue('bad_input_n', max_attempts => 2147483647)$$, 'max_attempts must be between 1 and 1000'))
    AS t(call, msg);
-- a large max_messages for the dead letters is fine
SELECT lives_ok($$SELECT * FROM deliver.dead_letters('bad_input', NULL, 2147483647)$$,
                'SELECT * FROM deliver.dead_letters(''bad_input'', NULL, 2147483647)');

--
-- intervals: negative, too long, and absurd (too large to count in
-- milliseconds, such as 292 thousand years): all 22023 (invalid_parameter_value)
--
SELECT lives_ok($$SELECT deliver.create_queue('bad_input_iv')$$, 'create queue bad_input_iv');
SELECT throws_ok(format(call, arg), '22023', NULL, format(call, arg))
  FROM (VALUES
    ($$SELECT deliver.send('bad_input_iv', '{}', delay => %L)$$),
    ($$SELECT deliver.send_batch('bad_input_iv', ARRAY['{}']::jsonb[], delay => %L)$$),
    ($$SELECT * FROM deliver.receive('bad_input_iv', 1, visibility_timeout => %L)$$),
    ($$SELECT * FROM deliver.receive('bad_input_iv', 1, wait => %L)$$),
    ($$SELECT deliver.nack('bad_input_iv', 1, NULL, %L)$$),
    ($$SELECT deliver.extend_lease('bad_input_iv', 1, %L)$$),
    ($$SELECT deliver.create_queue('bad_input_n', visibility_timeout => %L)$$),
    ($$SELECT deliver.create_queue('bad_input_n', dedup_window => %L)$$),
    ($$SELECT deliver.create_queue('bad_input_n', retry_base => %L)$$),
    ($$SELECT deliver.create_queue('bad_input_n', retry_max => %L)$$)) AS c(call),
       (VALUES ('-1 millisecond'), ('-1 month'), ('400 days'), ('178000000 years'), ('-178000000 years'),
               ('106751992 days 2562047768:01:50.551616'),
               ('-106751992 days -2562047768:01:50.551616')) AS a(arg)
 ORDER BY call, arg;
SELECT results_eq($$SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('bad_input_iv')$$,
                  $$VALUES ('default'::text, 0::bigint, 0::bigint, 0::bigint)$$, 'nothing was sent');
SELECT ok(deliver.drop_queue('bad_input_iv'), 'drop bad_input_iv');
-- the messages of these checks: readable, with the allowed range
SELECT throws_ok(call, '22023', msg, call) FROM (VALUES
    ($$SELECT deliver.send('bad_input', '{}', delay => '-1 second')$$, 'delay must be between 0 and 365 days'),
    ($$SELECT * FROM deliver.receive('bad_input', 1, visibility_timeout => '0')$$,
     'visibility_timeout must be between 1 millisecond and 12 hours'),
    ($$SELECT * FROM deliver.receive('bad_input', 1, wait => '2 hours')$$, 'wait must be between 0 and 1 hour'),
    ($$SELECT deliver.nack('bad_input', 1, NULL, '-1 second')$$, 'retry_after must be between 0 and 12 hours'),
    ($$SELECT deliver.extend_lease('bad_input', 1, '0')$$, 'visibility_timeout must be between 1 millisecond and 12 hours'),
    ($$SELECT deliver.create_queue('bad_input_n', retry_max => '-1 second')$$, format('retry_max must be between %s and %s', interval '0', interval '7 days')))
    AS t(call, msg);

--
-- unknown delivery ids: 55000 (object_not_in_prerequisite_state)
--
SELECT throws_ok(call, '55000', msg, call) FROM (VALUES
    ($$SELECT deliver.ack('bad_input', 0)$$, 'delivery 0 is not current on queue "bad_input"'),
    ($$SELECT deliver.ack('bad_input', -1)$$, 'delivery -1 is not current on queue "bad_input"'),
    ($$SELECT deliver.ack('bad_input', 42)$$, 'delivery 42 is not current on queue "bad_input"'),
    ($$SELECT deliver.ack('bad_input', 1048575)$$, 'delivery 1048575 is not current on queue "bad_input"'),
    ($$SELECT deliver.ack('bad_input', 1048576)$$, 'delivery 1048576 is not current on queue "bad_input"'),
    ($$SELECT deliver.ack('bad_input', 9223372036854775807)$$,
     'delivery 9223372036854775807 is not current on queue "bad_input"'),
    ($$SELECT deliver.ack_batch('bad_input', ARRAY[42, 43]::bigint[])$$, 'delivery 42 is not current on queue "bad_input"'),
    ($$SELECT deliver.nack('bad_input', 42)$$, 'delivery 42 is not current on queue "bad_input"'),
    ($$SELECT deliver.nack('bad_input', -42, 'error', '0')$$, 'delivery -42 is not current on queue "bad_input"'),
    ($$SELECT deliver.extend_lease('bad_input', 42, '1 minute')$$, 'delivery 42 is not current on queue "bad_input"'))
    AS t(call, msg);
-- a real delivery id with a wrong queue name, and ids next to it
SELECT ok(deliver.send('bad_input', '{"n": "real"}') > 0, 'a real message');
SELECT delivery_id AS d FROM deliver.receive('bad_input') \gset
SELECT throws_ok(format('SELECT deliver.ack(%L, %s)', 'bad_input_missing', :d), '42704',
                 'queue "bad_input_missing" does not exist', 'a real delivery id with a wrong queue name');
SELECT throws_ok(format('SELECT deliver.ack(%L, %s)', 'bad_input', :d + 1), '55000',
                 format('delivery %s is not current on queue "bad_input"', :d + 1), 'the delivery id after a real one');
SELECT throws_ok(format('SELECT deliver.ack(%L, %s)', 'bad_input', -:d), '55000',
                 format('delivery %s is not current on queue "bad_input"', -:d), 'a real delivery id negated');
SELECT ok(deliver.ack('bad_input', :d), 'the real delivery id acks');

--
-- wrong argument types and array shapes
--
SELECT throws_ok(call, state, NULL, call) FROM (VALUES
    ($$SELECT deliver.send('bad_input', 'not json')$$, '22P02'),
    ($$SELECT deliver.send_batch('bad_input', ARRAY['{}']::jsonb[], ordering_keys => ARRAY[['a']])$$, '2202E'),
    ($$SELECT deliver.ack_batch('bad_input', ARRAY[[1, 2], [3, 4]]::bigint[])$$, '2202E'),
    ($$SELECT * FROM deliver.receive('bad_input', 1, visibility_timeout => 'soon')$$, '22007')) AS t(call, state);
-- an array with other bounds than 1 is fine
SELECT lives_ok($$SELECT deliver.send_batch('bad_input', '[0:1]={"{}","{}"}'::jsonb[])$$,
                $$SELECT deliver.send_batch('bad_input', '[0:1]={"{}","{}"}'::jsonb[])$$);

-- nothing was left half done
SELECT is(count(*) - :relations_before, 0::bigint, 'no relation was left behind')
  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'deliver';
SELECT results_eq($$SELECT queue_name FROM deliver.list_queues() WHERE queue_name LIKE 'bad_input%' OR queue_name LIKE 'n%'$$,
                  ARRAY['bad_input'], 'no queue was left behind');
SELECT results_eq($$SELECT consumer_group FROM deliver.list_consumer_groups('bad_input')$$,
                  ARRAY['default'], 'no group was left behind');
SELECT results_eq($$SELECT consumer_group, depth, in_flight, delayed, dead_letters FROM deliver.metrics('bad_input')$$,
                  $$VALUES ('default'::text, 3::bigint, 4::bigint, 0::bigint, 0::bigint)$$,
                  'the queue holds what the successful calls sent');

SELECT ok(deliver.drop_queue('bad_input'), 'drop bad_input');
SELECT * FROM finish();
