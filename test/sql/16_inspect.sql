-- nack(dead_letter => true), redrive(to_queue => ...), delete_message():
-- normal use, rollbacks, bad input and privileges.
\set VERBOSITY terse
\i test/helpers.psql
SELECT deliver.create_queue('q16', max_attempts => 5, retry_base => '0');
SELECT deliver.create_queue('q16_to');
SELECT deliver.create_queue('q16_fifo', fifo => true, retry_base => '0');

-- nack to the dead letters: at once, whatever attempts are left
SELECT deliver.send('q16', '{"n": 1}', '{"h": "x"}', 'k1');
SELECT delivery_id AS d FROM deliver.receive('q16') \gset
SELECT deliver.nack('q16', :d, 'bad payload', dead_letter => true);
SELECT message_id, group_name, payload, headers, ordering_key, attempts, reason, last_error
  FROM deliver.dead_letters('q16');
SELECT count(*) AS received FROM deliver.receive('q16');
-- the delivery ended: no ack, nack or extend of it
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q16', :d));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s, dead_letter => true)', 'q16', :d));
-- rolled back: the message is ready again at once, not dead
SELECT deliver.send('q16', '{"n": 2}');
SELECT delivery_id AS d FROM deliver.receive('q16') \gset
BEGIN;
SELECT deliver.nack('q16', :d, 'rolled back', dead_letter => true);
SELECT count(*) AS dead_inside FROM deliver.dead_letters('q16');
ROLLBACK;
SELECT count(*) AS dead FROM deliver.dead_letters('q16');
SELECT message_id, attempt, delivery_id AS d FROM deliver.receive('q16') \gset
SELECT :message_id AS redelivered, :attempt AS attempt;
-- dead_letter false is a plain nack; retry_after does not go with true
SELECT deliver.nack('q16', :d, 'again', '0', false);
SELECT message_id, attempt FROM deliver.receive('q16');
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s, NULL, %L, true)', 'q16', 1, '1 second'));
SELECT pg_temp.try(format('SELECT deliver.nack(%L, %s, dead_letter => true)', 'q16', 12345));
SELECT pg_temp.try($$SELECT deliver.nack('q16_nowhere', 1, dead_letter => true)$$);
SELECT deliver.purge_queue('q16');

-- redrive to another queue: payload, headers and ordering key kept, new ids
SELECT deliver.send_batch('q16', ARRAY['{"n": 3}', '{"n": 4}', '{"n": 5}']::jsonb[],
                          ARRAY['{"h": 3}', NULL, NULL]::jsonb[], ARRAY['k3', 'k4', NULL]);
SELECT count(*) FILTER (WHERE deliver.nack('q16', delivery_id, 'to dead', dead_letter => true)) AS nacked
  FROM deliver.receive('q16', 10);
SELECT array_agg(message_id ORDER BY message_id) AS dead FROM deliver.dead_letters('q16');
SELECT deliver.redrive('q16', NULL, NULL, to_queue => 'q16_to');
SELECT count(*) AS dead_left FROM deliver.dead_letters('q16');
SELECT payload, headers, ordering_key, attempt FROM deliver.receive('q16_to', 10) ORDER BY message_id;
SELECT count(*) AS back_in_source FROM deliver.receive('q16', 10);
-- by id and group; a rollback moves nothing
SELECT deliver.send('q16', '{"n": 6}');
SELECT deliver.nack('q16', delivery_id, 'x', dead_letter => true) FROM deliver.receive('q16');
BEGIN;
SELECT deliver.redrive('q16', ARRAY[4]::bigint[], 'default', 'q16_to');
ROLLBACK;
SELECT message_id FROM deliver.dead_letters('q16');
SELECT deliver.redrive('q16', ARRAY[999]::bigint[], 'default', 'q16_to');
-- errors
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.redrive('q16', NULL, NULL, 'q16')$$),
    ($$SELECT deliver.redrive('q16', NULL, NULL, 'q16_nowhere')$$),
    ($$SELECT deliver.redrive('q16', NULL, 'nobody', 'q16_to')$$),
    ($$SELECT deliver.redrive('q16_nowhere', NULL, NULL, 'q16_to')$$)) AS t(cmd);
SELECT message_id FROM deliver.dead_letters('q16');

-- delete_message
SELECT deliver.purge_queue('q16');
SELECT deliver.create_consumer_group('q16', 'second');
SELECT deliver.send_batch('q16', array_agg(jsonb_build_object('n', i))) FROM generate_series(1, 6) AS i;
-- not reached by the cursor yet: no group gets it
SELECT deliver.delete_message('q16', 8);
SELECT array_agg(message_id ORDER BY message_id) AS got FROM deliver.receive('q16', 2);
-- leased: the lease ends when the delete commits
SELECT message_id, delivery_id AS d FROM deliver.receive('q16', 1) \gset
SELECT :message_id AS leased, deliver.delete_message('q16', :message_id);
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q16', :d));
-- waiting for redelivery after a nack
SELECT message_id, delivery_id AS d FROM deliver.receive('q16', 1) \gset
SELECT deliver.nack('q16', :d, NULL, '0');
-- while its delete is under way, peek does not show it (a receive would
-- not hand it out); the delete rolled back, it is back
BEGIN;
SELECT deliver.delete_message('q16', :message_id);
SELECT count(*) AS peeked_during_delete FROM deliver.peek('q16', 10) WHERE message_id = :message_id;
ROLLBACK;
SELECT count(*) AS peeked_after_rollback FROM deliver.peek('q16', 10) WHERE message_id = :message_id;
SELECT :message_id AS nacked, deliver.delete_message('q16', :message_id);
SELECT array_agg(message_id ORDER BY message_id) AS got FROM deliver.receive('q16', 10);
-- the other group gets none of the deleted ones
SELECT array_agg(message_id ORDER BY message_id) AS second_got
  FROM deliver.receive('q16', 10, consumer_group => 'second');
-- deleted already, purged, or no such message: false
SELECT deliver.delete_message('q16', 8), deliver.delete_message('q16', 2),
       deliver.delete_message('q16', 999);
-- a rolled-back delete deletes nothing; a receive that met the message
-- meanwhile holds it for its visibility timeout
SELECT deliver.send('q16', '{"n": 7}') AS m7 \gset
BEGIN;
SELECT deliver.delete_message('q16', :m7);
SELECT count(*) AS received_inside FROM deliver.receive('q16', 10, visibility_timeout => '0.1 s');
ROLLBACK;
SELECT pg_temp.wait_until(format('SELECT count(*) = 1 FROM deliver.receive(%L, 10) WHERE message_id = %s',
                                 'q16', :m7)) AS default_got_it;
-- a leased message whose delete rolls back keeps its lease
SELECT message_id, delivery_id AS d FROM deliver.receive('q16', 1, consumer_group => 'second') \gset
SELECT :message_id = :m7 AS second_got_it;
BEGIN;
SELECT deliver.delete_message('q16', :message_id);
ROLLBACK;
SELECT deliver.ack('q16', :d);
-- a delayed message is deleted from the delayed table
SELECT deliver.send('q16', '{"n": 8}', delay => '1 hour') AS m8 \gset
SELECT deliver.delete_message('q16', :m8);
SELECT delayed FROM deliver.metrics('q16') WHERE consumer_group = 'default';
-- FIFO: a message held back behind its key, and its key's next one
SELECT deliver.send_batch('q16_fifo', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[],
                          NULL, ARRAY['k', 'k', 'k']);
SELECT message_id, delivery_id AS d FROM deliver.receive('q16_fifo', 10) \gset
SELECT deliver.delete_message('q16_fifo', 2);
SELECT deliver.ack('q16_fifo', :d);
SELECT array_agg(message_id) AS got FROM deliver.receive('q16_fifo', 10);

-- errors
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.delete_message('q16', NULL)$$),
    ($$SELECT deliver.delete_message('q16_nowhere', 1)$$),
    ($$SELECT deliver.delete_message(NULL, 1)$$)) AS t(cmd);

-- privileges: redrive and delete_message are not for PUBLIC; with EXECUTE
-- granted, redrive needs the right to send to to_queue, delete_message the
-- right to receive
CREATE ROLE regress_deliver_inspect;
SELECT deliver.send('q16', '{"n": 9}') AS m9 \gset
SELECT deliver.nack('q16', delivery_id, 'x', dead_letter => true)
  FROM deliver.receive('q16', 1, consumer_group => 'second');
SET ROLE regress_deliver_inspect;
SELECT pg_temp.try(format('SELECT deliver.delete_message(%L, %s)', 'q16', :m9));
SELECT pg_temp.try($$SELECT deliver.redrive('q16', NULL, NULL, 'q16_to')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION deliver.delete_message(text, bigint),
                          deliver.redrive(text, bigint[], text, text) TO regress_deliver_inspect;
SET ROLE regress_deliver_inspect;
SELECT pg_temp.try(format('SELECT deliver.delete_message(%L, %s)', 'q16', :m9));
SELECT pg_temp.try($$SELECT deliver.redrive('q16', NULL, NULL, 'q16_to')$$);
RESET ROLE;
SELECT deliver.grant_queue('q16', 'regress_deliver_inspect', 'receive');
SELECT deliver.grant_queue('q16_to', 'regress_deliver_inspect', 'send');
SET ROLE regress_deliver_inspect;
SELECT pg_temp.try(format('SELECT deliver.delete_message(%L, %s)', 'q16', :m9));
SELECT pg_temp.try($$SELECT deliver.redrive('q16', NULL, NULL, 'q16_to')$$);
RESET ROLE;
SELECT count(*) AS dead_left FROM deliver.dead_letters('q16');
SELECT payload FROM deliver.receive('q16_to', 10);
-- a role that may receive from a queue may nack to its dead letters
SELECT deliver.send('q16', '{"n": 10}');
SET ROLE regress_deliver_inspect;
SELECT deliver.nack('q16', delivery_id, 'mine', dead_letter => true) FROM deliver.receive('q16', 1);
RESET ROLE;
SELECT message_id, reason, last_error FROM deliver.dead_letters('q16', 'default');

-- reset_consumer_group: seek to earliest, latest, a message id, a time
SELECT deliver.create_queue('q16_seek', retry_base => '0');
SELECT deliver.create_consumer_group('q16_seek', 'other');
-- five transactions: a position is a sending transaction
SELECT deliver.send('q16_seek', '{"n": 1}');
SELECT deliver.send('q16_seek', '{"n": 2}');
SELECT deliver.send('q16_seek', '{"n": 3}');
SELECT deliver.send('q16_seek', '{"n": 4}');
SELECT deliver.send('q16_seek', '{"n": 5}');
SELECT count(deliver.ack('q16_seek', delivery_id)) AS acked FROM deliver.receive('q16_seek', 10);
SELECT deliver.reset_consumer_group('q16_seek', 'default', 'earliest');
CREATE TEMP TABLE r16 AS SELECT message_id, delivery_id, attempt FROM deliver.receive('q16_seek', 10);
SELECT array_agg(message_id ORDER BY message_id) AS replayed, max(attempt) AS attempt FROM r16;
-- the leases of the group end; latest: nothing stored is delivered again
SELECT min(delivery_id) AS d FROM r16 \gset
SELECT deliver.reset_consumer_group('q16_seek', 'default', 'latest');
SELECT pg_temp.try(format('SELECT deliver.ack(%L, %s)', 'q16_seek', :d));
SELECT count(*) AS after_latest FROM deliver.receive('q16_seek', 10);
SELECT clock_timestamp() AS t \gset
SELECT deliver.send_batch('q16_seek', ARRAY['{"n": 6}', '{"n": 7}']::jsonb[]);
SELECT array_agg(message_id ORDER BY message_id) AS new_ones FROM deliver.receive('q16_seek', 10);
-- a message id: its transaction and later ones
SELECT deliver.reset_consumer_group('q16_seek', 'default', '3');
SELECT array_agg(message_id ORDER BY message_id) AS from_3 FROM deliver.receive('q16_seek', 10);
-- a time: what was sent at or after it
SELECT deliver.reset_consumer_group('q16_seek', 'default', :'t');
SELECT array_agg(message_id ORDER BY message_id) AS from_t FROM deliver.receive('q16_seek', 10);
-- a deleted message stays deleted across a reset
SELECT deliver.delete_message('q16_seek', 4);
SELECT deliver.reset_consumer_group('q16_seek', 'default', 'earliest');
SELECT array_agg(message_id ORDER BY message_id) AS without_4 FROM deliver.receive('q16_seek', 10);
-- past every stored message: as latest
SELECT deliver.reset_consumer_group('q16_seek', 'default', '1000');
SELECT count(*) AS past_all FROM deliver.receive('q16_seek', 10);
-- a reset that rolls back changes nothing (its leases stay too)
SELECT deliver.send('q16_seek', '{"n": 8}') AS m8 \gset
SELECT delivery_id AS d FROM deliver.receive('q16_seek', 1) \gset
BEGIN;
SELECT deliver.reset_consumer_group('q16_seek', 'default', 'earliest');
ROLLBACK;
SELECT count(*) AS after_rollback FROM deliver.receive('q16_seek', 10);
SELECT deliver.ack('q16_seek', :d);
-- the other group is not moved
SELECT array_agg(message_id ORDER BY message_id) AS other_got
  FROM deliver.receive('q16_seek', 10, consumer_group => 'other');
-- errors
SELECT pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.reset_consumer_group('q16_seek', 'default', '0')$$),
    ($$SELECT deliver.reset_consumer_group('q16_seek', 'default', '2000-01-01 00:00 UTC')$$),
    ($$SELECT deliver.reset_consumer_group('q16_seek', 'default', 'yesterday-ish')$$),
    ($$SELECT deliver.reset_consumer_group('q16_seek', 'default', NULL)$$),
    ($$SELECT deliver.reset_consumer_group('q16_seek', NULL, 'latest')$$),
    ($$SELECT deliver.reset_consumer_group('q16_seek', 'nobody', 'latest')$$),
    ($$SELECT deliver.reset_consumer_group('q16_nowhere', 'default', 'latest')$$),
    ($$SELECT deliver.reset_consumer_group(NULL, 'default', 'latest')$$)) AS t(cmd);
SET ROLE regress_deliver_inspect;
SELECT pg_temp.try($$SELECT deliver.reset_consumer_group('q16_seek', 'default', 'latest')$$);
RESET ROLE;
SELECT deliver.drop_queue('q16_seek');

SELECT deliver.drop_queue('q16');
SELECT deliver.drop_queue('q16_to');
SELECT deliver.drop_queue('q16_fifo');
REVOKE EXECUTE ON FUNCTION deliver.delete_message(text, bigint),
                           deliver.redrive(text, bigint[], text, text) FROM regress_deliver_inspect;
DROP ROLE regress_deliver_inspect;
