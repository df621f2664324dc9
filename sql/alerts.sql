--
-- Alerts
--

-- Alert when a metric of a queue goes above a threshold: oldest_age (in
-- seconds: the longest any unfinished message has waited), depth (the
-- most messages waiting in one consumer group) or dead_letters (count).
-- threshold NULL removes the alert.  The maintenance worker checks every
-- deliver.alert_interval; at each crossing (up: firing, down: resolved)
-- it sends a NOTIFY on channel deliver_alerts (JSON payload) and logs it.
CREATE FUNCTION deliver.set_alert(queue_name text, metric text, threshold numeric)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue := deliver._queue(queue_name);
BEGIN
    IF metric IS NULL THEN
        RAISE EXCEPTION 'metric must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF metric NOT IN ('oldest_age', 'depth', 'dead_letters') THEN
        RAISE EXCEPTION 'invalid alert metric "%"', left(metric, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use oldest_age, depth or dead_letters.';
    END IF;
    IF threshold IS NULL THEN
        DELETE FROM deliver.alert a WHERE a.queue_id = q.queue_id AND a.metric = set_alert.metric;
        RETURN;
    END IF;
    IF threshold < 0 OR threshold = 'NaN' OR threshold = 'Infinity' THEN
        RAISE EXCEPTION 'threshold must be a non-negative finite number'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO deliver.alert AS a (queue_id, metric, threshold)
    VALUES (q.queue_id, set_alert.metric, set_alert.threshold)
    ON CONFLICT ON CONSTRAINT alert_pkey DO UPDATE SET threshold = excluded.threshold;
END $$;

CREATE FUNCTION deliver.list_alerts(queue_name text DEFAULT NULL)
RETURNS TABLE (queue_name text, metric text, threshold numeric, firing boolean,
               value numeric, changed_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT q.queue_name, a.metric, a.threshold, a.firing, a.value, a.changed_at
      FROM deliver.alert a JOIN deliver.queue q USING (queue_id)
     WHERE list_alerts.queue_name IS NULL OR q.queue_name = list_alerts.queue_name
     ORDER BY q.queue_name, a.metric
$$;

-- Check every alert; returns how many changed state.
CREATE FUNCTION deliver._check_alerts()
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q       record;
    a       record;
    m       record;
    v       numeric;
    fire    boolean;
    n       int := 0;
BEGIN
    FOR q IN SELECT x.queue_id, x.queue_name FROM deliver.queue x
              WHERE EXISTS (SELECT 1 FROM deliver.alert y WHERE y.queue_id = x.queue_id)
              ORDER BY x.queue_id LOOP
        SELECT coalesce(max(extract(epoch FROM mm.oldest_age)), 0) AS oldest_age,
               coalesce(max(mm.depth), 0) AS depth,
               coalesce(sum(mm.dead_letters), 0) AS dead_letters
          INTO m FROM deliver.metrics(q.queue_name) mm;
        FOR a IN SELECT * FROM deliver.alert y WHERE y.queue_id = q.queue_id
                  ORDER BY y.metric FOR UPDATE LOOP
            v := CASE a.metric WHEN 'oldest_age' THEN round(m.oldest_age, 3)
                               WHEN 'depth' THEN m.depth
                               ELSE m.dead_letters END;
            fire := v > a.threshold;
            CONTINUE WHEN fire = a.firing;
            UPDATE deliver.alert y SET firing = fire, value = v, changed_at = now()
             WHERE y.queue_id = a.queue_id AND y.metric = a.metric;
            PERFORM pg_notify('deliver_alerts', json_build_object(
                'queue', q.queue_name, 'metric', a.metric,
                'state', CASE WHEN fire THEN 'firing' ELSE 'resolved' END,
                'value', v, 'threshold', a.threshold)::text);
            IF fire THEN
                RAISE WARNING 'deliver alert: queue "%" % is % (threshold %)',
                    q.queue_name, a.metric, v, a.threshold;
            ELSE
                RAISE LOG 'deliver alert resolved: queue "%" % is % (threshold %)',
                    q.queue_name, a.metric, v, a.threshold;
            END IF;
            n := n + 1;
        END LOOP;
    END LOOP;
    RETURN n;
END $$;
