-- deliver's internal functions (the _-prefixed ones the SQL functions, the
-- maintenance worker and maintain() call), each called directly: what it
-- returns, what it changes, its errors, and who may call it.
\ir ../helpers.psql
SELECT plan(112);

-- the functions that change a queue's state behind the checks of the
-- public ones are not for PUBLIC; those that only read are
CREATE ROLE regress_deliver_internals;
SELECT is(has_function_privilege('regress_deliver_internals', f, 'EXECUTE'), public,
          f || CASE WHEN public THEN ' is for every role' ELSE ' is not for PUBLIC' END)
  FROM (VALUES
    ('deliver._catalog_changed(int, text, int)', false),
    ('deliver._checkpoint_groups(int, xid8[])', false),
    ('deliver._move_due(text)', false),
    ('deliver._sweep(text, int)', false),
    ('deliver._lock_queue(deliver.queue)', false),
    ('deliver._flow_group(deliver.queue, text)', false),
    ('deliver._latest_snapshot()', true),
    ('deliver._next_xid()', true),
    ('deliver._group_state(int)', true)) AS t(f, public);

--
-- _latest_snapshot(): the latest snapshot (not the transaction's), with
-- the caller's own transaction counted as running
--
CREATE EXTENSION dblink;   -- a second session, to commit a transaction meanwhile
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_current_snapshot() AS tx_snapshot \gset
SELECT ok(NOT pg_visible_in_snapshot(pg_current_xact_id(), deliver._latest_snapshot()),
          '_latest_snapshot: the caller''s own transaction counts as running');
SELECT x AS other_xid
  FROM dblink(format('host=%s port=%s dbname=%s', split_part(current_setting('unix_socket_directories'), ',', 1),
                     current_setting('port'), current_database()),
              'SELECT pg_current_xact_id()::text') AS t(x text) \gset
SELECT ok(pg_visible_in_snapshot(:'other_xid'::xid8, deliver._latest_snapshot()),
          '_latest_snapshot: a transaction that committed meanwhile is visible');
SELECT ok(NOT pg_visible_in_snapshot(:'other_xid'::xid8, pg_current_snapshot()),
          'while it is not in the transaction''s snapshot');
SELECT is(pg_current_snapshot()::text, :'tx_snapshot', 'which stays as it was');
COMMIT;
DROP EXTENSION dblink;

--
-- _next_xid(): the next transaction id to be assigned
--
SELECT cmp_ok(deliver._next_xid()::text::numeric, '>=', pg_snapshot_xmax(pg_current_snapshot())::text::numeric,
              '_next_xid: not below the xmax of a snapshot');
BEGIN;
SELECT pg_current_xact_id() AS my_xid \gset
SELECT cmp_ok(deliver._next_xid()::text::numeric, '>', :'my_xid'::numeric,
              '_next_xid: above every transaction id assigned');
COMMIT;

--
-- _queue(), _queue_tables(), _check_group(), _check_name(), _check_interval()
--
SELECT lives_ok($$SELECT deliver.create_queue('internals', fifo => true, retry_base => '0')$$, 'create queue internals');
SELECT queue_id AS qid FROM deliver.queue WHERE queue_name = 'internals' \gset
SELECT group_id AS gid FROM deliver.consumer_group WHERE queue_id = :qid AND group_name = 'default' \gset
SELECT is((deliver._queue('internals'::text)).queue_id, :qid, '_queue: the queue''s catalog row');
SELECT throws_ok($$SELECT deliver._queue(NULL::text)$$, '22004', 'queue name must not be NULL', '_queue(NULL)');
SELECT throws_ok($$SELECT deliver._queue('internals_missing'::text)$$, '42704', 'queue "internals_missing" does not exist',
                 '_queue of an unknown queue');
SELECT is(deliver._queue_tables(q),
          ARRAY(SELECT format('q%s_%s', :qid, t)
                  FROM unnest(ARRAY['s0', 's1', 's2', 'done0', 'done1', 'done2', 'dead', 'delayed', 'dedup', 'archive']) AS t),
          '_queue_tables: segments, done tables, dead letters, delayed messages, keys, archive')
  FROM deliver.queue q WHERE q.queue_name = 'internals';
SELECT is(count(*), 10::bigint, '_queue_tables: every one of them exists')
  FROM deliver.queue q, unnest(deliver._queue_tables(q)) AS t
 WHERE q.queue_name = 'internals' AND to_regclass(format('deliver.%I', t)) IS NOT NULL;
SELECT lives_ok($$SELECT deliver._check_group(deliver._queue('internals'::text), 'default')$$, '_check_group: a group of the queue');
SELECT lives_ok($$SELECT deliver._check_group(deliver._queue('internals'::text), NULL)$$, '_check_group: NULL is any group');
SELECT throws_ok($$SELECT deliver._check_group(deliver._queue('internals'::text), 'nobody')$$, '42704',
                 'consumer group "nobody" does not exist on queue "internals"', '_check_group of an unknown group');
SELECT lives_ok($$SELECT deliver._check_name('queue', 'a.b-c_9')$$, '_check_name: a valid name');
SELECT throws_ok($$SELECT deliver._check_name('queue', NULL)$$, '22004', 'queue name must not be NULL', '_check_name: NULL');
SELECT throws_ok($$SELECT deliver._check_name('consumer group', '.dot')$$, '42602', 'invalid consumer group name ".dot"',
                 '_check_name: a name starting with a dot');
SELECT throws_ok(format('SELECT deliver._check_name(%L, %L)', 'queue', repeat('x', 64)), '42602',
                 format('invalid queue name "%s"', repeat('x', 64)), '_check_name: 64 characters');
SELECT lives_ok($$SELECT deliver._check_interval('wait', '1 hour', '0', '1 hour')$$, '_check_interval: the bounds are allowed');
SELECT throws_ok($$SELECT deliver._check_interval('wait', NULL, '0', '1 hour')$$, '22004', 'wait must not be NULL',
                 '_check_interval: NULL');
SELECT throws_ok($$SELECT deliver._check_interval('wait', '1 hour 1 second', '0', '1 hour')$$, '22023',
                 format('wait must be between %s and %s', interval '0', interval '1 hour'), '_check_interval: above the range');

--
-- the acl helpers of grant_queue and revoke_queue
--
SELECT is(deliver._acl_privileges(p), letters, format('_acl_privileges(%L)', p))
  FROM (VALUES ('send', 'a'), ('receive', 'r'), ('all', 'ar')) AS t(p, letters);
SELECT throws_ok($$SELECT deliver._acl_privileges('write')$$, '22023', 'invalid privilege "write"', '_acl_privileges of another word');
SELECT throws_ok($$SELECT deliver._acl_privileges(NULL)$$, '22004', 'privilege must not be NULL', '_acl_privileges(NULL)');
SELECT is(deliver._role('regress_deliver_internals'), 'regress_deliver_internals'::regrole::oid, '_role: the role''s oid');
SELECT throws_ok($$SELECT deliver._role('regress_deliver_missing')$$, '42704', 'role "regress_deliver_missing" does not exist',
                 '_role of an unknown role');
SELECT throws_ok($$SELECT deliver._role(NULL)$$, '22004', 'role_name must not be NULL', '_role(NULL)');
SELECT is(deliver._acl_of(deliver._acl_set('{}', r, 'ar'), r), 'ar', '_acl_set then _acl_of: both letters')
  FROM deliver._role('regress_deliver_internals') AS r;
SELECT is(deliver._acl_of(deliver._acl_set(deliver._acl_set('{}', r, 'ar'), r, 'a'), r), 'a',
          '_acl_set replaces the role''s entry')
  FROM deliver._role('regress_deliver_internals') AS r;
SELECT is(deliver._acl_set(deliver._acl_set('{}', r, 'r'), r, ''), '{}'::aclitem[], '_acl_set with no letters removes it')
  FROM deliver._role('regress_deliver_internals') AS r;
SELECT is(deliver._acl_of('{}', r), '', '_acl_of a role without an entry')
  FROM deliver._role('regress_deliver_internals') AS r;

--
-- _group_state(group_id): the live state of a group (FIFO here: a key's
-- next message is held back while the one before it is leased)
--
SELECT ok(deliver.send('internals', '{"n": "a"}', ordering_key => 'k') = 1, 'message 1, key k');
SELECT ok(deliver.send('internals', '{"n": "b"}', ordering_key => 'k') = 2, 'message 2, key k');
SELECT ok(deliver.send('internals', '{"n": "c"}') = 3, 'message 3, no key');
SELECT results_eq(format('SELECT backlog, in_flight, ready, blocked, sent_total, acked_total, dead_total
                            FROM deliver._group_state(%s)', :gid),
                  $$VALUES (3::bigint, 0::bigint, 0::bigint, 0::bigint, 3::bigint, 0::bigint, 0::bigint)$$,
                  '_group_state: three messages not reached yet');
SELECT results_eq($$SELECT message_id FROM deliver.receive('internals', 10)$$, ARRAY[1, 3]::bigint[],
                  'a receive gets 1 and 3; 2 waits behind 1');
SELECT results_eq(format('SELECT backlog, in_flight, ready, blocked FROM deliver._group_state(%s)', :gid),
                  $$VALUES (0::bigint, 2::bigint, 0::bigint, 1::bigint)$$,
                  '_group_state: two in flight, one held back');
SELECT ok((SELECT oldest_enqueued_at FROM deliver._group_state(:gid)) <= now(), '_group_state: the oldest unfinished message''s time');
SELECT throws_ok($$SELECT * FROM deliver._group_state(-5)$$, '42704', 'consumer group -5 does not exist',
                 '_group_state of an unknown group');
SET ROLE regress_deliver_internals;
SELECT throws_ok(format('SELECT * FROM deliver._group_state(%s)', :gid), '42501',
                 'permission denied to read metrics of queue "internals"', '_group_state needs the right to read metrics');
RESET ROLE;

--
-- _catalog_changed(queue_id, action, group_id): backends see the catalog
-- anew; at commit, 'reset' makes the queue's groups start over from their
-- durable state
--
SELECT is_empty($$SELECT message_id, attempt FROM deliver.receive('internals', 10)$$,
                'nothing more to receive while 1 and 3 are leased');
SELECT lives_ok(format('SELECT deliver._catalog_changed(%s, %L)', :qid, 'reset'), '_catalog_changed: reset');
SELECT results_eq($$SELECT message_id, attempt FROM deliver.receive('internals', 10)$$,
                  $$VALUES (1::bigint, 1), (3::bigint, 1)$$,
                  'after a reset the group starts over from its durable state: 1 and 3 again, attempt 1');
SELECT lives_ok($$SELECT deliver.purge_queue('internals')$$, 'purge internals');
-- a session keeps the queue's settings until the catalog is said to have changed
SELECT lives_ok($$SELECT deliver.alter_queue('internals', visibility_timeout => '10 seconds')$$, 'a lease of 10 seconds');
SELECT ok(deliver.send('internals', '{"n": "lease"}') > 0, 'a message');
SELECT ok(lease_expires_at < now() + interval '11 seconds', 'leased for 10 seconds') FROM deliver.receive('internals');
UPDATE deliver.queue SET visibility_timeout = '2 minutes' WHERE queue_id = :qid;
SELECT ok(deliver.send('internals', '{"n": "lease"}') > 0, 'a message');
SELECT ok(lease_expires_at < now() + interval '11 seconds', 'a catalog change not announced: still the cached 10 seconds')
  FROM deliver.receive('internals');
SELECT lives_ok(format('SELECT deliver._catalog_changed(%s)', :qid), '_catalog_changed: none (the default)');
SELECT ok(deliver.send('internals', '{"n": "lease"}') > 0, 'a message');
SELECT ok(lease_expires_at > now() + interval '100 seconds', 'announced: the new 2 minutes')
  FROM deliver.receive('internals');
SELECT throws_ok(format('SELECT deliver._catalog_changed(%s, %L)', :qid, 'bogus'), 'XX000',
                 'deliver: unknown catalog action "bogus"', '_catalog_changed: an unknown action');
SELECT lives_ok($$SELECT deliver._catalog_changed(-1)$$, '_catalog_changed of a queue that does not exist is harmless');
SELECT lives_ok($$SELECT deliver.purge_queue('internals')$$, 'purge internals');

--
-- _lock_queue(q): the queue's row, then every table of it, in ACCESS
-- EXCLUSIVE mode (drop_queue and purge_queue)
--
BEGIN;
-- (called directly: lives_ok would run it in a subtransaction)
SELECT ok(true, '_lock_queue') FROM (SELECT deliver._lock_queue(q) FROM deliver.queue q WHERE q.queue_name = 'internals') AS l;
SELECT is(count(*), 10::bigint, '_lock_queue: every table of the queue locked ACCESS EXCLUSIVE')
  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
 WHERE l.pid = pg_backend_pid() AND l.mode = 'AccessExclusiveLock'
   AND c.relname = ANY ((SELECT deliver._queue_tables(q) FROM deliver.queue q WHERE q.queue_id = :qid)::name[]);
SELECT ok(xmax = pg_current_xact_id()::text::xid, '_lock_queue: the catalog row locked by this transaction')
  FROM deliver.queue WHERE queue_id = :qid;
ROLLBACK;

--
-- _checkpoint_groups(queue_id, closed_xmax[]): writes each group's restart
-- point, and says for each closed segment (all of whose writers are below
-- its closed_xmax) whether all its messages are finished for every group
--
SELECT format('deliver.q%s_done%s', :qid, seg) AS active_done
  FROM deliver.segment WHERE queue_id = :qid AND state = 'active' \gset
SELECT count(*) AS checkpoints FROM :active_done WHERE kind = 'p' \gset
SELECT ok(deliver.send('internals', '{"n": "unfinished"}') > 0, 'an unfinished message');
SELECT deliver._next_xid() AS x \gset
SELECT is(deliver._checkpoint_groups(:qid, ARRAY['3'::xid8, :'x'::xid8, NULL]), ARRAY[true, false, false],
          '_checkpoint_groups: finished below an old xid, not below one after an unfinished message; NULL is not');
SELECT cmp_ok((SELECT count(*) FROM :active_done WHERE kind = 'p'), '>', :checkpoints::bigint,
              '_checkpoint_groups: a restart point written into the active done table');
SELECT is(deliver._checkpoint_groups(:qid, '{}'), '{}'::boolean[], '_checkpoint_groups of no segment');
SELECT ok(deliver.ack('internals', delivery_id), 'the message acked') FROM deliver.receive('internals');
-- the group's restart point moves past it with the next receive and restart point
CREATE PROCEDURE pg_temp.checkpoint_until(qid int, x xid8, INOUT finished boolean DEFAULT false)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 50 LOOP
        PERFORM * FROM deliver.receive('internals');
        COMMIT;
        finished := (deliver._checkpoint_groups(qid, ARRAY[x]))[1];
        COMMIT;
        EXIT WHEN finished;
        PERFORM pg_sleep(0.1);   -- (wait_until cannot: each try needs transactions of its own)
    END LOOP;
END $$;
CALL pg_temp.checkpoint_until(:qid, :'x', NULL) \gset
SELECT ok(:'finished'::boolean, '_checkpoint_groups: finished once the message was acked');
SELECT throws_ok($$SELECT deliver._checkpoint_groups(-1, '{}')$$, '42704', 'queue -1 does not exist',
                 '_checkpoint_groups of an unknown queue');

--
-- redrive(queue) in C: the dead letters of every group in one call, each
-- back to the group it died in (one send per group), keeping its first
-- enqueued_at, ordering key, headers and payload, under a new id
--
SELECT lives_ok($$SELECT deliver.create_consumer_group('internals', 'other')$$, 'a second group');
SELECT lives_ok($$SELECT deliver.create_queue('internals_rd', max_attempts => 1)$$, 'a queue for redrive');
SELECT lives_ok($$SELECT deliver.create_consumer_group('internals_rd', 'other', 'earliest')$$, 'its second group');
SELECT deliver.send('internals_rd', '{"n": "rd"}', headers => '{"h": 1}', ordering_key => 'key') AS rd_id \gset
CREATE TEMP TABLE rd_first AS
    SELECT g, r.* FROM unnest(ARRAY['default', 'other']) AS g,
                       LATERAL deliver.receive('internals_rd', 10, consumer_group => g) AS r;
SELECT is((SELECT count(*) FROM rd_first WHERE deliver.nack('internals_rd', delivery_id, retry_after => '0')), 2::bigint,
          'redrive: the message received and nacked in both groups (its last attempt)');
SELECT is((SELECT dead_lettered FROM deliver._sweep('internals_rd', 100)), 2::bigint,
          'redrive: both deliveries are dead letters');
SELECT is(deliver.redrive('internals_rd'), 2::bigint, 'redrive: both redriven in one call');
SELECT results_eq($$SELECT g, payload, headers, ordering_key, enqueued_at, message_id <> $$ || :rd_id || $$
                      FROM unnest(ARRAY['default', 'other']) AS g,
                           LATERAL deliver.receive('internals_rd', 10, consumer_group => g) ORDER BY g$$,
                  $$SELECT g, payload, headers, ordering_key, enqueued_at, true FROM rd_first ORDER BY g$$,
                  'redrive: each group gets its message again, as first sent, under a new id');
SELECT is(deliver.redrive('internals_rd'), 0::bigint, 'redrive: nothing left to redrive');
SELECT throws_ok($$SELECT deliver.redrive('internals_rd', consumer_group => 'nobody')$$, '42704', NULL,
                 'redrive of a group that does not exist');
SELECT lives_ok($$SELECT deliver.drop_queue('internals_rd')$$, 'drop internals_rd');
SELECT lives_ok($$SELECT deliver.purge_queue('internals')$$, 'purge internals');

--
-- _move_due(queue_name): delayed messages that came due go into the active
-- segment (the maintenance worker calls it; it may move them first)
--
SELECT ok(deliver.send('internals', '{"n": "later"}', delay => '1 hour') > 0, 'a message for in an hour');
SELECT ok(deliver.send('internals', '{"n": "soon"}', delay => '100 milliseconds') > 0, 'a message for in 100 ms');
-- a sleep, not a wait: what is tested is the time it takes to come due
SELECT pg_sleep(0.2) \g /dev/null
SELECT lives_ok($$SELECT deliver._move_due('internals')$$, '_move_due');
SELECT results_eq($$SELECT consumer_group, delayed FROM deliver.metrics('internals') ORDER BY 1$$,
                  $$VALUES ('default'::text, 1::bigint), ('other', 1)$$,
                  '_move_due: the message not due yet stays delayed');
SELECT results_eq($$SELECT payload FROM deliver.receive('internals', 10)$$, ARRAY['{"n": "soon"}'::jsonb],
                  '_move_due: the due message is in the queue');
SELECT throws_ok($$SELECT deliver._move_due(NULL)$$, '22004', 'queue name must not be NULL', '_move_due(NULL)');
SELECT throws_ok($$SELECT deliver._move_due('internals_missing')$$, '42704', 'queue "internals_missing" does not exist',
                 '_move_due of an unknown queue');

--
-- _sweep(queue_name, max_dead): leases that ran out are ready again after
-- their backoff, messages out of attempts go to the dead letters (the
-- maintenance worker's sweep; it may get there first)
--
SELECT lives_ok($$SELECT deliver.create_queue('internals_sweep', visibility_timeout => '1 ms', max_attempts => 1,
                                              retry_base => '0')$$, 'create queue internals_sweep');
SELECT is(deliver.send('internals_sweep', '{"n": "swept"}'), 1::bigint, 'message 1');
SELECT is((SELECT count(*) FROM deliver.receive('internals_sweep')), 1::bigint, 'leased for 1 ms');
-- a sleep, not a wait: what is tested is the 1 ms lease running out
SELECT pg_sleep(0.05) \g /dev/null
SELECT ok(expired = dead_lettered, '_sweep: the lease that ran out (its only attempt) went to the dead letters')
  FROM deliver._sweep('internals_sweep', 10);
SELECT ok(pg_temp.wait_until($$SELECT count(*) = 1 FROM deliver.dead_letters('internals_sweep')$$), 'one dead letter');
SELECT results_eq($$SELECT payload, reason, attempts FROM deliver.dead_letters('internals_sweep')$$,
                  $$VALUES ('{"n": "swept"}'::jsonb, 'lease expired'::text, 1)$$, 'the dead letter says why');
SELECT results_eq($$SELECT consumer_group, depth, in_flight, dead_letters FROM deliver.metrics('internals_sweep')$$,
                  $$VALUES ('default'::text, 0::bigint, 0::bigint, 1::bigint)$$, 'nothing left in flight');
SELECT throws_ok(cmd, state, msg, cmd) FROM (VALUES
    ($$SELECT * FROM deliver._sweep('internals_missing', 10)$$, '42704', 'queue "internals_missing" does not exist'),
    ($$SELECT * FROM deliver._sweep('internals_sweep', 0)$$, '22023', 'max_dead must be positive'),
    ($$SELECT * FROM deliver._sweep('internals_sweep', NULL)$$, '22023', 'max_dead must be positive')) AS t(cmd, state, msg);

-- _flow_group: the group's row (flow control), or 42704 naming it
SELECT lives_ok($$SELECT deliver.create_queue('internals_flow')$$, 'create queue internals_flow');
SELECT lives_ok($$SELECT deliver.pause_consumer_group('internals_flow')$$, 'pause its group');
SELECT results_eq($$SELECT (g).group_name, (g).paused, (g).rate_per_second
                      FROM (SELECT deliver._flow_group(q, 'default') AS g FROM deliver.queue q
                             WHERE q.queue_name = 'internals_flow') s$$,
                  $$VALUES ('default'::text, true, NULL::double precision)$$, '_flow_group returns the row');
SELECT throws_ok($$SELECT deliver._flow_group(q, 'nosuch') FROM deliver.queue q WHERE q.queue_name = 'internals_flow'$$,
                 '42704', 'consumer group "nosuch" does not exist on queue "internals_flow"', '_flow_group of an unknown group');

SELECT ok(deliver.drop_queue(q), 'drop ' || q) FROM unnest(ARRAY['internals', 'internals_sweep', 'internals_flow']) AS q;
DROP PROCEDURE pg_temp.checkpoint_until(int, xid8, boolean);
DROP ROLE regress_deliver_internals;
SELECT * FROM finish();
