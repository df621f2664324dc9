-- maintain() on a queue nobody sends to: its active segment is not switched
-- away from, so no segment is truncated again and again (each TRUNCATE
-- gives the tables a new relfilenode and their pg_class rows a new version,
-- which a transaction holding xmin keeps from being vacuumed).  A message,
-- or more than a page of finish records, makes it rotate again.
\set VERBOSITY terse
\i test/helpers.psql
SET deliver.rotation_interval = '1ms';
SELECT deliver.create_queue('q17');
SELECT queue_id AS qid FROM deliver.queue WHERE queue_name = 'q17' \gset

-- n runs of maintain, each in a transaction of its own, each followed by a
-- receive (a consumer polling the empty queue moves its group's restart
-- point, which lets closed segments be reclaimed); the number of runs that
-- rotated (the maintenance worker may rotate too: only counted where
-- nothing may rotate).  Stops early once segment stop_seg is in one of the
-- states stop (-1: never).
CREATE PROCEDURE pg_temp.poll(qname text, n int, stop_seg int, stop text[] DEFAULT '{empty}',
                              INOUT rotations int DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    r boolean;
BEGIN
    FOR i IN 1 .. n LOOP
        SELECT rotated INTO r FROM deliver.maintain(qname);
        IF r THEN
            rotations := rotations + 1;
        END IF;
        COMMIT;
        PERFORM * FROM deliver.receive(qname, 10);
        COMMIT;
        IF EXISTS (SELECT 1 FROM deliver.segment s JOIN deliver.queue q USING (queue_id)
                    WHERE q.queue_name = qname AND s.seg = stop_seg AND s.state = ANY (stop)) THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(0.01);   -- (a sleep, not a wait: the rotation interval, 1 ms, passes)
    END LOOP;
END $$;

-- the relfilenodes and pg_class row versions of the queue's segments, their
-- indexes, done tables and TOAST tables
CREATE FUNCTION pg_temp.storage(qid int) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(c.relname || ':' || c.relfilenode || ':' || c.xmin
                      || ':' || coalesce(t.relfilenode || ':' || t.xmin, '-'), ' ' ORDER BY c.relname)
      FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
     WHERE c.relnamespace = 'deliver'::regnamespace
       AND c.relname ~ ('^q' || qid || '_(s[0-9]+(_pos)?|done[0-9]+)$')
$$;

-- a fresh queue, empty: nothing rotates
CALL pg_temp.poll('q17', 5, -1);
SELECT seg, state FROM deliver.segment WHERE queue_id = :qid ORDER BY seg;

-- one message: its segment rotates away and, once finished, is reclaimed
SELECT deliver.send('q17', '{"n": 1}') > 0 AS sent;
SELECT payload, deliver.ack('q17', delivery_id) AS acked FROM deliver.receive('q17');
CALL pg_temp.poll('q17', 200, 0) \g /dev/null
SELECT seg, state FROM deliver.segment WHERE queue_id = :qid ORDER BY seg;

-- from then on the queue is idle and polled: no rotation, no truncation,
-- no new pg_class row
SELECT pg_temp.storage(:qid) AS before \gset
CALL pg_temp.poll('q17', 20, -1);
SELECT pg_temp.storage(:qid) = :'before' AS storage_untouched;
SELECT seg, state FROM deliver.segment WHERE queue_id = :qid ORDER BY seg;
-- and a run over it writes nothing, not even a row lock: its transaction
-- gets no id (a worker's run over many quiet queues costs little)
BEGIN;
SELECT truncated, rotated, expired_keys, expired_dead_letters, archived, expired_archive
  FROM deliver.maintain('q17');
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;

-- a message makes the active segment rotate again (and be reclaimed)
SELECT deliver.send('q17', '{"n": 2}') > 0 AS sent;
SELECT payload, deliver.ack('q17', delivery_id) AS acked FROM deliver.receive('q17');
CALL pg_temp.poll('q17', 200, 1) \g /dev/null
SELECT seg, state FROM deliver.segment WHERE queue_id = :qid ORDER BY seg;

-- and so do finish records without a message: messages received before
-- a rotation, acked one by one after it, fill more than a page of the new
-- active segment's done table
SELECT count(deliver.send('q17', jsonb_build_object('n', i))) AS sent FROM generate_series(1, 300) i;
CREATE TEMP TABLE leased AS SELECT delivery_id FROM deliver.receive('q17', 300, visibility_timeout => '5 min');
SELECT count(*) AS leased FROM leased;
CALL pg_temp.poll('q17', 200, 2, '{closing,closed,empty}') \g /dev/null
-- one transaction per ack: a done record each
DO $$
DECLARE
    d bigint;
BEGIN
    FOR d IN SELECT delivery_id FROM leased LOOP
        PERFORM deliver.ack('q17', d);
        COMMIT;
    END LOOP;
END $$;
-- segment 0, active since the messages were received, holds none of them
-- (its done table has the 300 finish records: how big it is is not shown,
-- the maintenance worker may have switched away from it already)
SELECT pg_relation_size(format('deliver.q%s_s0', :qid)::regclass) AS segment_0_bytes;
-- it is switched away from all the same, and reclaimed
CALL pg_temp.poll('q17', 200, 0) \g /dev/null
SELECT seg, state FROM deliver.segment WHERE queue_id = :qid ORDER BY seg;
SELECT consumer_group, depth, in_flight FROM deliver.metrics('q17');

RESET deliver.rotation_interval;
SELECT deliver.drop_queue('q17');
