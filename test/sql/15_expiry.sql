-- Message expiry: a queue's message_ttl, a message's expires_at, on_expire.
\set VERBOSITY terse
\i test/helpers.psql
SELECT pg_temp.wait_until($$SELECT runs > 0 FROM deliver.worker_status()$$) AS worker_runs;

--
-- expires_at: a message past its deadline is never handed out nor shown
--
SELECT deliver.create_queue('q15');
SELECT deliver.send('q15', '{"n": "past"}', expires_at => now() - interval '1 second');
SELECT deliver.send('q15', '{"n": "future"}', expires_at => now() + interval '1 hour');
SELECT deliver.send('q15', '{"n": "none"}', expires_at => NULL);
SELECT deliver.send('q15', '{"n": "infinity"}', expires_at => 'infinity');
SELECT deliver.send('q15', '{"n": "-infinity"}', expires_at => '-infinity');
SELECT message_id, payload, attempt, redelivery FROM deliver.peek('q15', 10);
SELECT message_id, payload, attempt FROM deliver.receive('q15', 10);
-- the expired ones went to the dead letters, never attempted
SELECT message_id, group_name, payload, attempts, reason, last_error FROM deliver.dead_letters('q15');
SELECT count(*) FROM deliver.receive('q15', 10);

-- send_batch: one expires_at for the whole batch
SELECT deliver.send_batch('q15', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[],
                          expires_at => now() - interval '1 minute');
SELECT deliver.send_batch('q15', ARRAY['{"b": 3}']::jsonb[], expires_at => now() + interval '1 minute');
SELECT message_id, payload FROM deliver.receive('q15', 10);
SELECT message_id, payload, reason FROM deliver.dead_letters('q15') WHERE payload ? 'b';

--
-- a redelivery that expired meanwhile: not delivered again
--
SELECT deliver.create_queue('q15_re', visibility_timeout => '30 seconds');
SELECT deliver.send('q15_re', '{"n": "short"}', expires_at => clock_timestamp() + interval '1 second');
SELECT deliver.send('q15_re', '{"n": "long"}', expires_at => clock_timestamp() + interval '1 hour');
CREATE TEMP TABLE d AS SELECT message_id, delivery_id FROM deliver.receive('q15_re', 10);
SELECT message_id FROM d ORDER BY 1;
SELECT deliver.nack('q15_re', delivery_id, 'boom', retry_after => '0') FROM d ORDER BY message_id;
SELECT pg_sleep(1.1);
-- the long one comes back; the short one is a dead letter with its attempt and error
SELECT message_id, payload, attempt FROM deliver.receive('q15_re', 10);
SELECT message_id, payload, attempts, reason, last_error FROM deliver.dead_letters('q15_re');
SELECT count(*) FROM deliver.peek('q15_re', 10);

--
-- message_ttl: a deadline of enqueued_at + ttl for every message
--
SELECT deliver.create_queue('q15_ttl', message_ttl => '1 second');
SELECT message_ttl, on_expire FROM deliver.queue WHERE queue_name = 'q15_ttl';
SELECT deliver.send('q15_ttl', '{"n": 1}');
SELECT deliver.send('q15_ttl', '{"n": 2}', expires_at => now() + interval '1 hour');
SELECT pg_sleep(1.1);
SELECT deliver.send('q15_ttl', '{"n": 3}');
-- the ttl wins over a later expires_at (the earlier deadline counts)
SELECT message_id, payload FROM deliver.peek('q15_ttl', 10);
SELECT message_id, payload FROM deliver.receive('q15_ttl', 10);
SELECT message_id, payload, reason FROM deliver.dead_letters('q15_ttl');
-- alter_queue: a longer ttl (applies to stored messages too), then none
SELECT deliver.alter_queue('q15_ttl', message_ttl => '1 hour');
SELECT message_ttl FROM deliver.queue WHERE queue_name = 'q15_ttl';
SELECT deliver.send('q15_ttl', '{"n": 4}');
SELECT pg_sleep(1.1);
SELECT message_id, payload FROM deliver.receive('q15_ttl', 10);
SELECT deliver.alter_queue('q15_ttl', message_ttl => '0');
SELECT message_ttl FROM deliver.queue WHERE queue_name = 'q15_ttl';

--
-- on_expire 'drop': expired messages are finished, not kept
--
SELECT deliver.create_queue('q15_drop', message_ttl => '1 minute', on_expire => 'drop');
SELECT deliver.send('q15_drop', '{"n": "gone"}', expires_at => now() - interval '1 second');
SELECT deliver.send('q15_drop', '{"n": "kept"}');
SELECT message_id, payload FROM deliver.receive('q15_drop', 10);
SELECT count(*) FROM deliver.dead_letters('q15_drop');
SELECT consumer_group, depth, in_flight, dead_letters FROM deliver.metrics('q15_drop');
-- and back to dead letters
SELECT deliver.alter_queue('q15_drop', on_expire => 'dead_letter');
SELECT deliver.send('q15_drop', '{"n": "dead"}', expires_at => now() - interval '1 second');
SELECT count(*) FROM deliver.receive('q15_drop', 10);
SELECT message_id, payload, reason FROM deliver.dead_letters('q15_drop');

--
-- a delayed message that expires before it is due
--
SELECT deliver.create_queue('q15_delay');
SELECT deliver.send('q15_delay', '{"n": "late"}', delay => '300 milliseconds',
                    expires_at => clock_timestamp() + interval '100 milliseconds');
SELECT deliver.send('q15_delay', '{"n": "in time"}', delay => '300 milliseconds',
                    expires_at => clock_timestamp() + interval '1 hour');
SELECT pg_temp.wait_until($$SELECT delayed = 0 FROM deliver.metrics('q15_delay')$$) AS moved;
SELECT message_id, payload FROM deliver.receive('q15_delay', 10);
SELECT message_id, payload, reason FROM deliver.dead_letters('q15_delay');

--
-- every consumer group, every guarantee; FIFO keys are not held by expired ones
--
SELECT deliver.create_queue('q15_amo', 'at_most_once');
SELECT deliver.send('q15_amo', '{"n": "expired"}', expires_at => now() - interval '1 second');
SELECT deliver.send('q15_amo', '{"n": "fresh"}');
SELECT message_id, payload FROM deliver.receive('q15_amo', 10);
SELECT message_id, payload, attempts, reason FROM deliver.dead_letters('q15_amo');
SELECT count(*) FROM deliver.receive('q15_amo', 10);

SELECT deliver.create_queue('q15_eo', 'exactly_once', fifo => true);
SELECT deliver.create_consumer_group('q15_eo', 'other');
SELECT deliver.send('q15_eo', '{"n": 1}', ordering_key => 'k', idempotency_key => 'i1',
                    expires_at => now() - interval '1 second');
SELECT deliver.send('q15_eo', '{"n": 2}', ordering_key => 'k', idempotency_key => 'i2');
-- the same key again: deduplicated (the first id), expired or not
SELECT deliver.send('q15_eo', '{"n": 1}', ordering_key => 'k', idempotency_key => 'i1');
SELECT message_id, payload FROM deliver.receive('q15_eo', 10);
SELECT message_id, payload FROM deliver.receive('q15_eo', 10, consumer_group => 'other');
SELECT message_id, group_name, reason FROM deliver.dead_letters('q15_eo') ORDER BY group_name;

-- redrive: a redriven message keeps its enqueued_at but not its expires_at
SELECT deliver.redrive('q15', consumer_group => 'default');
SELECT message_id, payload FROM deliver.receive('q15', 10);

--
-- bad input
--
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.create_queue('q15_bad', message_ttl => '-1 second')$$),
    ($$SELECT deliver.create_queue('q15_bad', message_ttl => '366 days')$$),
    ($$SELECT deliver.create_queue('q15_bad', message_ttl => '500 microseconds')$$),
    ($$SELECT deliver.create_queue('q15_bad', on_expire => 'keep')$$),
    ($$SELECT deliver.create_queue('q15_bad', on_expire => '')$$),
    ($$SELECT deliver.alter_queue('q15', message_ttl => '-1 day')$$),
    ($$SELECT deliver.alter_queue('q15', on_expire => 'DROP')$$),
    ($$SELECT deliver.alter_queue('q15_missing', message_ttl => '1 day')$$),
    ($$SELECT deliver.send('q15', '{}', expires_at => NULL)$$),
    ($$SELECT deliver.send_batch('q15', ARRAY['{}']::jsonb[], expires_at => NULL)$$)) AS t(cmd);
SELECT count(*) FROM deliver.queue WHERE queue_name = 'q15_bad';
-- a ttl of 0 at creation is no ttl
SELECT deliver.create_queue('q15_zero', message_ttl => '0');
SELECT message_ttl, on_expire FROM deliver.queue WHERE queue_name = 'q15_zero';

--
-- privileges: the settings are for administrators; expires_at needs the right to send
--
CREATE ROLE regress_deliver_expiry;
SELECT f AS function, has_function_privilege('regress_deliver_expiry', f, 'EXECUTE') AS can_execute
  FROM unnest(ARRAY[
    'deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval, interval, text, bigint, text, text, boolean)',
    'deliver.alter_queue(text, interval, int, interval, interval, interval, interval, interval, text, bigint, text, text, boolean)']) AS f;
SET ROLE regress_deliver_expiry;
SELECT pg_temp.try($$SELECT deliver.send('q15', '{}', expires_at => now())$$);
SELECT pg_temp.try($$SELECT deliver.send_batch('q15', ARRAY['{}']::jsonb[], expires_at => now())$$);
RESET ROLE;
SELECT deliver.grant_queue('q15', 'regress_deliver_expiry', 'send');
SET ROLE regress_deliver_expiry;
SELECT pg_temp.try($$SELECT deliver.send('q15', '{"n": "granted"}', expires_at => now() + interval '1 hour')$$);
RESET ROLE;
SELECT message_id, payload FROM deliver.receive('q15', 10);
SELECT deliver.revoke_queue('q15', 'regress_deliver_expiry');
DROP ROLE regress_deliver_expiry;

SELECT deliver.drop_queue(q) FROM unnest(ARRAY['q15', 'q15_re', 'q15_ttl', 'q15_drop', 'q15_delay',
                                               'q15_amo', 'q15_eo', 'q15_zero']) AS q;
