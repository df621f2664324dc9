-- No memory kept per call: a session calling every hot function thousands
-- of times (each in transactions of its own) does not grow its memory
-- contexts (caches are filled once, per-call memory goes with the call).
-- What is measured is the memory in use (total_bytes - free_bytes): a
-- context crossing a block boundary gets a whole new block (up to 8 MB for
-- the catalog cache), which says nothing about what the calls kept.
\ir ../helpers.psql
SELECT plan(7);

CREATE PROCEDURE pg_temp.churn(n int) LANGUAGE plpgsql AS $$
DECLARE
    d bigint;
    k int;
BEGIN
    FOR i IN 1 .. n LOOP
        PERFORM deliver.send('memory', '{"a": 1}', headers => '{"h": 1}', ordering_key => 'k');
        PERFORM deliver.send_batch('memory', ARRAY['{"b": 1}', '{"b": 2}']::jsonb[]);
        PERFORM deliver.send('memory_eo', '{"a": 1}', idempotency_key => 'k' || i || clock_timestamp());
        PERFORM deliver.send('memory', '{"later": 1}', delay => '1 hour');
        PERFORM deliver.send_batch('memory_prio', ARRAY['{"p": 1}', '{"p": 2}']::jsonb[], priority => i % 10);
        COMMIT;
        SELECT deliver.ack_batch('memory_prio', array_agg(delivery_id)) INTO k FROM deliver.receive('memory_prio', 2);
        SELECT deliver.ack_batch('memory', array_agg(delivery_id)) INTO k FROM deliver.receive('memory', 3);
        SELECT delivery_id INTO d FROM deliver.receive('memory_eo');
        PERFORM deliver.nack('memory_eo', d, error => 'again', retry_after => '0');
        COMMIT;
        SELECT delivery_id INTO d FROM deliver.receive('memory_eo');
        PERFORM deliver.extend_lease('memory_eo', d, '1 minute');
        PERFORM deliver.ack('memory_eo', d);
        PERFORM * FROM deliver.metrics('memory');
        PERFORM * FROM deliver.maintain('memory');
        PERFORM * FROM deliver._sweep('memory', 10);
        PERFORM * FROM deliver.dead_letters('memory');
        PERFORM * FROM deliver.worker_status();
        COMMIT;
    END LOOP;
END $$;
SELECT lives_ok($$SELECT deliver.create_queue('memory')$$, 'create queue memory');
SELECT lives_ok($$SELECT deliver.create_queue('memory_eo', guarantee => 'exactly_once')$$, 'create queue memory_eo');
SELECT lives_ok($$SELECT deliver.create_queue('memory_prio', priorities => true)$$, 'create queue memory_prio');
SET deliver.rotation_interval = '1ms';   -- maintain() rotates every round: every segment gets used
CALL pg_temp.churn(200);      -- fills the caches (plans per segment)
SELECT sum(total_bytes - free_bytes) AS before FROM pg_backend_memory_contexts \gset
CALL pg_temp.churn(1000);
SELECT cmp_ok(sum(total_bytes - free_bytes) - :before, '<', 262144::numeric,
              'the memory in use grew by less than 256 kB over 1000 rounds')
  FROM pg_backend_memory_contexts;
RESET deliver.rotation_interval;
SELECT ok(deliver.drop_queue('memory'), 'drop memory');
SELECT ok(deliver.drop_queue('memory_eo'), 'drop memory_eo');
SELECT ok(deliver.drop_queue('memory_prio'), 'drop memory_prio');
DROP PROCEDURE pg_temp.churn(int);
SELECT * FROM finish();
