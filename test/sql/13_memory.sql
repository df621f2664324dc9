-- No memory kept per call: a session calling every hot function thousands
-- of times (each in transactions of its own) does not grow its memory
-- contexts (caches are filled once, per-call memory goes with the call).
CREATE PROCEDURE pg_temp.churn(n int) LANGUAGE plpgsql AS $$
DECLARE
    d bigint;
    k int;
BEGIN
    FOR i IN 1 .. n LOOP
        PERFORM deliver.send('q13', '{"a": 1}', headers => '{"h": 1}', ordering_key => 'k');
        PERFORM deliver.send_batch('q13', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[]);
        PERFORM deliver.send('q13_eo', '{"a": 1}', idempotency_key => 'k' || i || clock_timestamp());
        PERFORM deliver.send('q13', '{"later": 1}', delay => '1 hour');
        COMMIT;
        SELECT deliver.ack_batch('q13', array_agg(delivery_id)) INTO k FROM deliver.receive('q13', 3);
        SELECT delivery_id INTO d FROM deliver.receive('q13_eo');
        PERFORM deliver.nack('q13_eo', d, error => 'again', retry_after => '0');
        COMMIT;
        SELECT delivery_id INTO d FROM deliver.receive('q13_eo');
        PERFORM deliver.extend_lease('q13_eo', d, '1 minute');
        PERFORM deliver.ack('q13_eo', d);
        PERFORM * FROM deliver.metrics('q13');
        PERFORM * FROM deliver.maintain('q13');
        PERFORM * FROM deliver._sweep('q13', 10);
        PERFORM * FROM deliver.dead_letters('q13');
        PERFORM * FROM deliver.worker_status();
        COMMIT;
    END LOOP;
END $$;
SELECT deliver.create_queue('q13');
SELECT deliver.create_queue('q13_eo', guarantee => 'exactly_once');
SET deliver.rotation_interval = '1ms';   -- maintain() rotates every round: every segment gets used
CALL pg_temp.churn(200);      -- fills the caches (plans per segment)
SELECT sum(total_bytes) AS before FROM pg_backend_memory_contexts \gset
CALL pg_temp.churn(1000);
SELECT sum(total_bytes) - :before < 262144 AS flat_after_1000_rounds FROM pg_backend_memory_contexts;
RESET deliver.rotation_interval;
SELECT deliver.drop_queue('q13');
SELECT deliver.drop_queue('q13_eo');
