-- alter_queue: a queue's settings changed after its creation (NULL keeps a
-- setting; leases already handed out keep their expiry), and the retry
-- settings new queues take when create_queue is not given them.
\ir ../helpers.psql
SELECT plan(17);

SELECT lives_ok($$SELECT deliver.create_queue('alter', visibility_timeout => '10 s', max_attempts => 3, retry_base => '0')$$,
                'create queue alter');
SELECT lives_ok($$SELECT deliver.alter_queue('alter', visibility_timeout => '2 minutes', max_attempts => 1)$$,
                'alter_queue: visibility_timeout and max_attempts');
SELECT lives_ok($$SELECT deliver.alter_queue('alter', retry_max => '1 minute')$$, 'alter_queue: retry_max');
SELECT results_eq($$SELECT queue_name, visibility_timeout, max_attempts, retry_base, retry_max, dedup_window
                      FROM deliver.list_queues() WHERE queue_name = 'alter'$$,
                  $$VALUES ('alter'::text, interval '2 minutes', 1, interval '0', interval '1 minute', interval '5 minutes')$$,
                  'alter_queue: NULL keeps a setting');
-- the new settings apply to the next receive (this session's cache too)
SELECT is(deliver.send('alter', '{"n": 1}'), 1::bigint, 'message 1');
SELECT ok(lease_expires_at - now() > interval '100 s', 'the next receive leases for the new two minutes')
  FROM deliver.receive('alter');
SELECT throws_ok(cmd, state, msg, cmd) FROM (VALUES
    ($$SELECT deliver.alter_queue(NULL)$$, '22004', 'queue name must not be NULL'),
    ($$SELECT deliver.alter_queue('alter_missing')$$, '42704', 'queue "alter_missing" does not exist'),
    ($$SELECT deliver.alter_queue('alter', max_attempts => 0)$$, '22023', 'max_attempts must be between 1 and 1000'),
    ($$SELECT deliver.alter_queue('alter', visibility_timeout => '-1 s')$$, '22023',
     format('visibility_timeout must be between %s and %s', interval '1 millisecond', interval '12 hours')),
    ($$SELECT deliver.alter_queue('alter', retry_base => '2 days')$$, '22023',
     format('retry_base must be between %s and %s', interval '0', interval '1 day')),
    ($$SELECT deliver.alter_queue('alter', dedup_window => '0')$$, '22023',
     format('dedup_window must be between %s and %s', interval '1 second', interval '7 days'))) AS t(cmd, state, msg);

-- retry defaults of new queues come from settings
SET deliver.default_retry_base = '250ms';
SET deliver.default_retry_max = '30s';
SELECT lives_ok($$SELECT deliver.create_queue('alter_defaults')$$, 'create queue alter_defaults');
SELECT results_eq($$SELECT retry_base, retry_max FROM deliver.list_queues() WHERE queue_name = 'alter_defaults'$$,
                  $$VALUES (interval '250 milliseconds', interval '30 seconds')$$,
                  'retry_base and retry_max from deliver.default_retry_base and deliver.default_retry_max');
RESET deliver.default_retry_base;
RESET deliver.default_retry_max;

-- alter_queue is an administration function: not for PUBLIC
CREATE ROLE regress_deliver_alter;
SELECT ok(NOT has_function_privilege('regress_deliver_alter',
                                     'deliver.alter_queue(text, interval, int, interval, interval, interval, interval, interval, text, bigint, text, text, boolean)',
                                     'EXECUTE'), 'alter_queue is not for PUBLIC');
DROP ROLE regress_deliver_alter;

SELECT ok(deliver.drop_queue(q), 'drop ' || q) FROM unnest(ARRAY['alter', 'alter_defaults']) AS q;
SELECT * FROM finish();
