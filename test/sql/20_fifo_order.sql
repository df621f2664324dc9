-- FIFO keys with more than one message out (keys in turn), with and
-- without priorities, under a random mix of receives, acks and nacks
-- (retried at once): a key never has more than its limit out, each key's
-- messages are first handed out in their order (one sending transaction:
-- message id order), and every message is acked once.  The run is random
-- (setseed) but only its invariants are printed.
\set VERBOSITY terse

SELECT deliver.create_queue('q20_turn', fifo => true, visibility_timeout => '1 hour',
                            max_attempts => 1000, retry_base => '0 s', retry_max => '0 s');
SELECT deliver.create_queue('q20_prio', fifo => true, priorities => true, visibility_timeout => '1 hour',
                            max_attempts => 1000, retry_base => '0 s', retry_max => '0 s');
SELECT deliver.set_fifo_key_limit(q, 3) FROM unnest(ARRAY['q20_turn', 'q20_prio']) q;
SELECT setseed(0.42);
-- 1,500 messages each: a tenth without a key, half of the rest of one hot
-- key, the others over 20 keys; priorities 0-9 at random
SELECT q, count(deliver.send(q, jsonb_build_object('i', i),
                             ordering_key => CASE WHEN random() < 0.1 THEN NULL
                                                  WHEN random() < 0.5 THEN 'hot'
                                                  ELSE 'k' || (random() * 20)::int END,
                             priority => CASE WHEN q = 'q20_prio' THEN (random() * 9)::int END))
  FROM unnest(ARRAY['q20_turn', 'q20_prio']) q, generate_series(1, 1500) i
 GROUP BY q ORDER BY q;

CREATE TABLE q20_out (queue text, delivery_id bigint PRIMARY KEY, message_id bigint, k text);
CREATE TABLE q20_first (queue text, message_id bigint, k text, seq serial);
CREATE TABLE q20_acked (queue text, message_id bigint);
-- (at most 40 out at once, so that small lease-slot shares do not fill up;
-- the loop ends when a receive, with nothing out before it, got nothing)
CREATE PROCEDURE q20_run(q text, lim int DEFAULT 3) LANGUAGE plpgsql AS $$
DECLARE
    r record;
    got int;
    idle boolean;
    rounds int := 0;
BEGIN
    LOOP
        rounds := rounds + 1;
        got := 0;
        idle := NOT EXISTS (SELECT FROM q20_out WHERE queue = q);
        IF (SELECT count(*) FROM q20_out WHERE queue = q) < 40 THEN
            FOR r IN SELECT * FROM deliver.receive(q, 1 + (random() * 7)::int) LOOP
                got := got + 1;
                INSERT INTO q20_out VALUES (q, r.delivery_id, r.message_id, r.ordering_key);
                IF r.attempt = 1 THEN
                    INSERT INTO q20_first (queue, message_id, k) VALUES (q, r.message_id, r.ordering_key);
                END IF;
            END LOOP;
        END IF;
        EXIT WHEN got = 0 AND idle;
        IF EXISTS (SELECT FROM q20_out WHERE queue = q AND k IS NOT NULL GROUP BY k HAVING count(*) > lim) THEN
            RAISE EXCEPTION '%: more than % messages of a key out (round %)', q, lim, rounds;
        END IF;
        -- finish a few of those out: a fifth nacked (retried at once), the rest acked
        FOR r IN SELECT * FROM q20_out WHERE queue = q ORDER BY random() LIMIT 1 + (random() * 6)::int LOOP
            IF random() < 0.2 THEN
                PERFORM deliver.nack(q, r.delivery_id, retry_after => '0 s');
            ELSE
                PERFORM deliver.ack(q, r.delivery_id);
                INSERT INTO q20_acked VALUES (q, r.message_id);
            END IF;
            DELETE FROM q20_out WHERE delivery_id = r.delivery_id;
        END LOOP;
        COMMIT;
        IF rounds > 20000 THEN
            RAISE EXCEPTION '%: still running after % rounds', q, rounds;
        END IF;
    END LOOP;
END $$;
CALL q20_run('q20_turn');
CALL q20_run('q20_prio');

-- each key's first deliveries in message id order
SELECT queue, count(*) FILTER (WHERE prev > message_id) AS out_of_order
  FROM (SELECT queue, message_id, lag(message_id) OVER (PARTITION BY queue, k ORDER BY seq) AS prev
          FROM q20_first WHERE k IS NOT NULL) x
 GROUP BY queue ORDER BY queue;
-- every message acked once, none left
SELECT queue, count(*) AS acked, count(DISTINCT message_id) AS distinct_ids
  FROM q20_acked GROUP BY queue ORDER BY queue;
SELECT queue_name, consumer_group, depth, in_flight FROM deliver.metrics()
 WHERE queue_name LIKE 'q20%' ORDER BY 1;

DROP PROCEDURE q20_run(text, int);
DROP TABLE q20_out, q20_first, q20_acked;
SELECT deliver.drop_queue(q) FROM unnest(ARRAY['q20_turn', 'q20_prio']) q;
