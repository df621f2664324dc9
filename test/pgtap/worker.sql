-- The maintenance worker seen from SQL: worker_status, a lease that ran out
-- swept to the dead letters without any receive, and dead-letter retention
-- in maintain().
\ir ../helpers.psql
SELECT plan(12);

-- one row per database in deliver.database; the worker of this one runs
-- (it comes up within seconds of the database's creation)
SELECT ok(pg_temp.wait_until($$SELECT pid IS NOT NULL FROM deliver.worker_status() WHERE database = current_database()$$),
          'the worker of this database runs');
SELECT results_eq($$SELECT database = current_database(), pid IS NOT NULL, started_at <= now() FROM deliver.worker_status()$$,
                  $$VALUES (true, true, true)$$, 'worker_status: one row, of this database, with its pid and start');

--
-- the sweep: a lease that ran out on a queue with one attempt goes to the
-- dead letters without any receive
--
SELECT lives_ok($$SELECT deliver.create_queue('worker', visibility_timeout => '1 ms', max_attempts => 1, retry_base => '0')$$,
                'create queue worker');
SELECT is(deliver.send('worker', '{"n": "swept"}'), 1::bigint, 'message 1');
SELECT is((SELECT count(*) FROM deliver.receive('worker')), 1::bigint, 'leased for 1 ms');
SELECT ok(pg_temp.wait_until($$SELECT count(*) = 1 FROM deliver.dead_letters('worker')$$),
          'the worker moved it to the dead letters');
SELECT results_eq($$SELECT payload, reason, attempts FROM deliver.dead_letters('worker')$$,
                  $$VALUES ('{"n": "swept"}'::jsonb, 'lease expired'::text, 1)$$, 'the dead letter says why');

--
-- dead-letter retention: maintain() deletes dead letters older than it
--
SELECT results_eq($$SELECT queue, expired_dead_letters FROM deliver.maintain('worker')$$,
                  $$VALUES ('worker'::text, 0::bigint)$$, 'a dead letter younger than the retention stays');
SET deliver.dead_letter_retention = '1s';   -- a superuser may set it per session
-- a sleep, not a wait: what is tested is the dead letter getting older than the retention
SELECT pg_sleep(1.1) \g /dev/null
SELECT results_eq($$SELECT queue, expired_dead_letters FROM deliver.maintain('worker')$$,
                  $$VALUES ('worker'::text, 1::bigint)$$, 'one older than the retention is deleted');
SELECT is((SELECT count(*) FROM deliver.dead_letters('worker')), 0::bigint, 'no dead letter left');
RESET deliver.dead_letter_retention;

-- worker_status is for pg_monitor, not for PUBLIC
CREATE ROLE regress_deliver_worker;
SELECT ok(NOT has_function_privilege('regress_deliver_worker', 'deliver.worker_status()', 'EXECUTE'),
          'worker_status is not for PUBLIC');
DROP ROLE regress_deliver_worker;

SELECT ok(deliver.drop_queue('worker'), 'drop worker');
SELECT * FROM finish();
