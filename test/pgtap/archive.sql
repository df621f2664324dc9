-- The archive: a queue with archive_retention keeps a copy of its finished
-- messages, made when maintain() truncates their segment, read with
-- archived(), kept for archive_retention, and sent again to a consumer
-- group with replay_archive().
\ir ../helpers.psql
SELECT plan(30);

SELECT lives_ok($$SELECT deliver.create_queue('archive')$$, 'create queue archive');
SELECT lives_ok($$SELECT deliver.alter_queue('archive', archive_retention => '1 day')$$, 'archive_retention: a day');
SELECT results_eq($$SELECT queue_name, archive_retention FROM deliver.list_queues() WHERE queue_name = 'archive'$$,
                  $$VALUES ('archive'::text, interval '1 day')$$, 'list_queues shows the archive_retention');
SELECT is(deliver.send_batch('archive', array['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[], ordering_keys => array['a', 'b', NULL]),
          ARRAY[1, 2, 3]::bigint[], 'messages 1 to 3');
SELECT is(count(*), 3::bigint, 'received and acked')
  FROM deliver.receive('archive', 10) r WHERE deliver.ack('archive', r.delivery_id);
-- maintain rotates, closes and truncates; the empty receives move the
-- cursor on. Each round commits: a transaction running all of them would
-- hold the queue's locks against the maintenance worker meanwhile.
CREATE PROCEDURE pg_temp.archive_until(n int, INOUT archived bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        PERFORM deliver.maintain('archive');
        COMMIT;
        PERFORM deliver.receive('archive');
        COMMIT;
        archived := (SELECT count(*) FROM deliver.archived('archive'));
        EXIT WHEN archived = 3;
        PERFORM pg_sleep(0.05);   -- (not wait_until: each round needs transactions of its own)
    END LOOP;
END $$;
SET deliver.rotation_interval = '1ms';
CALL pg_temp.archive_until(200, NULL) \gset
SELECT is(:archived::bigint, 3::bigint, 'the segment was archived when it was truncated');
RESET deliver.rotation_interval;
SELECT results_eq($$SELECT message_id, payload, ordering_key, archived_at > enqueued_at FROM deliver.archived('archive')$$,
                  $$VALUES (1::bigint, '{"n": 1}'::jsonb, 'a'::text, true), (2, '{"n": 2}', 'b', true), (3, '{"n": 3}', NULL, true)$$,
                  'archived() gives the finished messages, in order');
SELECT results_eq($$SELECT message_id FROM deliver.archived('archive', max_messages => 1, after_id => 1)$$,
                  ARRAY[2::bigint], 'archived() pages with max_messages and after_id');
-- replay_archive: archived messages sent again to one group, as new messages
-- keeping their time of first sending, key, headers and payload
SELECT lives_ok($$SELECT deliver.create_consumer_group('archive', 'audit')$$, 'a group created after the messages');
SELECT results_eq($$SELECT * FROM deliver.replay_archive('archive', 'audit', max_messages => 2)$$,
                  $$VALUES (2::bigint, 2::bigint)$$, 'replay_archive: two messages, the last one 2');
SELECT results_eq($$SELECT * FROM deliver.replay_archive('archive', 'audit', after_id => 2)$$,
                  $$VALUES (1::bigint, 3::bigint)$$, 'going on after_id 2: the third');
SELECT results_eq($$SELECT * FROM deliver.replay_archive('archive', 'audit', after_id => 3)$$,
                  $$VALUES (0::bigint, NULL::bigint)$$, 'nothing after the last one');
SELECT results_eq($$SELECT * FROM deliver.replay_archive('archive', 'audit', since => now() + interval '1 hour')$$,
                  $$VALUES (0::bigint, NULL::bigint)$$, 'since: nothing enqueued later');
SELECT results_eq($$SELECT r.message_id > 3, r.payload, r.ordering_key, r.enqueued_at = a.enqueued_at, r.attempt
                      FROM deliver.receive('archive', 10, consumer_group => 'audit') r
                      JOIN deliver.archived('archive') a USING (payload) ORDER BY r.message_id$$,
                  $$VALUES (true, '{"n": 1}'::jsonb, 'a'::text, true, 1), (true, '{"n": 2}', 'b', true, 1), (true, '{"n": 3}', NULL, true, 1)$$,
                  'the group receives them as new messages, with their first time of sending, keys and payloads');
SELECT is_empty($$SELECT * FROM deliver.receive('archive', 10)$$, 'other groups get nothing');
SELECT throws_ok(cmd, state, msg, cmd) FROM (VALUES
    ($$SELECT * FROM deliver.replay_archive('archive', 'audit', since => now() - interval '2 days')$$, '22023',
     'since is older than what the archive of queue "archive" keeps'),
    ($$SELECT * FROM deliver.replay_archive('archive', 'nobody')$$, '42704',
     'consumer group "nobody" does not exist on queue "archive"'),
    ($$SELECT * FROM deliver.replay_archive('archive', NULL)$$, '22004', 'consumer_group must not be NULL'),
    ($$SELECT * FROM deliver.replay_archive('archive', 'audit', after_id => NULL)$$, '22004', 'after_id must not be NULL'),
    ($$SELECT * FROM deliver.replay_archive('archive', 'audit', max_messages => 0)$$, '22023',
     format('max_messages must be between 1 and %s', current_setting('deliver.max_batch_size'))))
    AS t(cmd, state, msg);

-- retention: archive_retention '0' turns the archive off; what it holds
-- then expires at once
SELECT lives_ok($$SELECT deliver.alter_queue('archive', archive_retention => '0')$$, 'archive_retention 0: no archive');
SELECT is(count(*), 1::bigint, 'maintain') FROM deliver.maintain('archive');   -- (or the worker's run, whichever comes first)
SELECT is(count(*), 0::bigint, 'the archive is empty') FROM deliver.archived('archive');
SELECT throws_ok(cmd, state, msg, cmd) FROM (VALUES
    ($$SELECT deliver.alter_queue('archive', archive_retention => '-1 day')$$, '22023',
     format('archive_retention must be between %s and %s', interval '0', interval '3650 days')),
    ($$SELECT * FROM deliver.archived('archive', 0)$$, '22023', 'max_messages must be at least 1'),
    ($$SELECT * FROM deliver.archived('archive', NULL)$$, '22004', 'max_messages must not be NULL'),
    ($$SELECT * FROM deliver.archived('archive_missing')$$, '42704', 'queue "archive_missing" does not exist'),
    ($$SELECT * FROM deliver.replay_archive('archive', 'audit')$$, '55000', 'queue "archive" keeps no archive'))
    AS t(cmd, state, msg);

-- archived() is for every role (it checks the right to receive itself)
CREATE ROLE regress_deliver_archive;
SELECT ok(has_function_privilege('regress_deliver_archive', 'deliver.archived(text, int, bigint)', 'EXECUTE'),
          'archived is for every role');
DROP ROLE regress_deliver_archive;

SELECT ok(deliver.drop_queue('archive'), 'drop archive');
DROP PROCEDURE pg_temp.archive_until(int, bigint);
SELECT * FROM finish();
