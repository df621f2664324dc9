-- send and send_batch: payloads, headers, ordering keys, delays, limits,
-- and the transactional outbox (a message exists iff its transaction commits).
\set VERBOSITY terse
\i test/helpers.psql
SELECT deliver.create_queue('q02', 'at_most_once');

--
-- send: ids count up from 1 per queue; every argument comes back on receive
--
SELECT deliver.send('q02', '{"n": 1}');
SELECT deliver.send('q02', '{"n": 2}', '{"h": "x", "trace": [1, 2]}');
SELECT deliver.send('q02', '{"n": 3}', NULL, 'key-a');
SELECT deliver.send('q02', '{"n": 4}', headers => '{}', ordering_key => 'key-b',
                    idempotency_key => 'idem-4', delay => '0');
SELECT deliver.send(queue_name => 'q02', payload => '{"n": 5}', delay => NULL);
-- any JSON value is a payload, JSON null included
SELECT deliver.send('q02', '"a string"');
SELECT deliver.send('q02', '[1, "two", {"three": 3}]');
SELECT deliver.send('q02', '42');
SELECT deliver.send('q02', 'null');
SELECT deliver.send('q02', '{"unicode": "żółw 🐢", "esc": "a\"b\\c"}');
SELECT message_id, delivery_id, payload, headers, ordering_key, attempt,
       enqueued_at <= now() AS enqueued_before_now, lease_expires_at
  FROM deliver.receive('q02', 20);

--
-- headers must be a JSON object
--
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.send('q02', '{}', '[]')$$),
    ($$SELECT deliver.send('q02', '{}', '"text"')$$),
    ($$SELECT deliver.send('q02', '{}', '1')$$),
    ($$SELECT deliver.send('q02', '{}', 'null')$$),
    ($$SELECT deliver.send('q02', '{}', 'true')$$),
    ($$SELECT deliver.send('q02', '{}', '[{"a": 1}]')$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], ARRAY['{}', '[]']::jsonb[])$$),
    ($$SELECT deliver.send('q02', NULL)$$),
    ($$SELECT deliver.send('q02', '{}', ordering_key => repeat('k', 513))$$),
    ($$SELECT deliver.send('q02', '{}', idempotency_key => repeat('k', 513))$$),
    ($$SELECT deliver.send('q02', '{}', idempotency_key => '')$$),
    ($$SELECT deliver.send('q02', '{}', delay => '-1 second')$$),
    ($$SELECT deliver.send('q02', '{}', delay => '366 days')$$)) AS t(cmd);
-- keys read from a table count by their own length, also when stored
-- compressed (a run of one letter) or out of line (toasted)
CREATE TEMP TABLE long_keys AS
  SELECT repeat('k', 100000) AS compressed,
         (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i) AS toasted;
SELECT pg_column_size(compressed) < 10000 AS stored_compressed, length(toasted) FROM long_keys;
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.send('q02', '{}', ordering_key => compressed) FROM long_keys$$),
    ($$SELECT deliver.send('q02', '{}', idempotency_key => compressed) FROM long_keys$$),
    ($$SELECT deliver.send('q02', '{}', ordering_key => toasted) FROM long_keys$$),
    ($$SELECT deliver.send('q02', '{}', idempotency_key => toasted) FROM long_keys$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}']::jsonb[], NULL, ARRAY[toasted]) FROM long_keys$$)) AS t(cmd);
-- keys up to 512 bytes are fine
SELECT deliver.send('q02', '{"n": "long keys"}', ordering_key => repeat('k', 512),
                    idempotency_key => repeat('i', 512));
SELECT message_id, length(ordering_key) FROM deliver.receive('q02');
-- nothing was stored by the failed calls
SELECT message_id FROM deliver.receive('q02', 100);

--
-- payload size limit: deliver.max_payload_size counts payload plus headers
--
SHOW deliver.max_payload_size;
SET deliver.max_payload_size = 100;
SELECT deliver.send('q02', jsonb_build_object('s', repeat('x', 50)));
SELECT pg_temp.try($$SELECT deliver.send('q02', jsonb_build_object('s', repeat('x', 200)))$$);
-- the headers count too
SELECT pg_temp.try($$SELECT deliver.send('q02', jsonb_build_object('s', repeat('x', 50)),
                                         jsonb_build_object('h', repeat('y', 50)))$$);
SELECT pg_temp.try($$SELECT deliver.send_batch('q02', ARRAY[jsonb_build_object('s', 'small'),
                                                          jsonb_build_object('s', repeat('x', 200))])$$);
SET deliver.max_payload_size = '1kB';
SHOW deliver.max_payload_size;
SELECT pg_temp.try($$SELECT deliver.send('q02', jsonb_build_object('s', repeat('x', 2000)))$$);
RESET deliver.max_payload_size;
SELECT deliver.send('q02', jsonb_build_object('s', repeat('x', 2000))) AS big_ok;
SELECT message_id, length(payload->>'s') FROM deliver.receive('q02', 10);
-- a payload above 1 MB (the default limit) is refused
SELECT pg_temp.try($$SELECT deliver.send('q02', jsonb_build_object('s', repeat('x', 1100000)))$$);
SELECT pg_temp.try($$SET deliver.max_payload_size = 0$$);

--
-- send_batch
--
SELECT deliver.send_batch('q02', ARRAY['{"b": 1}', '{"b": 2}', '{"b": 3}']::jsonb[]);
SELECT deliver.send_batch('q02', ARRAY['{"b": 4}', '{"b": 5}', '{"b": 6}']::jsonb[],
                          headers => ARRAY['{"x": 1}', NULL, '{}']::jsonb[],
                          ordering_keys => ARRAY[NULL, 'k1', 'k2'],
                          idempotency_keys => ARRAY['i1', NULL, 'i3'],
                          delay => '0');
SELECT deliver.send_batch('q02', ARRAY['{"b": 7}']::jsonb[]);
SELECT message_id, payload, headers, ordering_key FROM deliver.receive('q02', 10);
-- lengths must match the payloads
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], ARRAY['{}']::jsonb[])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], ordering_keys => ARRAY['a', 'b', 'c'])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], idempotency_keys => ARRAY['a'])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], ordering_keys => '{}'::text[])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY[['{}', '{}'], ['{}', '{}']]::jsonb[])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], ordering_keys => ARRAY[['a', 'b']])$$),
    ($$SELECT deliver.send_batch('q02', '{}'::jsonb[])$$),
    ($$SELECT deliver.send_batch('q02', NULL)$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', NULL]::jsonb[])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], ordering_keys => ARRAY['a', repeat('k', 600)])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}', '{}']::jsonb[], idempotency_keys => ARRAY['a', ''])$$),
    ($$SELECT deliver.send_batch('q02', ARRAY['{}']::jsonb[], delay => '-1 day')$$)) AS t(cmd);
-- a batch larger than deliver.max_batch_size
SET deliver.max_batch_size = 3;
SELECT pg_temp.try($$SELECT deliver.send_batch('q02', ARRAY['1', '2', '3', '4']::jsonb[])$$);
SELECT deliver.send_batch('q02', ARRAY['{"b": 8}', '{"b": 9}', '{"b": 10}']::jsonb[]);
RESET deliver.max_batch_size;
-- a batch is all or nothing: nothing of the failed batches was stored
SELECT message_id, payload FROM deliver.receive('q02', 10);
-- a batch keeps its order
WITH s AS (SELECT deliver.send_batch('q02', array_agg(jsonb_build_object('i', i) ORDER BY i)) AS ids
             FROM generate_series(1, 100) AS i)
SELECT array_length(ids, 1) AS sent, ids[1] AS first_id, ids[100] AS last_id FROM s;
WITH r AS (SELECT row_number() OVER () AS pos, message_id, (payload->>'i')::int AS i
             FROM deliver.receive('q02', 1000))
SELECT count(*) AS received, min(message_id), max(message_id),
       count(*) FILTER (WHERE i = (pos - 1) % 100 + 1) AS in_order FROM r;

--
-- transactional outbox: a message exists if and only if its transaction commits
--
BEGIN;
SELECT deliver.send('q02', '{"outbox": "rolled back"}');
SELECT deliver.send_batch('q02', ARRAY['{"outbox": "rolled back too"}']::jsonb[]);
-- not visible before commit, not even to its own transaction's receive
SELECT message_id FROM deliver.receive('q02');
ROLLBACK;
SELECT message_id FROM deliver.receive('q02');
BEGIN;
SELECT deliver.send('q02', '{"outbox": "committed"}');
SAVEPOINT s1;
SELECT deliver.send('q02', '{"outbox": "rolled back to savepoint"}');
ROLLBACK TO SAVEPOINT s1;
SELECT deliver.send('q02', '{"outbox": "committed after savepoint"}');
COMMIT;
SELECT message_id, payload FROM deliver.receive('q02', 10);
-- a failed statement in the sending transaction takes its messages along
BEGIN;
SELECT deliver.send('q02', '{"outbox": "lost with the transaction"}');
SELECT 1 / 0;
COMMIT;
SELECT message_id, payload FROM deliver.receive('q02', 10);

--
-- ids and payloads of an at-least-once queue, and delayed sends
--
SELECT deliver.create_queue('q02_alo');
SELECT deliver.send('q02_alo', '{"n": 1}', delay => '1 hour');
SELECT deliver.send_batch('q02_alo', ARRAY['{"n": 2}', '{"n": 3}']::jsonb[], delay => '1 hour');
SELECT deliver.send('q02_alo', '{"n": 4}');
SELECT message_id, payload, attempt, delivery_id IS NOT NULL AS leased
  FROM deliver.receive('q02_alo', 10);
SELECT consumer_group, depth, in_flight, delayed FROM deliver.metrics('q02_alo');

-- a large batch returns every id, in order (its id array outlives the call's SPI memory)
SET deliver.max_batch_size = 50000;
SELECT cardinality(ids) AS sent, ids[50000] - ids[1] AS last_minus_first,
       (SELECT bool_and(ids[i] = ids[1] + i - 1) FROM generate_series(1, 50000) i) AS consecutive
  FROM (SELECT deliver.send_batch('q02_alo', array_agg(jsonb_build_object('i', i))) AS ids
          FROM generate_series(1, 50000) i) s;
RESET deliver.max_batch_size;

-- a large payload is stored compressed with lz4 (the server has it), and
-- comes back whole
SELECT queue_id AS alo_id FROM deliver.queue WHERE queue_name = 'q02_alo' \gset
SELECT deliver.send('q02_alo', jsonb_build_object('big', repeat('lz4 ', 20000))) AS big_id \gset
\set s0 q :alo_id _s0
\set s1 q :alo_id _s1
\set s2 q :alo_id _s2
SELECT pg_column_compression(payload) AS compression, octet_length(payload::text) AS length
  FROM (SELECT * FROM deliver.:"s0" UNION ALL SELECT * FROM deliver.:"s1"
        UNION ALL SELECT * FROM deliver.:"s2") s
 WHERE message_id = :big_id;
SELECT regexp_replace(c.relname, '^q[0-9]+_', '') AS "table", a.attcompression
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'deliver'::regnamespace AND a.attname = 'payload'
   AND c.relname ~ ('^q' || :alo_id || '_(s0|dead|delayed|archive)$')
 ORDER BY c.relname;

SELECT deliver.drop_queue('q02');
SELECT deliver.drop_queue('q02_alo');
