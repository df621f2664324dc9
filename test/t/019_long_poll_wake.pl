# A long poll wakes up for a message sent while it sleeps, even when an
# earlier wake-up reached it while it waited for a table lock (the lock
# wait spends the wake-up's latch; the poll must still look again and
# stay on the wait list).  Found after purge_queue: waiters blocked behind
# its locks slept through the sends that followed.
#
#   1. a long poll of group g3 sleeps (nothing for it);
#   2. a session holds an ACCESS EXCLUSIVE lock on the queue's segment;
#   3. a nack (of group g2) wakes the poll: it looks again, and waits for
#      the lock;
#   4. a second nack wakes it while it waits for the lock;
#   5. the lock is released: the poll finds nothing and sleeps again;
#   6. a message is sent: the poll returns it at once, not at the end of
#      its wait.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);
use DeliverTest;

# (a lock wait of more than deadlock_timeout ends with a timer that sets
# the latch again, which would hide a missed wake-up: keep it out of reach)
my $node = deliver_node('long_poll_wake', "deadlock_timeout = '100s'");

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('wq');
    SELECT deliver.create_consumer_group('wq', 'g2', 'earliest');
    SELECT deliver.send_batch('wq', ARRAY['"m0"', '"m1"']::jsonb[]);
});
my @leases = split /\n/, $node->safe_psql('postgres',
	q{SELECT delivery_id FROM deliver.receive('wq', 2, '1 hour', consumer_group => 'g2') ORDER BY message_id});
is(scalar(@leases), 2, 'group g2 holds two leases');
$node->safe_psql('postgres', q{SELECT deliver.create_consumer_group('wq', 'g3', 'latest')});
my $segment = query_one($node,
	q{SELECT format('deliver.q%s_s0', queue_id) FROM deliver.queue WHERE queue_name = 'wq'});

# 1. the long poll
my ($out, $err) = ('', '');
my $t_start = time();
my $poll = IPC::Run::start(
	[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-c',
	  q{SELECT payload #>> '{}' FROM deliver.receive('wq', 1, wait => '60 s', consumer_group => 'g3')} ],
	'>', \$out, '2>', \$err);
my $poll_pid_sql = q{SELECT pid FROM pg_stat_activity WHERE query LIKE '%consumer_group => ''g3''%'
                       AND pid <> pg_backend_pid()};
ok(wait_for($node, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ($poll_pid_sql)", 'Extension', 30),
	'the long poll sleeps');

# 2. the lock
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; LOCK TABLE $segment IN ACCESS EXCLUSIVE MODE;");

# 3. a wake-up: the poll looks again and waits for the lock
$node->safe_psql('postgres', "SELECT deliver.nack('wq', $leases[0], retry_after => '1 hour')");
ok(wait_for($node, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ($poll_pid_sql)", 'Lock', 30),
	'the long poll woke up and waits for the lock');

# 4. a second wake-up while it waits for the lock
$node->safe_psql('postgres', "SELECT deliver.nack('wq', $leases[1], retry_after => '1 hour')");

# 5. the lock released: it sleeps again
$locker->query_safe('ROLLBACK');
$locker->quit;
ok(wait_for($node, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ($poll_pid_sql)", 'Extension', 30),
	'the long poll sleeps again');

# 6. the message
my $t_send = time();
$node->safe_psql('postgres', q{SELECT deliver.send('wq', '"m2"')});
$poll->finish;
my $took = time() - $t_send;
is($out, "m2\n", 'the long poll returned the message sent while it slept') or diag($err);
cmp_ok($took, '<', 20, sprintf('it returned %.2f s after the send, not at the end of its 60 s wait (%.1f s in all)',
		$took, time() - $t_start));

done_testing();
