# The maintenance workers: lease expiry and redelivery with the attempt
# count raised, growing backoff, dead letters after max_attempts (with the
# reason) without any consumer calling in, delayed messages on time, long
# polls woken by an expiry, retention of dead letters, storage reclaimed,
# alerts, two databases served, and a worker that survives a SIGHUP, an
# ERROR in one queue and a crash-restart of the server.
#
# Timing asserts use generous bounds: the worker runs every 100 ms here.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use DeliverTest;

my $node = deliver_node('workers', "deliver.database = 'postgres, other'",
	'deliver.maintenance_interval = 100ms', 'deliver.alert_interval = 200ms',
	'deliver.rotation_interval = 500ms');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION deliver');

ok( wait_for(
		$node,
		q{SELECT string_agg(database || ':' || (pid IS NOT NULL) || ':' || (runs > 0), ',' ORDER BY database)
		    FROM deliver.worker_status()},
		'other:true:true,postgres:true:true', 30),
	'one worker per listed database, both running');

# Seconds a statement takes, and its output.
sub timed
{
	my ($sql, $db) = @_;
	my $t0 = time();
	my $out = $node->safe_psql($db // 'postgres', $sql);
	return (time() - $t0, $out);
}

# --- lease expiry: the message comes back with its attempt raised, and a
# long poll that was already sleeping when the lease was shortened is woken
$node->safe_psql('postgres',
	q{SELECT deliver.create_queue('vt', visibility_timeout => '1 hour', retry_base => '0')});
$node->safe_psql('postgres', q{SELECT deliver.send('vt', '{"n": 1}')});
my $id = query_one($node, q{SELECT delivery_id FROM deliver.receive('vt', 1)});
ok($id > 0, 'leased for an hour');
my $poll = $node->background_psql('postgres');
$poll->query_until(qr/go/, q{\echo go
SELECT payload->>'n', attempt FROM deliver.receive('vt', 1, wait => '30 s');
\echo DONE
});
ok( wait_for(
		$node,
		q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%receive(''vt''%'},
		'1', 30),
	'a long poll sleeps');
my $t0 = time();
$node->safe_psql('postgres', qq{SELECT deliver.extend_lease('vt', $id, '1 second') IS NOT NULL});
my $timer = IPC::Run::timer(30);
$poll->{run}->pump until $poll->{stdout} =~ /DONE/ || $timer->is_expired;
my $waited = time() - $t0;
like($poll->{stdout}, qr/^1\|2$/m, 'the expired message comes back with attempt 2');
ok($waited > 0.8 && $waited < 10, "the sleeping poll was woken by the expiry (after ${waited}s)");
$poll->quit;

# --- backoff spacing grows: vt 100 ms, retry_base 400 ms doubling
$node->safe_psql('postgres',
	q{SELECT deliver.create_queue('bo', visibility_timeout => '100 ms', max_attempts => 10,
	                              retry_base => '400 ms', retry_max => '10 s')});
$node->safe_psql('postgres', q{SELECT deliver.send('bo', '{}')});
my @at;
for my $i (1 .. 4)
{
	my ($dt, $out) = timed(q{SELECT attempt FROM deliver.receive('bo', 1, wait => '20 s')});
	is($out, $i, "delivery $i of the unacked message");
	push @at, time();
}
my @gap = map { $at[$_] - $at[ $_ - 1 ] } 1 .. 3;
diag(sprintf('gaps between deliveries: %.2f %.2f %.2f s', @gap));
ok($gap[2] > $gap[0], 'the third retry waits longer than the first (exponential backoff)');
ok($gap[2] >= 0.8, 'the third retry waited at least half of 4 x retry_base');

# --- dead letters after max_attempts, moved by the worker, no consumer needed
$node->safe_psql('postgres',
	q{SELECT deliver.create_queue('dl', visibility_timeout => '200 ms', max_attempts => 2, retry_base => '0')});
$node->safe_psql('postgres', q{SELECT deliver.send('dl', '{"n": "expired"}')});
query_one($node, q{SELECT count(*) FROM deliver.receive('dl', 1)});
ok( wait_for(
		$node, q{SELECT attempt FROM deliver.receive('dl', 1, wait => '5 s')},
		'2', 10),
	'second delivery');
ok( wait_for(
		$node,
		q{SELECT payload->>'n', reason, attempts FROM deliver.dead_letters('dl')},
		'expired|lease expired|2', 10),
	'after its last lease ran out the worker moved it to the dead letters');
$node->safe_psql('postgres',
	q{SELECT deliver.create_queue('dn', max_attempts => 1, retry_base => '0')});
$node->safe_psql('postgres', q{SELECT deliver.send('dn', '{"n": "nacked"}')});
$node->safe_psql('postgres',
	q{SELECT deliver.nack('dn', delivery_id, error => 'handler failed: disk full')
	    FROM deliver.receive('dn', 1)});
ok( wait_for(
		$node,
		q{SELECT payload->>'n', reason, last_error FROM deliver.dead_letters('dn')},
		'nacked|nacked|handler failed: disk full', 10),
	'a nacked message out of attempts goes with its error text');
is( query_one(
		$node, q{SELECT depth, in_flight, dead_letters FROM deliver.metrics('dn')}),
	'0|0|1', 'metrics count it as a dead letter');

# --- delayed messages appear on time, not before, and wake a long poll
my $poll_later = q{SELECT payload->>'n' FROM deliver.receive('later', 1, wait => '20 s') r
                    WHERE deliver.ack('later', r.delivery_id)};
$node->safe_psql('postgres', q{SELECT deliver.create_queue('later')});
$node->safe_psql('postgres', q{SELECT deliver.send('later', '{"n": 7}', delay => '2 s')});
my $sent_at = time();
is(query_one($node, q{SELECT count(*) FROM deliver.receive('later', 1)}),
	'0', 'not visible before its time');
my ($dt, $out) = timed($poll_later);
my $after = time() - $sent_at;
is($out, '7', 'the long poll gets the delayed message');
ok($after >= 1.9 && $after < 8, "at its time (${after}s after sending, 2 s delay)");

# --- two databases: the other database's worker moves its delayed messages
$node->safe_psql('other', q{SELECT deliver.create_queue('o')});
$node->safe_psql('other', q{SELECT deliver.send('o', '{"db": "other"}', delay => '1 s')});
($dt, $out) = timed(q{SELECT payload->>'db' FROM deliver.receive('o', 1, wait => '20 s')}, 'other');
is($out, 'other', 'the second database is served too');
ok($dt < 10, "within its worker's tick (${dt}s)");

# --- an ERROR in one queue: its tables locked away, the others still served
my $pid_before = query_one($node,
	q{SELECT pid FROM deliver.worker_status() WHERE database = 'postgres'});
$node->safe_psql('postgres', q{SELECT deliver.create_queue('stuck')});
my $stuck = query_one($node, q{SELECT queue_id FROM deliver.queue WHERE queue_name = 'stuck'});
$node->safe_psql('postgres', q{SELECT deliver.send('stuck', '{}', delay => '1 s')});
my $locker = $node->background_psql('postgres');
$locker->query_safe(
	"BEGIN; LOCK TABLE deliver.q${stuck}_delayed, deliver.q${stuck}_done0 IN ACCESS EXCLUSIVE MODE");
$node->safe_psql('postgres', q{SELECT deliver.send('later', '{"n": 8}', delay => '1 s')});
($dt, $out) = timed($poll_later);
is($out, '8', 'another queue is still served while one fails');
ok( wait_for(
		$node,
		q{SELECT errors > 0, last_error LIKE 'queue "stuck": %lock timeout%'
		    FROM deliver.worker_status() WHERE database = 'postgres'},
		't|t', 10),
	'the failing queue shows in the worker status');
is( query_one($node,
		q{SELECT worker_errors > 0 AND worker_lag < interval '5 s' FROM deliver.metrics('later')}),
	't', 'metrics show the worker errors and a fresh last run');
$locker->query_safe('COMMIT');
$locker->quit;
ok( wait_for(
		$node, q{SELECT count(*) FROM deliver.receive('stuck', 1, wait => '1 s')},
		'1', 20),
	'the queue is served again once its tables are free');
is( query_one($node,
		q{SELECT pid FROM deliver.worker_status() WHERE database = 'postgres'}),
	$pid_before, 'the worker never restarted');

# --- SIGHUP: a new retention applies without a restart; dead letters go
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('dl')}), '1',
	'the dead letter is kept under the default retention');
$node->safe_psql('postgres', q{ALTER SYSTEM SET deliver.dead_letter_retention = '1s'});
$node->reload;
ok( wait_for(
		$node,
		q{SELECT (SELECT count(*) FROM deliver.dead_letters('dl')) + (SELECT count(*) FROM deliver.dead_letters('dn'))},
		'0', 20),
	'after a reload, dead letters older than the retention are deleted');
is( query_one($node,
		q{SELECT pid FROM deliver.worker_status() WHERE database = 'postgres'}),
	$pid_before, 'the same worker process took the reload');

# --- storage is reclaimed: a drained queue gives its segments back
$node->safe_psql('postgres', q{SELECT deliver.create_queue('big')});
$node->safe_psql('postgres',
	q{SELECT deliver.send_batch('big', array_agg(jsonb_build_object('pad', repeat('x', 500))))
	    FROM generate_series(1, 20000) i GROUP BY i % 2});
my $size_sql = q{SELECT sum(pg_total_relation_size(c.oid))
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'deliver' AND c.relkind = 'r'
	   AND c.relname ~ ('^q' || (SELECT queue_id FROM deliver.queue WHERE queue_name = 'big') || '_')};
my $full = query_one($node, $size_sql);
ok($full > 5_000_000, "20,000 messages take ${full} bytes");
my @drained = drain($node, 'big');
is(scalar @drained, 20000, 'all of them received and acked');
ok(wait_for($node, "SELECT ($size_sql) < $full / 10", 't', 30),
	'after they are acked the worker truncates their segments');
diag('queue tables: ' . $full . ' bytes full, ' . query_one($node, $size_sql) . ' bytes drained');

# --- alerts: one firing notice per crossing, and a resolved one
$node->safe_psql('postgres', q{SELECT deliver.create_queue('al')});
$node->safe_psql('postgres', q{SELECT deliver.set_alert('al', 'depth', 2)});
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN deliver_alerts');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	q{SELECT deliver.send_batch('al', array['{"a":1}','{"a":2}','{"a":3}']::jsonb[])});
ok(wait_for($node, q{SELECT firing, value FROM deliver.list_alerts('al')}, 't|3', 10),
	'the depth alert fires');
$node->safe_psql('postgres', q{SELECT deliver.send('al', '{"a":4}')});
usleep(1_000_000);    # several alert checks while above the threshold
$node->safe_psql('postgres',
	q{SELECT count(*) FROM deliver.receive('al', 10) r WHERE deliver.ack('al', r.delivery_id)});
ok(wait_for($node, q{SELECT firing FROM deliver.list_alerts('al')}, 'f', 10),
	'and resolves when the queue is drained');
my $heard = $listener->query_safe('SELECT 1');
my @firing = $heard =~ /payload "(\{.*?"state" : "firing".*?\})" received/g;
my @resolved = $heard =~ /payload "(\{.*?"state" : "resolved".*?\})" received/g;
is(scalar @firing, 1, 'one NOTIFY on deliver_alerts for the crossing') or diag($heard);
is(scalar @resolved, 1, 'one NOTIFY when it resolved');
like($firing[0] // '', qr/"queue" : "al", "metric" : "depth"/, 'the notice names queue and metric');
my $log = slurp_file($node->logfile, $log_offset);
my @lines = $log =~ /(WARNING:  deliver alert: queue "al" depth is \d+)/g;
is(scalar @lines, 1, 'one log line for the crossing');
$listener->quit;

# --- crash-restart: kill -9 of the worker restarts the server; a worker
# comes back and serves what was sent before the crash
$node->safe_psql('postgres', q{SELECT deliver.send('later', '{"n": 9}', delay => '2 s')});
my $wpid = query_one($node, q{SELECT pid FROM deliver.worker_status() WHERE database = 'postgres'});
kill 'KILL', $wpid;
ok( wait_for(
		$node,
		qq{SELECT pid IS NOT NULL AND pid <> $wpid FROM deliver.worker_status() WHERE database = 'postgres'},
		't', 60),
	'after the crash-restart a new worker runs');
($dt, $out) = timed($poll_later);
is($out, '9', 'and moves the delayed message sent before the crash');

$node->stop;
done_testing();
