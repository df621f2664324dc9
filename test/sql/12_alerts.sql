-- Alerts: set_alert, list_alerts, and the check the maintenance worker runs
-- (_check_alerts): a crossing of a threshold fires once (a WARNING and a
-- NOTIFY), going back resolves it. (test/deliver.conf sets
-- deliver.alert_interval to an hour, so the worker leaves the alerts below
-- to this file.)
\set VERBOSITY terse
\i test/helpers.psql

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

-- setting alerts and the check are not for PUBLIC; reading them is
CREATE ROLE regress_deliver_alerts;
SELECT f AS function, has_function_privilege('regress_deliver_alerts', f, 'EXECUTE') AS can_execute
  FROM unnest(ARRAY[
    'deliver.set_alert(text, text, numeric)',
    'deliver._check_alerts()',
    'deliver.list_alerts(text)']) AS f;
DROP ROLE regress_deliver_alerts;
