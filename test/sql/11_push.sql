-- Push: the deliver output plugin through the SQL decoding functions, push
-- subscriptions, and reclamation waiting for push slots.
\set VERBOSITY terse
\i test/helpers.psql
-- a decoded line without the parts that change from run to run
CREATE FUNCTION pg_temp.stable(line text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(line, '"(enqueued_at|commit_time|commit_lsn)":"[^"]*"', '"\1":"-"', 'g')
$$;
-- the changes of slot s with the given options, consumed (get) or not (peek)
CREATE FUNCTION pg_temp.changes(s name, consume boolean, VARIADIC opts text[] DEFAULT '{}')
RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    IF consume THEN
        RETURN QUERY SELECT pg_temp.stable(data) FROM pg_logical_slot_get_changes(s, NULL, NULL, VARIADIC opts);
    ELSE
        RETURN QUERY SELECT pg_temp.stable(data) FROM pg_logical_slot_peek_changes(s, NULL, NULL, VARIADIC opts);
    END IF;
END $$;

SELECT deliver.create_queue('push_a');
SELECT deliver.create_queue('push_b', fifo => true);
SELECT 'created' FROM pg_create_logical_replication_slot('push_raw', 'deliver');
CREATE TABLE push_other (x int);

--
-- only committed messages of deliver's queues, in commit order
--
INSERT INTO push_other VALUES (1);
SELECT deliver.send('push_a', '{"n": 1}', '{"h": "x"}', 'key-1') AS a1 \gset
BEGIN;
SELECT deliver.send('push_b', '{"n": "rolled back"}') > 0 AS sent;
ROLLBACK;
-- a savepoint rolled back inside a committed transaction
BEGIN;
SELECT deliver.send('push_b', '{"n": 2}') > 0 AS sent;
SAVEPOINT sp;
SELECT deliver.send('push_b', '{"n": "rolled back to savepoint"}') > 0 AS sent;
ROLLBACK TO SAVEPOINT sp;
INSERT INTO push_other VALUES (2);
COMMIT;
-- interleaved: p1 sends first but commits last (prepared, committed later)
BEGIN;
SELECT deliver.send('push_a', '{"n": "p1 first sent, last committed"}') > 0 AS sent;
PREPARE TRANSACTION 'push_p1';
SELECT deliver.send_batch('push_a', ARRAY['{"n": 3}', '{"n": 4}']::jsonb[]) IS NOT NULL AS sent;
SELECT deliver.send('push_b', '{"n": 5}') > 0 AS sent;
COMMIT PREPARED 'push_p1';
SELECT * FROM pg_temp.changes('push_raw', false);
-- the commit LSN is the same for the messages of one transaction and grows
SELECT count(DISTINCT data::jsonb->>'commit_lsn') AS commits,
       bool_and((data::jsonb->>'commit_lsn')::pg_lsn > '0/0') AS lsns
  FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL);
SELECT (data::jsonb->>'message_id')::bigint = :a1 AS first_is_a1,
       data::jsonb->>'enqueued_at' ~ '^\d{4}-\d\d-\d\dT' AS iso_time
  FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL) LIMIT 1;

--
-- options: queues, include_commit, format
--
SELECT * FROM pg_temp.changes('push_raw', false, 'queues', 'push_b');
SELECT * FROM pg_temp.changes('push_raw', false, 'queues', 'push_b, push_a', 'include_commit', 'on');
SELECT count(*) AS none FROM pg_temp.changes('push_raw', false, 'queues', 'no_such_queue');
-- binary: 'M', commit lsn, commit time, message id, enqueued_at, queue ...
SELECT get_byte(data, 0)::"char" AS kind,
       ('x' || encode(substring(data FROM 18 FOR 8), 'hex'))::bit(64)::bigint AS message_id,
       convert_from(substring(data FROM 36 FOR get_byte(data, 33) * 256 + get_byte(data, 34)), 'UTF8') AS queue
  FROM pg_logical_slot_peek_binary_changes('push_raw', NULL, NULL, 'format', 'binary', 'queues', 'push_b');
SELECT get_byte(data, 0)::"char" AS kind, length(data) AS len
  FROM pg_logical_slot_peek_binary_changes('push_raw', NULL, NULL, 'format', 'binary',
                                           'queues', 'push_b', 'include_commit', 'true');
-- pack: the same records, those of a transaction in one message (the
-- commit record last), and with include_commit off too
SELECT p.n AS packed_messages, u.n AS messages, p.b = u.b AS same_bytes,
       p.last_is_commit, p2.b = u2.b AS same_without_commit
  FROM (SELECT count(*) AS n, sum(length(data)) AS b,
               bool_and(get_byte(data, length(data) - 21)::"char" = 'C') AS last_is_commit
          FROM pg_logical_slot_peek_binary_changes('push_raw', NULL, NULL, 'format', 'binary',
                                                   'include_commit', 'on', 'pack', 'on')) p,
       (SELECT count(*) AS n, sum(length(data)) AS b
          FROM pg_logical_slot_peek_binary_changes('push_raw', NULL, NULL, 'format', 'binary',
                                                   'include_commit', 'on')) u,
       (SELECT sum(length(data)) AS b
          FROM pg_logical_slot_peek_binary_changes('push_raw', NULL, NULL, 'format', 'binary',
                                                   'pack', 'on')) p2,
       (SELECT sum(length(data)) AS b
          FROM pg_logical_slot_peek_binary_changes('push_raw', NULL, NULL, 'format', 'binary')) u2;
-- errors
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL, 'colour', 'blue')$$),
    ($$SELECT * FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL, 'format', 'xml')$$),
    ($$SELECT * FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL, 'include_commit', 'maybe')$$),
    ($$SELECT * FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL, 'queues', ' , ')$$),
    ($$SELECT * FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL, 'queues', '')$$),
    ($$SELECT * FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL, 'format', 'binary')$$),
    ($$SELECT * FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL, 'pack', 'on')$$),
    ($$SELECT * FROM pg_logical_slot_peek_binary_changes('push_raw', NULL, NULL, 'format', 'binary', 'pack', 'sometimes')$$))
    AS t(cmd);
-- consumed changes are gone
SELECT count(*) AS consumed FROM pg_temp.changes('push_raw', true);
SELECT count(*) AS left FROM pg_temp.changes('push_raw', false);

--
-- a delayed message is pushed when it comes due (moved into a segment)
--
SELECT deliver.send('push_a', '{"n": "delayed"}', delay => '1 second') > 0 AS sent;
SELECT count(*) AS not_yet FROM pg_temp.changes('push_raw', false);
-- the maintenance worker moves it when it comes due
SELECT pg_temp.wait_until($$SELECT count(*) > 0 FROM pg_logical_slot_peek_changes('push_raw', NULL, NULL)$$) AS pushed;
SELECT * FROM pg_temp.changes('push_raw', true);

--
-- a copy stored for one consumer group (a redrive): consumer_group option
--
SELECT deliver.create_consumer_group('push_a', 'other');
SELECT deliver.send('push_a', '{"n": "for every group"}') > 0 AS sent;
SELECT count(*) AS consumed FROM pg_temp.changes('push_raw', true);
-- group other gives up on it (one attempt), and redrives its dead letter
SELECT deliver.alter_queue('push_a', max_attempts => 1);
SELECT deliver.nack('push_a', delivery_id, 'no', '0') AS nacked FROM deliver.receive('push_a', consumer_group => 'other');
SELECT count(*) AS received FROM deliver.receive('push_a', consumer_group => 'other');
SELECT message_id, group_name, reason FROM deliver.dead_letters('push_a');
SELECT deliver.redrive('push_a', consumer_group => 'other') AS redriven;
SELECT deliver.alter_queue('push_a', max_attempts => 5);
SELECT * FROM pg_temp.changes('push_raw', false);
SELECT * FROM pg_temp.changes('push_raw', false, 'consumer_group', 'other');
SELECT count(*) AS not_default FROM pg_temp.changes('push_raw', false, 'consumer_group', 'default');
SELECT count(*) AS consumed FROM pg_temp.changes('push_raw', true);

--
-- push subscriptions
--
SELECT deliver.create_push_subscription('push_a', 'push_sub_a') > '0/0' AS created;
SELECT deliver.create_push_subscription('push_b', 'push_sub_b', 'default') > '0/0' AS created;
SELECT subscription_name, queue_name, consumer_group, slot_options, active, confirmed_lsn > '0/0' AS has_lsn
  FROM deliver.list_push_subscriptions();
SELECT slot_name, plugin, slot_type FROM pg_replication_slots
 WHERE slot_name LIKE 'push_sub%' ORDER BY 1;
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.create_push_subscription('push_a', 'push_sub_a')$$),
    ($$SELECT deliver.create_push_subscription('push_a', 'push_raw')$$),
    ($$SELECT deliver.create_push_subscription('push_a', 'Bad-Name')$$),
    ($$SELECT deliver.create_push_subscription('push_a', NULL)$$),
    ($$SELECT deliver.create_push_subscription('push_missing', 'push_sub_x')$$),
    ($$SELECT deliver.create_push_subscription('push_a', 'push_sub_x', 'no_group')$$),
    ($$SELECT deliver.drop_push_subscription('push_sub_x')$$),
    ($$SELECT deliver.drop_queue('push_a')$$)) AS t(cmd);
-- a failed creation left no slot behind
SELECT count(*) AS no_slot FROM pg_replication_slots WHERE slot_name = 'push_sub_x';
-- the subscription streams with its options; metrics show the lag
SELECT deliver.send('push_a', '{"n": "to the subscription"}') > 0 AS sent;
SELECT deliver.send('push_b', '{"n": "not for push_sub_a"}') > 0 AS sent;
SELECT subscription_name, active, lag_bytes > 0 AS behind FROM deliver.push_metrics();
SELECT * FROM pg_temp.changes('push_sub_a', true, 'queues', 'push_a');
SELECT subscription_name, lag_bytes < 1000 AS caught_up FROM deliver.push_metrics()
 WHERE subscription_name = 'push_sub_a';

--
-- reclamation keeps a closed segment until every deliver slot confirmed
-- past it
--
CREATE PROCEDURE pg_temp.maintain_until(qname text, cond text, n int, INOUT reached boolean DEFAULT false)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        -- a message sent and acked moves the group's restart point on
        PERFORM deliver.send(qname, '{"tick": true}');
        COMMIT;
        PERFORM deliver.ack(qname, r.delivery_id) FROM deliver.receive(qname, 100) r;
        COMMIT;
        PERFORM * FROM deliver.maintain(qname);
        COMMIT;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM deliver.segment s JOIN deliver.queue q USING (queue_id)
                         WHERE q.queue_name = %L AND s.seg = 0 AND %s)', qname, cond) INTO reached;
        IF reached THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(0.2);   -- (not wait_until: each try needs transactions of its own)
    END LOOP;
END $$;
SELECT deliver.create_queue('push_c');
SELECT deliver.send('push_c', '{"n": "c1"}') > 0 AS sent;
SELECT payload, deliver.ack('push_c', delivery_id) AS acked FROM deliver.receive('push_c');
SET deliver.rotation_interval = '1ms';
-- a sleep, not a wait: the active segment must be older than the rotation interval
SELECT pg_sleep(0.1);
SELECT queue, rotated FROM deliver.maintain('push_c');
RESET deliver.rotation_interval;
-- segment 0 is finished for every group, but the slots have not read it
-- (_checkpoint_groups says when every group is done with it, the condition
-- maintain() checks before the slots'; test/pgtap/internals.sql tests it)
CALL pg_temp.maintain_until('push_c', $$s.state = 'closed' AND s.closed_lsn IS NOT NULL
    AND (deliver._checkpoint_groups(s.queue_id, ARRAY[s.closed_xmax]))[1]$$, 100);
-- a sleep, not a wait: however long it waits, the segment stays
SELECT pg_sleep(0.5);
CALL pg_temp.maintain_until('push_c', 's.state = ''empty''', 3);
-- once every deliver slot has read past it, it is truncated
SELECT count(*) > 0 AS read FROM pg_logical_slot_get_changes('push_sub_a', NULL, NULL);
SELECT count(*) >= 0 AS read FROM pg_logical_slot_get_changes('push_sub_b', NULL, NULL);
SELECT count(*) > 0 AS read FROM pg_logical_slot_get_changes('push_raw', NULL, NULL);
CALL pg_temp.maintain_until('push_c', 's.state = ''empty''', 50);

--
-- the plugin does not trust what it reads: a row written behind deliver's
-- back (by the superuser: nobody else can) with an ordering key longer than
-- the binary format's 16-bit length goes out cut to 65534 bytes, with a
-- warning, and the record stays consistent
--
SELECT format('q%s_s%s', s.queue_id, s.seg) AS seg_table
  FROM deliver.segment s JOIN deliver.queue q USING (queue_id)
 WHERE q.queue_name = 'push_b' AND s.state = 'active' \gset
SELECT count(*) AS drained FROM pg_logical_slot_get_changes('push_raw', NULL, NULL);
INSERT INTO deliver.:"seg_table" (txid, message_id, enqueued_at, ordering_key, payload)
VALUES (pg_current_xact_id(), 999999, now(), repeat('k', 70000), '{"forged": true}');
SET client_min_messages = error;
SELECT get_byte(data, 35 + 6) * 256 + get_byte(data, 36 + 6) AS key_length,
       length(data) = 35 + 6 + 2 + 65534 + 4 + 4 + length('{"forged": true}') AS consistent
  FROM pg_logical_slot_get_binary_changes('push_raw', NULL, NULL, 'format', 'binary', 'queues', 'push_b');
RESET client_min_messages;

--
-- clean up: no slot may stay behind (it would hold WAL and reclamation)
--
SELECT deliver.drop_push_subscription('push_sub_a');
SELECT deliver.drop_push_subscription('push_sub_b');
SELECT pg_drop_replication_slot('push_raw');
SELECT count(*) AS slots FROM pg_replication_slots WHERE database = current_database();
SELECT * FROM deliver.list_push_subscriptions();
SELECT deliver.drop_queue('push_a');
SELECT deliver.drop_queue('push_b');
SELECT deliver.drop_queue('push_c');
DROP TABLE push_other;

--
-- after a failover: the subscription's row came with the standby, its slot
-- did not (dropping the slot here does what a promotion does).  While its
-- slot is missing, and once restored until the slot confirms past its new
-- start, the queue's storage is kept; push_backlog returns what was
-- committed before that start.
--
CREATE PROCEDURE pg_temp.maintain_rounds(qname text, n int, INOUT seg0 text DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        PERFORM * FROM deliver.maintain(qname);
        COMMIT;
        SELECT s.state INTO seg0 FROM deliver.segment s JOIN deliver.queue q USING (queue_id)
         WHERE q.queue_name = qname AND s.seg = 0;
        EXIT WHEN seg0 = 'empty';
        PERFORM pg_sleep(0.05);   -- (each round needs transactions of its own)
    END LOOP;
END $$;
SELECT deliver.create_queue('push_d');
SELECT deliver.drop_consumer_group('push_d', 'default');   -- push only
SELECT deliver.create_push_subscription('push_d', 'push_sub_d') > '0/0' AS created;
SELECT deliver.send('push_d', '{"n": "d1, pushed"}') > 0 AS sent;
SELECT data::jsonb->'payload' AS pushed FROM pg_logical_slot_get_changes('push_sub_d', NULL, NULL);
SELECT clock_timestamp() AS after_d1 \gset
SET deliver.rotation_interval = '1ms';
-- a sleep, not a wait: the active segment must be older than the rotation interval
SELECT pg_sleep(0.1);
SELECT queue, rotated FROM deliver.maintain('push_d');
RESET deliver.rotation_interval;
-- the failover
SELECT pg_drop_replication_slot('push_sub_d');
SELECT deliver.send('push_d', '{"n": "d2, after the failover"}') > 0 AS sent;
SELECT pg_temp.try($$SELECT * FROM deliver.push_backlog('push_sub_d')$$);
-- segment 0 (d1, pushed) would be truncated now: it is kept
CALL pg_temp.maintain_rounds('push_d', 20);
SELECT deliver.restore_push_subscription('push_sub_d') > '0/0' AS restored;
SELECT subscription_name, active, confirmed_lsn IS NOT NULL AS has_lsn FROM deliver.list_push_subscriptions();
SELECT deliver.send('push_d', '{"n": "d3, after the restore"}') > 0 AS sent;
SELECT queue, payload, commit_time IS NOT NULL AS has_commit_time FROM deliver.push_backlog('push_sub_d');
SELECT payload FROM deliver.push_backlog('push_sub_d', since => :'after_d1');
-- until the slot confirms past its start, still kept
CALL pg_temp.maintain_rounds('push_d', 20);
SELECT data::jsonb->'payload' AS pushed FROM pg_logical_slot_get_changes('push_sub_d', NULL, NULL);
CALL pg_temp.maintain_rounds('push_d', 100);
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.restore_push_subscription('push_sub_d')$$),
    ($$SELECT deliver.restore_push_subscription('push_sub_x')$$),
    ($$SELECT deliver.restore_push_subscription(NULL)$$),
    ($$SELECT * FROM deliver.push_backlog('push_sub_x')$$),
    ($$SELECT * FROM deliver.push_backlog(NULL)$$)) AS t(cmd);
SELECT deliver.drop_push_subscription('push_sub_d');
SELECT deliver.drop_queue('push_d');
SELECT count(*) AS slots FROM pg_replication_slots WHERE database = current_database();

--
-- pack: a transaction larger than the plugin gathers (64 kB) goes out in
-- several messages of whole records, the commit record in the last
--
SELECT 'init' FROM pg_create_logical_replication_slot('push_pack', 'deliver');
SELECT deliver.create_queue('push_p');
SELECT count(*) AS sent FROM unnest(deliver.send_batch('push_p',
    (SELECT array_agg(jsonb_build_object('n', i, 'pad', repeat('x', 200))) FROM generate_series(1, 1000) i)));
SELECT count(*) > 1 AS several, sum(length(data)) = (SELECT sum(length(data))
           FROM pg_logical_slot_peek_binary_changes('push_pack', NULL, NULL, 'format', 'binary',
                                                    'include_commit', 'on')) AS same_bytes,
       bool_and(length(data) < 64 * 1024 + 400) AS bounded,
       count(*) FILTER (WHERE get_byte(data, length(data) - 21)::"char" = 'C') AS commits
  FROM pg_logical_slot_peek_binary_changes('push_pack', NULL, NULL, 'format', 'binary',
                                           'include_commit', 'on', 'pack', 'on');
SELECT pg_drop_replication_slot('push_pack');
SELECT deliver.drop_queue('push_p');
