-- Topic routing: bind, unbind, list_bindings, test_routing, publish.
-- Patterns: "*" is one word, "#" zero or more; words are non-empty.
\set VERBOSITY terse
\i test/helpers.psql

SELECT deliver.create_queue('r13_a');
SELECT deliver.create_queue('r13_b');
SELECT deliver.create_queue('r13_c');

-- the matching table: each pattern against each key, one queue per pattern
CREATE TEMP TABLE pats (pattern text);
INSERT INTO pats VALUES ('a.b.c'), ('a.*.c'), ('a.#'), ('#'), ('a.#.c'), ('*'), ('*.*'),
                        ('#.c'), ('a.*'), ('a.#.b.#'), ('#.#'), ('*.#'), ('b');
SELECT deliver.create_queue('r13_p' || n) FROM generate_series(1, 13) n;
SELECT deliver.bind(p.pattern, 'r13_p' || row_number() OVER ()) FROM pats p;
SELECT k.key, coalesce(string_agg(r.pattern, ' ' ORDER BY r.pattern), '-') AS matched
  FROM (VALUES ('a.b.c'), ('a.x.c'), ('a'), ('a.b'), ('a.c'), ('a.x.y.c'), ('c'), (''),
               ('b'), ('a.b.b'), ('x.a.b'), ('a.b.x.b'), ('ab.c')) AS k(key)
  LEFT JOIN LATERAL deliver.test_routing(k.key) r ON true
 GROUP BY k.key ORDER BY k.key;
SELECT deliver.drop_queue('r13_p' || n) FROM generate_series(1, 13) n;
SELECT count(*) AS bindings_left FROM deliver.binding;   -- dropped with their queues

-- bind and unbind: true when something changed
SELECT deliver.bind('orders.*', 'r13_a');
SELECT deliver.bind('orders.*', 'r13_a');            -- there already
SELECT deliver.bind('orders.#', 'r13_b');
SELECT deliver.bind('orders.eu.*', 'r13_b');         -- a second pattern of r13_b
SELECT deliver.bind('logs.#', 'r13_c');
SELECT pattern, queue_name, created_at <= now() AS created FROM deliver.list_bindings();
SELECT pattern FROM deliver.list_bindings('r13_b');
SELECT deliver.unbind('logs.#', 'r13_c');
SELECT deliver.unbind('logs.#', 'r13_c');            -- there was none
SELECT * FROM deliver.test_routing('orders.eu.new');
SELECT * FROM deliver.test_routing('orders.eu');

-- publish: once to every matched queue, even when two patterns of it match
SELECT * FROM deliver.publish('orders.eu', '{"n": 1}', '{"h": "x"}', 'k1');
SELECT * FROM deliver.publish('orders.eu.new', '{"n": 2}');
SELECT * FROM deliver.publish('nothing.here', '{"n": 3}');           -- no queue: no row
SELECT payload, headers, ordering_key FROM deliver.receive('r13_a', 10) ORDER BY message_id;
SELECT payload, headers, ordering_key FROM deliver.receive('r13_b', 10) ORDER BY message_id;
SELECT count(*) FROM deliver.receive('r13_c', 10);

-- in the caller's transaction: a rollback sends nothing
BEGIN;
SELECT queue_name FROM deliver.publish('orders.us', '{"n": 4}');
ROLLBACK;
SELECT count(*) FROM deliver.receive('r13_a', 10);
SELECT count(*) FROM deliver.receive('r13_b', 10);
-- and in one transaction with other publishes
BEGIN;
SELECT queue_name FROM deliver.publish('orders.us', '{"n": 5}');
SELECT queue_name FROM deliver.publish('orders.eu.old', '{"n": 6}');
COMMIT;
SELECT payload FROM deliver.receive('r13_a', 10) ORDER BY message_id;
SELECT payload FROM deliver.receive('r13_b', 10) ORDER BY message_id;

-- a binding made in this transaction is used by the next publish in it,
-- and gone after a rollback
BEGIN;
SELECT deliver.bind('audit.#', 'r13_c');
SELECT queue_name FROM deliver.publish('audit.x', '{"n": 7}');
ROLLBACK;
SELECT * FROM deliver.test_routing('audit.x');
SELECT count(*) FROM deliver.receive('r13_c', 10);

-- bindings are not changed under two-phase commit (its COMMIT PREPARED
-- would not tell the other sessions)
BEGIN;
SELECT deliver.bind('prep.#', 'r13_c');
PREPARE TRANSACTION 'r13_prep';
SELECT count(*) FROM deliver.binding WHERE pattern = 'prep.#';
SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'r13_prep';
-- and a subtransaction rolled back takes its binding away at once
BEGIN;
SAVEPOINT s;
SELECT deliver.bind('sub.#', 'r13_c');
SELECT queue_name FROM deliver.test_routing('sub.x');
ROLLBACK TO SAVEPOINT s;
SELECT queue_name FROM deliver.test_routing('sub.x');
COMMIT;

-- delay and idempotency keys (per queue, as in send)
SELECT deliver.create_queue('r13_x', 'exactly_once');
SELECT deliver.bind('pay.#', 'r13_x');
SELECT deliver.bind('pay.*', 'r13_c');
CREATE TEMP TABLE first AS SELECT * FROM deliver.publish('pay.in', '{"n": 8}', idempotency_key => 'i1');
SELECT count(*) FROM deliver.publish('pay.in', '{"n": 8}', idempotency_key => 'i1') p
  JOIN first f USING (queue_name) WHERE p.message_id = f.message_id;   -- same ids: 2
SELECT payload FROM deliver.receive('r13_x', 10);
SELECT payload FROM deliver.receive('r13_c', 10);
SELECT queue_name FROM deliver.publish('pay.in', '{"n": 9}', idempotency_key => 'i2', delay => '1 hour');
SELECT count(*) FROM deliver.receive('r13_x', 10);
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    -- an exactly_once queue needs the key: nothing is sent to the other queue either
    ($$SELECT * FROM deliver.publish('pay.in', '{"n": 10}')$$)) AS t(cmd);
SELECT count(*) FROM deliver.receive('r13_c', 10);

-- mandatory: no queue bound is an error
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver.publish('nothing.here', '{}', mandatory => true)$$)) AS t(cmd);
SELECT queue_name FROM deliver.publish('orders.x', '{}', mandatory => true);
SELECT count(*) FROM deliver.receive('r13_a', 10);
SELECT count(*) FROM deliver.receive('r13_b', 10);

-- expires_at: every copy gets the deadline, taken as send takes it (NULL
-- or infinity: none; any time, also one in the past); each queue's
-- on_expire says what becomes of an expired copy
SELECT deliver.create_queue('r13_e');
SELECT deliver.create_queue('r13_d', on_expire => 'drop');
SELECT deliver.bind('exp.#', 'r13_e');
SELECT deliver.bind('exp.#', 'r13_d');
SELECT queue_name FROM deliver.publish('exp.past', '{"n": "past"}', expires_at => now() - interval '1 second')
 ORDER BY 1;
SELECT queue_name FROM deliver.publish('exp.future', '{"n": "future"}', expires_at => now() + interval '1 hour')
 ORDER BY 1;
SELECT queue_name FROM deliver.publish('exp.none', '{"n": "none"}', expires_at => NULL) ORDER BY 1;
SELECT queue_name FROM deliver.publish('exp.inf', '{"n": "infinity"}', NULL, NULL, NULL, NULL, false, 'infinity')
 ORDER BY 1;
-- the expired copies are never handed out nor shown
SELECT payload FROM deliver.peek('r13_e', 10) ORDER BY message_id;
SELECT payload FROM deliver.receive('r13_e', 10) ORDER BY message_id;
SELECT payload FROM deliver.receive('r13_d', 10) ORDER BY message_id;
-- r13_e's copy is a dead letter with reason expired; r13_d's is dropped
SELECT group_name, payload, attempts, reason FROM deliver.dead_letters('r13_e');
SELECT count(*) FROM deliver.dead_letters('r13_d');
-- a deadline that passes between the publish and the receive
CREATE TEMP TABLE soon AS SELECT clock_timestamp() + interval '200 milliseconds' AS t;
SELECT queue_name FROM deliver.publish('exp.soon', '{"n": "soon"}', expires_at => (SELECT t FROM soon))
 ORDER BY 1;
SELECT pg_temp.wait_until($$SELECT clock_timestamp() > (SELECT t FROM soon)$$) AS deadline_passed;
SELECT count(*) FROM deliver.receive('r13_e', 10);
SELECT count(*) FROM deliver.receive('r13_d', 10);
SELECT payload, reason FROM deliver.dead_letters('r13_e') ORDER BY message_id;
SELECT count(*) FROM deliver.dead_letters('r13_d');
-- with an idempotency key: a repeat returns the first ids, expired or not
CREATE TEMP TABLE exp_first AS
    SELECT * FROM deliver.publish('exp.key', '{"n": "keyed"}', idempotency_key => 'e1',
                                  expires_at => now() - interval '1 second');
SELECT count(*) FROM deliver.publish('exp.key', '{"n": "keyed"}', idempotency_key => 'e1') p
  JOIN exp_first f USING (queue_name) WHERE p.message_id = f.message_id;   -- same ids: 2
SELECT count(*) FROM deliver.receive('r13_e', 10);
SELECT payload, reason FROM deliver.dead_letters('r13_e') WHERE payload->>'n' = 'keyed';
SELECT deliver.drop_queue('r13_d');
SELECT deliver.drop_queue('r13_e');

-- bad input
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT deliver.bind('', 'r13_a')$$),
    ($$SELECT deliver.bind('a..b', 'r13_a')$$),
    ($$SELECT deliver.bind('.a', 'r13_a')$$),
    ($$SELECT deliver.bind('a.', 'r13_a')$$),
    ($$SELECT deliver.bind('a.b*', 'r13_a')$$),
    ($$SELECT deliver.bind('a.##', 'r13_a')$$),
    ($$SELECT deliver.bind(repeat('a', 256), 'r13_a')$$),
    ($$SELECT deliver.bind(NULL, 'r13_a')$$),
    ($$SELECT deliver.bind('a', NULL)$$),
    ($$SELECT deliver.bind('a', 'r13_missing')$$),
    ($$SELECT deliver.unbind('a..b', 'r13_a')$$),
    ($$SELECT deliver.unbind('a', 'r13_missing')$$),
    ($$SELECT deliver.unbind(NULL, 'r13_a')$$),
    ($$SELECT * FROM deliver.test_routing('a.*')$$),
    ($$SELECT * FROM deliver.test_routing('a.#')$$),
    ($$SELECT * FROM deliver.test_routing('a..b')$$),
    ($$SELECT * FROM deliver.test_routing(NULL)$$),
    ($$SELECT * FROM deliver.test_routing(repeat('a', 256))$$),
    ($$SELECT * FROM deliver.publish('a.*', '{}')$$),
    ($$SELECT * FROM deliver.publish(NULL, '{}')$$),
    ($$SELECT * FROM deliver.publish('orders.x', NULL)$$),
    ($$SELECT * FROM deliver.publish('orders.x', '{}', '[1]')$$),
    ($$SELECT * FROM deliver.publish('orders.x', '{}', delay => '-1 s')$$),
    ($$SELECT * FROM deliver.publish('orders.x', '{}', mandatory => NULL)$$),
    ($$SELECT * FROM deliver.publish('orders.x', '{}', ordering_key => repeat('k', 600))$$),
    ($$SELECT * FROM deliver.publish('orders.x', '{}', expires_at => 'never')$$),
    ($$SELECT * FROM deliver.publish('orders.x', '{}', expires_at => '294277-01-01')$$),
    ($$SELECT * FROM deliver.publish('orders.x', NULL, expires_at => now())$$),
    ($$SELECT * FROM deliver.publish('orders.x', '{}', '[1]', expires_at => now())$$)) AS t(cmd);
SELECT deliver.bind(repeat('a', 255), 'r13_a');       -- 255 bytes is the limit
SELECT count(*) FROM deliver.test_routing(repeat('a', 255));
SELECT count(*) FROM deliver.receive('r13_a', 10);    -- nothing sent by the errors
SELECT count(*) FROM deliver.receive('r13_b', 10);

-- rights: bind and unbind are admin only; publish needs send on every
-- matched queue, or nothing is sent
CREATE ROLE regress_deliver_router;
SELECT f AS function, has_function_privilege('regress_deliver_router', f, 'EXECUTE') AS can_execute
  FROM unnest(ARRAY[
    'deliver.bind(text, text)',
    'deliver.unbind(text, text)',
    'deliver.list_bindings(text)',
    'deliver.test_routing(text)',
    'deliver.publish(text, jsonb, jsonb, text, text, interval, boolean, timestamptz, int)']) AS f;
SELECT deliver.grant_queue('r13_a', 'regress_deliver_router', 'send');
SET ROLE regress_deliver_router;
SELECT cmd, pg_temp.try(cmd) FROM (VALUES
    ($$SELECT * FROM deliver.publish('orders.eu', '{"n": 11}')$$),     -- r13_a and r13_b
    ($$SELECT * FROM deliver.publish('orders.eu', '{"n": 11}', expires_at => now() + interval '1 hour')$$),
    ($$SELECT deliver.bind('x', 'r13_a')$$),
    ($$SELECT deliver.unbind('orders.*', 'r13_a')$$),
    ($$INSERT INTO deliver.binding (pattern, queue_id) SELECT 'y', queue_id FROM deliver.queue LIMIT 1$$)) AS t(cmd);
SELECT queue_name FROM deliver.test_routing('orders.eu');
RESET ROLE;
SELECT count(*) FROM deliver.receive('r13_a', 10);   -- nothing
SELECT count(*) FROM deliver.receive('r13_b', 10);   -- nothing
SELECT deliver.grant_queue('r13_b', 'regress_deliver_router', 'send');
SET ROLE regress_deliver_router;
SELECT queue_name FROM deliver.publish('orders.eu', '{"n": 12}');
SELECT queue_name FROM deliver.publish('orders.eu', '{"n": 13}', expires_at => now() + interval '1 hour');
RESET ROLE;
SELECT payload FROM deliver.receive('r13_a', 10) ORDER BY message_id;
SELECT payload FROM deliver.receive('r13_b', 10) ORDER BY message_id;
SELECT deliver.revoke_queue('r13_a', 'regress_deliver_router', 'send');
SELECT deliver.revoke_queue('r13_b', 'regress_deliver_router', 'send');
DROP ROLE regress_deliver_router;

-- drop_queue removes the queue's bindings
SELECT deliver.unbind(repeat('a', 255), 'r13_a');
SELECT deliver.drop_queue('r13_b');
SELECT pattern, queue_name FROM deliver.list_bindings();
SELECT queue_name, pattern FROM deliver.test_routing('orders.eu');
SELECT deliver.drop_queue('r13_a');
SELECT deliver.drop_queue('r13_c');
SELECT deliver.drop_queue('r13_x');
SELECT count(*) FROM deliver.binding;
