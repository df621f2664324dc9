-- maintain(): segment rotation, reclaiming storage, expiring idempotency
-- keys; no message may be lost or repeated across a rotation.
\set VERBOSITY terse
\i test/helpers.psql
SET deliver.rotation_interval = '1h';
SELECT deliver.create_queue('q10', 'exactly_once', dedup_window => '1 second', retry_base => '0');
SELECT deliver.create_queue('q10_other');

-- a fresh queue: nothing to do
SELECT queue, truncated, rotated, expired_keys FROM deliver.maintain('q10');
-- NULL, the default, means every queue
SELECT queue, rotated FROM deliver.maintain() WHERE queue LIKE 'q10%' ORDER BY 1;
SELECT queue, rotated FROM deliver.maintain(NULL) WHERE queue LIKE 'q10%' ORDER BY 1;
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver.maintain('q10_missing')$$),
    ($$SELECT * FROM deliver.maintain('')$$)) AS t(cmd);

--
-- expired idempotency keys are removed; the key is new again
--
SELECT deliver.send('q10', '{"k": 1}', idempotency_key => 'k') AS k1 \gset
SELECT format('deliver.%I', format('q%s_dedup', queue_id)) AS dedup FROM deliver.queue WHERE queue_name = 'q10' \gset
SELECT count(*) AS keys FROM :dedup;
-- a sleep, not a wait: the dedup window (1 second) passes
SELECT pg_sleep(1.5);
SELECT count(*) AS maintained FROM deliver.maintain('q10');
SELECT count(*) AS keys FROM :dedup;
SELECT deliver.send('q10', '{"k": 2}', idempotency_key => 'k') <> :k1 AS new_id;
SELECT payload, deliver.ack('q10', delivery_id) AS acked FROM deliver.receive('q10', 10);

--
-- rotation keeps every message, once, in order; reclaiming never takes an
-- unfinished message
--
-- maintain in separate transactions, n times, a quarter second apart;
-- true as soon as the first segment (where the test's first messages
-- went) was truncated, by this or any other maintenance run
CREATE PROCEDURE pg_temp.maintain_loop(qname text, n int, INOUT reclaimed boolean DEFAULT false)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        PERFORM * FROM deliver.maintain(qname);
        COMMIT;
        IF EXISTS (SELECT 1 FROM deliver.segment s JOIN deliver.queue q USING (queue_id)
                    WHERE q.queue_name = qname AND s.seg = 0
                      AND s.state NOT IN ('closing', 'closed')) THEN
            reclaimed := true;
            RETURN;
        END IF;
        PERFORM pg_sleep(0.25);   -- (not wait_until: each run needs a transaction of its own)
    END LOOP;
END $$;
SELECT deliver.send('q10', '{"m": 1}', idempotency_key => 'm1') > 0 AS sent;
SELECT deliver.send('q10', '{"m": 2}', idempotency_key => 'm2') > 0 AS sent;
-- m1 stays leased (3 seconds) while the segments rotate under it
SELECT payload FROM deliver.receive('q10', visibility_timeout => '3 seconds');
SET deliver.rotation_interval = '1ms';
-- a sleep, not a wait: the active segment gets older than the rotation interval
SELECT pg_sleep(0.1);
SELECT queue, rotated FROM deliver.maintain('q10');
SELECT deliver.send('q10', '{"m": 3}', idempotency_key => 'm3') > 0 AS sent;
-- a key of the old segment still deduplicates
SELECT deliver.send('q10', '{"m": "2 again"}', idempotency_key => 'm2') > 0 AS sent;
-- a sleep, not a wait: the active segment gets older than the rotation interval
SELECT pg_sleep(0.1);
SELECT count(*) AS maintained FROM deliver.maintain('q10');
SELECT deliver.send('q10', '{"m": 4}', idempotency_key => 'm4') > 0 AS sent;
-- everything but m1 is finished
WITH r AS (SELECT * FROM deliver.receive('q10', 10))
SELECT payload, attempt, deliver.ack('q10', delivery_id) AS acked FROM r;
CALL pg_temp.maintain_loop('q10', 8);
-- m1's lease has run out by now: it comes back
-- a sleep, not a wait: m1's 3-second lease runs out
SELECT pg_sleep(1.5);
WITH r AS (SELECT * FROM deliver.receive('q10', 10))
SELECT payload, attempt, deliver.ack('q10', delivery_id) AS acked FROM r;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q10');
-- once everything is finished the old segments are reclaimed; nothing comes back
CALL pg_temp.maintain_loop('q10', 40);
SELECT message_id FROM deliver.receive('q10', 10);
-- and the queue goes on
SELECT deliver.send('q10', '{"m": 5}', idempotency_key => 'm5') > 0 AS sent;
SELECT count(*) AS maintained FROM deliver.maintain('q10');
SELECT deliver.send('q10', '{"m": 6}', idempotency_key => 'm6') > 0 AS sent;
WITH r AS (SELECT * FROM deliver.receive('q10', 10))
SELECT payload, attempt, deliver.ack('q10', delivery_id) AS acked FROM r;
SELECT consumer_group, depth, in_flight, delayed, dead_letters FROM deliver.metrics('q10');
-- the other queue was not touched
SELECT deliver.send('q10_other', '{"other": true}') AS other_id;
SELECT message_id, payload FROM deliver.receive('q10_other');
RESET deliver.rotation_interval;

SELECT deliver.drop_queue('q10');
SELECT deliver.drop_queue('q10_other');
