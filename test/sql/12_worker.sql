-- The maintenance worker's SQL side: worker_status, alter_queue, retry
-- defaults from settings, the lease sweep, alerts (set_alert, list_alerts,
-- the check the worker runs), dead-letter retention in maintain().
-- (test/deliver.conf sets deliver.alert_interval to an hour, so the worker
-- leaves the alerts below to this file.)
\set VERBOSITY terse
\i test/helpers.psql

-- one row per database in deliver.database; the worker of this one runs
-- (it comes up within seconds of the database's creation)
SELECT pg_temp.wait_until($$SELECT pid IS NOT NULL FROM deliver.worker_status()$$) AS running;
SELECT database, pid IS NOT NULL AS running, started_at <= now() AS started
  FROM deliver.worker_status();

--
-- alter_queue: NULL keeps a setting
--
SELECT deliver.create_queue('q12', visibility_timeout => '10 s', max_attempts => 3, retry_base => '0');
SELECT deliver.alter_queue('q12', visibility_timeout => '2 minutes', max_attempts => 1);
SELECT deliver.alter_queue('q12', retry_max => '1 minute');
SELECT queue_name, visibility_timeout, max_attempts, retry_base, retry_max, dedup_window
  FROM deliver.list_queues() WHERE queue_name = 'q12';
-- the new settings apply to the next receive (this session's cache too)
SELECT deliver.send('q12', '{"n": 1}');
SELECT lease_expires_at - now() > interval '100 s' AS two_minute_lease FROM deliver.receive('q12');
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.alter_queue(NULL)$$),
    ($$SELECT deliver.alter_queue('q12_missing')$$),
    ($$SELECT deliver.alter_queue('q12', max_attempts => 0)$$),
    ($$SELECT deliver.alter_queue('q12', visibility_timeout => '-1 s')$$),
    ($$SELECT deliver.alter_queue('q12', retry_base => '2 days')$$),
    ($$SELECT deliver.alter_queue('q12', dedup_window => '0')$$)) AS t(cmd);

-- retry defaults of new queues come from settings
SET deliver.default_retry_base = '250ms';
SET deliver.default_retry_max = '30s';
SELECT deliver.create_queue('q12_defaults');
SELECT retry_base, retry_max FROM deliver.list_queues() WHERE queue_name = 'q12_defaults';
RESET deliver.default_retry_base;
RESET deliver.default_retry_max;

--
-- the sweep: a lease that ran out on a queue with one attempt goes to the
-- dead letters without any receive (the worker may get there first)
--
SELECT deliver.create_queue('q12_sweep', visibility_timeout => '1 ms', max_attempts => 1, retry_base => '0');
SELECT deliver.send('q12_sweep', '{"n": "swept"}');
SELECT count(*) FROM deliver.receive('q12_sweep');
SELECT pg_sleep(0.05);
SELECT expired = dead_lettered AS expired_then_moved FROM deliver._sweep('q12_sweep', 10);
SELECT pg_temp.wait_until($$SELECT count(*) = 1 FROM deliver.dead_letters('q12_sweep')$$);
SELECT payload, reason, attempts FROM deliver.dead_letters('q12_sweep');
SELECT consumer_group, depth, in_flight, dead_letters FROM deliver.metrics('q12_sweep');
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver._sweep('q12_missing', 10)$$),
    ($$SELECT * FROM deliver._sweep('q12_sweep', 0)$$),
    ($$SELECT * FROM deliver._sweep('q12_sweep', NULL)$$)) AS t(cmd);

--
-- alerts
--
SELECT deliver.create_queue('q12_alert');
SELECT deliver.set_alert('q12_alert', 'depth', 2);
SELECT deliver.set_alert('q12_alert', 'dead_letters', 0);
SELECT deliver.set_alert('q12_alert', 'oldest_age', 3600);
SELECT deliver.set_alert('q12_alert', 'depth', 1);     -- a new threshold
SELECT queue_name, metric, threshold, firing, value FROM deliver.list_alerts('q12_alert');
SELECT deliver._check_alerts();                        -- nothing crossed
SELECT deliver.send_batch('q12_alert', array['{"a": 1}', '{"a": 2}']::jsonb[]);
SELECT deliver._check_alerts();                        -- depth 2 > 1: fires, once
SELECT deliver._check_alerts();
SELECT metric, firing, value FROM deliver.list_alerts('q12_alert') ORDER BY metric;
SELECT count(*) FROM deliver.receive('q12_alert', 10) r WHERE deliver.ack('q12_alert', r.delivery_id);
SELECT deliver._check_alerts();                        -- resolved
SELECT metric, firing, value FROM deliver.list_alerts('q12_alert') ORDER BY metric;
SELECT deliver.set_alert('q12_alert', 'oldest_age', NULL);   -- removed
SELECT metric FROM deliver.list_alerts('q12_alert');
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.set_alert('q12_alert', 'latency', 1)$$),
    ($$SELECT deliver.set_alert('q12_alert', NULL, 1)$$),
    ($$SELECT deliver.set_alert('q12_alert', 'depth', -1)$$),
    ($$SELECT deliver.set_alert('q12_alert', 'depth', 'NaN')$$),
    ($$SELECT deliver.set_alert('q12_missing', 'depth', 1)$$),
    ($$SELECT deliver.set_alert(NULL, 'depth', 1)$$)) AS t(cmd);
-- dropping the queue drops its alerts
SELECT deliver.drop_queue('q12_alert');
SELECT count(*) FROM deliver.alert a WHERE NOT EXISTS (SELECT 1 FROM deliver.queue q WHERE q.queue_id = a.queue_id);

--
-- dead-letter retention: maintain() deletes dead letters older than it
--
SELECT count(*) FROM deliver.dead_letters('q12_sweep');
SELECT queue, expired_dead_letters FROM deliver.maintain('q12_sweep');
SET deliver.dead_letter_retention = '1s';   -- a superuser may set it per session
SELECT pg_sleep(1.1);
SELECT queue, expired_dead_letters FROM deliver.maintain('q12_sweep');
SELECT count(*) FROM deliver.dead_letters('q12_sweep');
RESET deliver.dead_letter_retention;

--
-- the archive: finished messages are copied before their segment is
-- truncated, read with archived(), and kept for archive_retention
--
SELECT deliver.create_queue('q12_arch');
SELECT deliver.alter_queue('q12_arch', archive_retention => '1 day');
SELECT queue_name, archive_retention FROM deliver.list_queues() WHERE queue_name = 'q12_arch';
SELECT deliver.send_batch('q12_arch', array['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[], ordering_keys => array['a', 'b', NULL]);
SELECT count(*) FROM deliver.receive('q12_arch', 10) r WHERE deliver.ack('q12_arch', r.delivery_id);
SET deliver.rotation_interval = '1ms';
-- maintain rotates, closes and truncates; the empty receives move the cursor on
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        PERFORM deliver.maintain('q12_arch');
        PERFORM deliver.receive('q12_arch');
        EXIT WHEN (SELECT count(*) FROM deliver.archived('q12_arch')) = 3;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
RESET deliver.rotation_interval;
SELECT message_id, payload, ordering_key, archived_at > enqueued_at AS after_enqueue
  FROM deliver.archived('q12_arch');
SELECT message_id FROM deliver.archived('q12_arch', max_messages => 1, after_id => 1);
-- retention: archive_retention '0' turns the archive off; what it holds
-- then expires at once
SELECT deliver.alter_queue('q12_arch', archive_retention => '0');
SELECT count(*) FROM deliver.maintain('q12_arch');   -- (or the worker's run, whichever comes first)
SELECT count(*) FROM deliver.archived('q12_arch');
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.alter_queue('q12_arch', archive_retention => '-1 day')$$),
    ($$SELECT * FROM deliver.archived('q12_arch', 0)$$),
    ($$SELECT * FROM deliver.archived('q12_arch', NULL)$$),
    ($$SELECT * FROM deliver.archived('q12_missing')$$)) AS t(cmd);
SELECT deliver.drop_queue('q12_arch');

--
-- privileges: the worker's functions and the admin ones are not for PUBLIC
--
CREATE ROLE regress_deliver_w12;
SELECT f AS function, has_function_privilege('regress_deliver_w12', f, 'EXECUTE') AS can_execute
  FROM unnest(ARRAY[
    'deliver.alter_queue(text, interval, int, interval, interval, interval, interval)',
    'deliver.archived(text, int, bigint)',
    'deliver.set_alert(text, text, numeric)',
    'deliver._sweep(text, int)',
    'deliver._check_alerts()',
    'deliver.list_alerts(text)',
    'deliver.worker_status()']) AS f;
DROP ROLE regress_deliver_w12;

SELECT deliver.drop_queue(q) FROM unnest(ARRAY['q12', 'q12_defaults', 'q12_sweep']) AS q;
