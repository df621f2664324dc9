-- receive, ack, ack_batch, nack, extend_lease on at-least-once queues, and
-- receive on at-most-once queues.
\set VERBOSITY terse
\i test/helpers.psql
-- retry_base 0: an expired or nacked message is visible again at once
SELECT deliver.create_queue('q03', visibility_timeout => '30 seconds', retry_base => '0',
                            max_attempts => 10);
SELECT deliver.create_queue('q03_other', retry_base => '0');

-- an empty queue gives no rows
SELECT * FROM deliver.receive('q03');
SELECT * FROM deliver.receive('q03', 10);

SELECT deliver.send_batch('q03', array_agg(jsonb_build_object('n', i) ORDER BY i))
  FROM generate_series(1, 6) AS i;

--
-- receive: max_messages, the queue's visibility timeout or the caller's
--
SELECT message_id, payload, attempt, delivery_id > 0 AS has_delivery,
       enqueued_at <= now() AS enqueued_before_now,
       lease_expires_at BETWEEN now() + interval '29 seconds' AND clock_timestamp() + interval '30 seconds' AS lease_30s
  FROM deliver.receive('q03', 2);
-- the default is one message
SELECT message_id, lease_expires_at BETWEEN now() + interval '4 minutes' AND clock_timestamp() + interval '5 minutes' AS lease_5min
  FROM deliver.receive('q03', visibility_timeout => '5 minutes');
-- leased messages are not handed out again
SELECT message_id FROM deliver.receive('q03', 2);
-- fewer than asked when fewer are there; delivery ids are all different
SELECT count(*) AS received, count(DISTINCT delivery_id) AS distinct_ids
  FROM deliver.receive('q03', 10);
SELECT message_id FROM deliver.receive('q03', 10);
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03');
-- a lease that ran out: the message comes back with the next attempt
-- (receive with a 0.2 s lease, wait well past it)
SELECT deliver.purge_queue('q03');
SELECT deliver.send('q03', '{"n": "expiring"}');
SELECT message_id, attempt, delivery_id AS d_first FROM deliver.receive('q03', visibility_timeout => '200 milliseconds') \gset
SELECT message_id FROM deliver.receive('q03');
-- a sleep, not a wait: the 200 ms lease runs out
SELECT pg_sleep(0.5);
SELECT message_id, attempt, delivery_id AS d_second FROM deliver.receive('q03', visibility_timeout => '200 milliseconds') \gset
SELECT :message_id AS message_id, :attempt AS attempt, :d_second <> :d_first AS new_delivery_id;
-- the first delivery id is stale now: ack, nack and extend_lease refuse it
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03', :d_first));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q03', :d_first));
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03', :d_first, '1 minute'));
SELECT pg_temp.try(format('SELECT deliver.ack_batch(%L, ARRAY[%s])', 'q03', :d_first));
-- and once more: the third attempt
-- a sleep, not a wait: the second 200 ms lease runs out
SELECT pg_sleep(0.5);
SELECT message_id, attempt, delivery_id AS d_third FROM deliver.receive('q03') \gset
SELECT :attempt AS attempt;
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03', :d_second));
SELECT deliver.ack('q03', :d_third);
SELECT message_id FROM deliver.receive('q03');

--
-- ack
--
SELECT deliver.send('q03', '{"n": "ack me"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03') \gset
SELECT deliver.ack('q03', :d);
-- an acked message never comes back
SELECT message_id FROM deliver.receive('q03');
-- a second ack in a later transaction changes nothing: the id is no longer current
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03', :d));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q03', :d));
SELECT message_id FROM deliver.receive('q03');
-- a second ack in the same transaction returns false
SELECT deliver.send('q03', '{"n": "ack twice"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03') \gset
BEGIN;
SELECT deliver.ack('q03', :d) AS first_ack;
SELECT deliver.ack('q03', :d) AS second_ack;
COMMIT;
SELECT message_id FROM deliver.receive('q03');
-- an ack that rolls back leaves the lease as it was
SELECT deliver.send('q03', '{"n": "ack rolled back"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03') \gset
BEGIN;
SELECT deliver.ack('q03', :d);
ROLLBACK;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03');
SELECT deliver.ack('q03', :d);
-- an ack after the lease ran out but before anyone received the message again
SELECT deliver.send('q03', '{"n": "late ack"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03', visibility_timeout => '200 milliseconds') \gset
-- a sleep, not a wait: the 200 ms lease runs out
SELECT pg_sleep(0.5);
SELECT deliver.ack('q03', :d);
SELECT message_id FROM deliver.receive('q03');
-- a delivery id of another queue is refused, and the other lease is untouched
SELECT deliver.send('q03_other', '{"n": "other"}');
SELECT message_id, delivery_id AS d_other FROM deliver.receive('q03_other') \gset
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03', :d_other));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q03', :d_other));
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03', :d_other, '1 minute'));
SELECT pg_temp.try(format('SELECT deliver.ack_batch(%L, ARRAY[%s])', 'q03', :d_other));
SELECT deliver.ack('q03_other', :d_other);
-- delivery ids that never existed
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.ack('q03', 0)$$),
    ($$SELECT deliver.ack('q03', -1)$$),
    ($$SELECT deliver.ack('q03', 1)$$),
    ($$SELECT deliver.ack('q03', 12345)$$),
    ($$SELECT deliver.ack('q03', 9223372036854775807)$$),
    ($$SELECT deliver.ack('q03', -9223372036854775808)$$),
    ($$SELECT deliver.nack('q03', 12345)$$),
    ($$SELECT deliver.extend_lease('q03', 12345, '1 minute')$$),
    ($$SELECT deliver.ack_batch('q03', ARRAY[12345])$$)) AS t(cmd);

--
-- ack_batch
--
SELECT deliver.send_batch('q03', ARRAY['{"b": 1}', '{"b": 2}', '{"b": 3}', '{"b": 4}']::jsonb[]);
SELECT array_agg(delivery_id ORDER BY message_id) AS ds FROM deliver.receive('q03', 4) \gset
SELECT deliver.ack_batch('q03', :'ds'::bigint[]) AS acked;
SELECT message_id FROM deliver.receive('q03', 10);
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03');
-- an empty batch acks nothing
SELECT deliver.ack_batch('q03', '{}');
-- all or nothing: one stale id fails the whole batch
SELECT deliver.send_batch('q03', ARRAY['{"b": 5}', '{"b": 6}']::jsonb[]);
SELECT array_agg(delivery_id ORDER BY message_id) AS ds FROM deliver.receive('q03', 2) \gset
SELECT pg_temp.try(format('SELECT deliver.ack_batch(%L, %L::bigint[] || ARRAY[12345::bigint])', 'q03', :'ds'));
SELECT pg_temp.try(format('SELECT deliver.ack_batch(%L, %L::bigint[] || ARRAY[NULL::bigint])', 'q03', :'ds'));
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03');
-- the same id twice counts once
SELECT deliver.ack_batch('q03', :'ds'::bigint[] || :'ds'::bigint[]) AS acked;
SELECT consumer_group, depth, in_flight, acked_total FROM deliver.metrics('q03');
-- a batch larger than deliver.max_batch_size
SET deliver.max_batch_size = 2;
SELECT pg_temp.try($$SELECT deliver.ack_batch('q03', ARRAY[1, 2, 3]::bigint[])$$);
RESET deliver.max_batch_size;

--
-- nack
--
SELECT deliver.send('q03', '{"n": "nack me"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03') \gset
-- retry_after 0: visible again at once, as the next attempt
SELECT deliver.nack('q03', :d, 'first failure', '0');
SELECT message_id, attempt, delivery_id AS d2 FROM deliver.receive('q03') \gset
SELECT :message_id AS message_id, :attempt AS attempt, :d2 <> :d AS new_delivery_id;
-- the delivery id of the first attempt is stale now
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03', :d));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q03', :d));
-- a nacked delivery cannot be nacked twice
SELECT deliver.nack('q03', :d2, retry_after => '200 milliseconds');
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q03', :d2));
-- not visible before retry_after, visible after
SELECT message_id FROM deliver.receive('q03');
-- a sleep, not a wait: retry_after (200 ms) passes
SELECT pg_sleep(0.5);
SELECT message_id, attempt, delivery_id AS d3 FROM deliver.receive('q03') \gset
SELECT :message_id AS message_id, :attempt AS attempt;
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03', :d2));
-- a nack does not wait for its transaction: it takes effect even if that rolls back
BEGIN;
SELECT deliver.nack('q03', :d3, error => 'nacked then rolled back', retry_after => '0');
ROLLBACK;
SELECT message_id, attempt, delivery_id AS d4 FROM deliver.receive('q03') \gset
SELECT :message_id AS message_id, :attempt AS attempt;
-- nack of a message this transaction acks
BEGIN;
SELECT deliver.ack('q03', :d4);
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q03', :d4));
COMMIT;
SELECT message_id FROM deliver.receive('q03');
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03');
-- without retry_after the queue's backoff applies (retry_base 1 hour here)
SELECT deliver.create_queue('q03_backoff', retry_base => '1 hour', retry_max => '2 hours');
SELECT deliver.send('q03_backoff', '{"n": "backoff"}');
SELECT delivery_id AS db FROM deliver.receive('q03_backoff') \gset
SELECT deliver.nack('q03_backoff', :db, 'try later');
SELECT message_id FROM deliver.receive('q03_backoff');
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03_backoff');
-- the nack ended that delivery: its id acks nothing (see q03_ids below)
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03_backoff', :db));
SELECT consumer_group, depth, in_flight, acked_total FROM deliver.metrics('q03_backoff');
-- bad retry_after
SELECT deliver.send('q03', '{"n": "bad retry"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03') \gset
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s, NULL, %L)', 'q03', :d, '-1 second'));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s, NULL, %L)', 'q03', :d, '12 hours 1 second'));
-- a NULL error is fine, and so is a long one
SELECT deliver.nack('q03', :d, NULL, '0');
SELECT message_id, attempt, delivery_id AS d FROM deliver.receive('q03') \gset
SELECT deliver.nack('q03', :d, repeat('e', 10000), '0');
SELECT message_id, attempt, delivery_id AS d FROM deliver.receive('q03') \gset
SELECT :message_id AS message_id, :attempt AS attempt;
SELECT deliver.ack('q03', :d);

--
-- extend_lease
--
SELECT deliver.send('q03', '{"n": "extend me"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03', visibility_timeout => '200 milliseconds') \gset
SELECT deliver.extend_lease('q03', :d, '1 minute')
       BETWEEN now() + interval '59 seconds' AND clock_timestamp() + interval '1 minute' AS extended;
-- a sleep, not a wait: more than the first 200 ms pass: the extended lease holds
SELECT pg_sleep(0.5);
-- still leased: nobody else gets it, and its delivery id still works
SELECT message_id FROM deliver.receive('q03');
-- a lease can be shortened too
SELECT deliver.extend_lease('q03', :d, '200 milliseconds') IS NOT NULL AS shortened;
-- a sleep, not a wait: the shortened lease runs out
SELECT pg_sleep(0.5);
WITH r AS (SELECT * FROM deliver.receive('q03', visibility_timeout => '1 minute'))
SELECT message_id, attempt, delivery_id <> :d AS new_delivery_id, deliver.ack('q03', delivery_id) AS acked
  FROM r;
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03', :d, '1 minute'));
-- bad visibility timeouts
SELECT deliver.send('q03', '{"n": "bad extend"}');
SELECT message_id, delivery_id AS d FROM deliver.receive('q03') \gset
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03', :d, '0'));
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03', :d, '-1 second'));
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03', :d, '12 hours 1 second'));
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, NULL)', 'q03', :d));
SELECT deliver.extend_lease('q03', :d, '12 hours') IS NOT NULL AS twelve_hours_ok;
SELECT deliver.ack('q03', :d);
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03', :d, '1 minute'));

--
-- receive: bad arguments
--
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver.receive('q03', 0)$$),
    ($$SELECT * FROM deliver.receive('q03', -1)$$),
    ($$SELECT * FROM deliver.receive('q03', 10001)$$),
    ($$SELECT * FROM deliver.receive('q03', 2147483647)$$),
    ($$SELECT * FROM deliver.receive('q03', NULL)$$),
    ($$SELECT * FROM deliver.receive('q03', 1, '0')$$),
    ($$SELECT * FROM deliver.receive('q03', 1, '-1 second')$$),
    ($$SELECT * FROM deliver.receive('q03', 1, '12 hours 1 second')$$),
    ($$SELECT * FROM deliver.receive('q03', 1, wait => '-1 second')$$),
    ($$SELECT * FROM deliver.receive('q03', 1, wait => '1 hour 1 second')$$),
    ($$SELECT * FROM deliver.receive('q03', 1, consumer_group => NULL)$$),
    ($$SELECT * FROM deliver.receive('q03', 1, consumer_group => 'nobody')$$)) AS t(cmd);
-- a NULL visibility timeout means the queue's; a NULL wait means no wait
SELECT deliver.send('q03', '{"n": "nulls"}');
SELECT message_id, lease_expires_at BETWEEN now() + interval '29 seconds' AND clock_timestamp() + interval '30 seconds' AS lease_30s
  FROM deliver.receive('q03', 1, NULL, NULL);
-- a large batch is allowed up to deliver.max_batch_size
SELECT count(*) FROM deliver.receive('q03', 10000);
SET deliver.max_batch_size = 5;
SELECT pg_temp.try($$SELECT * FROM deliver.receive('q03', 6)$$);
RESET deliver.max_batch_size;
-- a short long poll on an empty queue returns nothing
SELECT count(*) FROM deliver.receive('q03', 1, wait => '100 milliseconds');

--
-- at-most-once: no delivery id, no lease, never returned again
--
SELECT deliver.create_queue('q03_amo', 'at_most_once');
SELECT deliver.send_batch('q03_amo', ARRAY['{"m": 1}', '{"m": 2}', '{"m": 3}']::jsonb[]);
SELECT message_id, delivery_id, payload, attempt, lease_expires_at
  FROM deliver.receive('q03_amo', 2, visibility_timeout => '200 milliseconds');
-- a sleep, not a wait: more than the visibility timeout passes: nothing comes back
SELECT pg_sleep(0.5);
SELECT message_id, delivery_id, attempt FROM deliver.receive('q03_amo', 10);
SELECT message_id FROM deliver.receive('q03_amo', 10);
-- a received message is gone even if the receiving transaction rolls back
SELECT deliver.send('q03_amo', '{"m": 4}');
BEGIN;
SELECT message_id, delivery_id FROM deliver.receive('q03_amo');
ROLLBACK;
SELECT message_id FROM deliver.receive('q03_amo', 10);
-- nothing to ack on an at-most-once queue
SELECT pg_temp.try($$SELECT deliver.ack('q03_amo', 1)$$);
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03_amo');

--
-- When a delivery id stops being current: ack (at commit), nack, the
-- receive rolling back, or the message being delivered again.  A lease
-- that ran out does not end it by itself: ack and nack are still taken
-- until the message is delivered again; extend_lease is not.
--
SELECT deliver.create_queue('q03_ids', retry_base => '1 hour');
SELECT deliver.send_batch('q03_ids', ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}', '{"i": 4}']::jsonb[]) IS NOT NULL AS sent;
SELECT delivery_id AS nacked FROM deliver.receive('q03_ids') \gset
SELECT deliver.nack('q03_ids', :nacked, 'retry me');
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03_ids', :nacked)) AS ack_after_nack;
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03_ids', :nacked, '1 minute')) AS extend_after_nack;
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s)', 'q03_ids', :nacked)) AS nack_after_nack;
-- a lease that ran out: extend refused, ack still taken (not delivered again)
SELECT delivery_id AS ran_out FROM deliver.receive('q03_ids', visibility_timeout => '10 milliseconds') \gset
-- a sleep, not a wait: the 10 ms lease runs out
SELECT pg_sleep(0.05);
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03_ids', :ran_out, '1 minute')) AS extend_after_expiry;
SELECT deliver.ack('q03_ids', :ran_out) AS ack_after_expiry;
-- and nack (which ends it)
SELECT delivery_id AS ran_out2 FROM deliver.receive('q03_ids', visibility_timeout => '10 milliseconds') \gset
-- a sleep, not a wait: the 10 ms lease runs out
SELECT pg_sleep(0.05);
SELECT deliver.nack('q03_ids', :ran_out2, 'late') AS nack_after_expiry;
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03_ids', :ran_out2)) AS ack_after_that;
-- a rolled-back receive's id
BEGIN;
SELECT delivery_id AS rolled_back FROM deliver.receive('q03_ids') \gset
ROLLBACK;
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q03_ids', :rolled_back)) AS ack_after_rollback;
SELECT pg_temp.try(format('SELECT deliver.extend_lease(%L, %s, %L)', 'q03_ids', :rolled_back, '1 minute')) AS extend_after_rollback;
-- the message of the rolled-back receive comes again at once (attempt 2)
SELECT payload, attempt, deliver.ack('q03_ids', delivery_id) FROM deliver.receive('q03_ids');
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q03_ids');
SELECT deliver.drop_queue('q03_ids');

SELECT deliver.drop_queue('q03');
SELECT deliver.drop_queue('q03_other');
SELECT deliver.drop_queue('q03_backoff');
SELECT deliver.drop_queue('q03_amo');
