-- The rows a send writes into a segment and an ack into a done table
-- (without the executor: insert.c), and the SQL INSERT they fall back to
-- when the table is no longer as create_queue made it (a trigger, a CHECK
-- constraint, another index): what was added is honoured then.
SET client_min_messages = warning;
SELECT deliver.create_queue('q02r');
SELECT queue_id AS qid FROM deliver.queue WHERE queue_name = 'q02r' \gset
\set s0 q :qid _s0
\set d0 q :qid _done0

-- every column of single and batch sends, in the sender's transaction
BEGIN;
SELECT deliver.send('q02r', '{"n": 1}', headers => '{"h": 1}', ordering_key => 'k1',
                    expires_at => '2100-01-01 00:00:00+00') AS id1 \gset
SELECT deliver.send_batch('q02r', ARRAY['{"n": 2}', '{"n": 3}']::jsonb[],
                          headers => ARRAY['{"h": 2}', NULL]::jsonb[],
                          ordering_keys => ARRAY[NULL, 'k3']) AS ids23 \gset
SELECT count(*) AS rows_of_this_transaction, bool_and(enqueued_at BETWEEN now() AND clock_timestamp()) AS enqueued_in_it
  FROM deliver.:"s0" WHERE txid = pg_current_xact_id();
COMMIT;
SELECT message_id - :id1 AS id, payload, headers, ordering_key, target_group, expires_at
  FROM deliver.:"s0" ORDER BY message_id;

-- the index has an entry for each row
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS by_index FROM deliver.:"s0" WHERE txid >= '0'::xid8;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- payloads read from a table: stored out of line (toasted) and compressed
-- inline; a rolled-back send leaves nothing
CREATE TABLE q02r_src (p jsonb);
ALTER TABLE q02r_src ALTER p SET STORAGE external;
INSERT INTO q02r_src VALUES (jsonb_build_object('big', repeat('x', 50000)));
SELECT deliver.send('q02r', p) IS NOT NULL AS sent_toasted FROM q02r_src;
SELECT deliver.send_batch('q02r', ARRAY[(SELECT p FROM q02r_src), '{"small": 1}']) IS NOT NULL AS sent_batch;
BEGIN;
SELECT deliver.send('q02r', '{"rolled": "back"}') IS NOT NULL AS sent;
ROLLBACK;
SELECT count(*) AS messages, count(*) FILTER (WHERE payload ? 'big') AS big,
       min(length(payload->>'big')) AS big_length, count(*) FILTER (WHERE payload ? 'rolled') AS rolled_back
  FROM deliver.:"s0";
SELECT count(*) AS received, count(*) FILTER (WHERE length(payload->>'big') = 50000) AS big_whole
  FROM deliver.receive('q02r', 100);

-- a trigger on the segment: the send runs an INSERT, which fires it
CREATE TABLE q02r_seen (message_id bigint);
CREATE FUNCTION q02r_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.q02r_seen VALUES (NEW.message_id);
    RETURN NEW;
END $$;
CREATE FUNCTION q02r_note_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.q02r_seen SELECT unnest(NEW.message_ids);
    RETURN NEW;
END $$;
CREATE TRIGGER note AFTER INSERT ON deliver.:"s0" FOR EACH ROW EXECUTE FUNCTION q02r_note();
SELECT deliver.send_batch('q02r', ARRAY['{"t": 1}', '{"t": 2}']::jsonb[]) AS trig_ids \gset
SELECT count(*) AS trigger_saw FROM q02r_seen WHERE message_id = ANY (:'trig_ids'::bigint[]);
DROP TRIGGER note ON deliver.:"s0";

-- a CHECK constraint is checked (NOT VALID: rows already there are larger)
ALTER TABLE deliver.:"s0" ADD CONSTRAINT small CHECK (octet_length(payload::text) < 1000) NOT VALID;
CREATE FUNCTION pg_temp.sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT pg_temp.sqlstate_of($$SELECT deliver.send('q02r', jsonb_build_object('big', repeat('y', 2000)))$$)
       AS send_over_the_check;
ALTER TABLE deliver.:"s0" DROP CONSTRAINT small;

-- another index gets its entries
CREATE INDEX q02r_by_key ON deliver.:"s0" (ordering_key);
SELECT deliver.send('q02r', '{"i": 1}', ordering_key => 'indexed') IS NOT NULL AS sent;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
CREATE FUNCTION pg_temp.plan_uses(sql text, index text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    l text;
BEGIN
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || sql LOOP
        IF l LIKE '%' || index || '%' THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;
SELECT pg_temp.plan_uses(format('SELECT message_id FROM deliver.%I WHERE ordering_key = %L', :'s0', 'indexed'),
                         'q02r_by_key') AS uses_the_other_index;
SELECT count(*) AS by_other_index FROM deliver.:"s0" WHERE ordering_key = 'indexed';
RESET enable_seqscan;
RESET enable_bitmapscan;
DROP INDEX deliver.q02r_by_key;

-- an ack's finish record, in the acking transaction
SELECT deliver.send('q02r', '{"ack": 1}') AS ack_id \gset
SELECT delivery_id AS ack_d FROM deliver.receive('q02r', 10) WHERE message_id = :ack_id \gset
BEGIN;
SELECT deliver.ack('q02r', :ack_d) AS acked;
SELECT kind, message_ids = ARRAY[:ack_id]::bigint[] AS its_id, done IS NOT NULL AS restart_point,
       group_id = (SELECT group_id FROM deliver.consumer_group g JOIN deliver.queue q USING (queue_id)
                    WHERE q.queue_name = 'q02r' AND g.group_name = 'default') AS its_group
  FROM deliver.:"d0" WHERE written_at = now();
COMMIT;

-- a trigger on the done table fires for the next one
CREATE TRIGGER note_done AFTER INSERT ON deliver.:"d0" FOR EACH ROW EXECUTE FUNCTION q02r_note_done();
SELECT deliver.send('q02r', '{"ack": 2}') AS ack_id \gset
SELECT delivery_id AS ack_d FROM deliver.receive('q02r', 10) WHERE message_id = :ack_id \gset
SELECT deliver.ack('q02r', :ack_d) AS acked;
SELECT count(*) AS done_trigger_saw FROM q02r_seen WHERE message_id = :ack_id;
DROP TRIGGER note_done ON deliver.:"d0";

-- and without them, the rows are written directly again and received
SELECT deliver.send('q02r', '{"after": true}') IS NOT NULL AS sent;
SELECT left(payload::text, 20) AS payload FROM deliver.receive('q02r', 100) ORDER BY message_id;

SELECT deliver.drop_queue('q02r');
DROP TABLE q02r_src, q02r_seen;
DROP FUNCTION q02r_note(), q02r_note_done();
