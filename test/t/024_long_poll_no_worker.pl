# In a database no maintenance worker serves, a receive moves the delayed
# messages that came due itself: they show when its transaction commits,
# and the tables it wrote stay locked until then.  So such a receive must
# not go on to sleep in its long poll: it slept through its whole wait with
# the message it had moved invisible to everyone, and drop_queue waited for
# it (and could end in a deadlock with it).
#
#   1. a delayed message comes due; no worker serves the database;
#   2. a long poll of 60 s moves it, and returns at once (it cannot see what
#      it moved), so its transaction ends;
#   3. the next receive gets the message;
#   4. again with a second message: while a long poll runs, drop_queue
#      (with a lock timeout) succeeds, and the poll ends with 42704.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);
use DeliverTest;

# (no deliver.database: no maintenance worker serves 'postgres')
my $node = deliver_node('long_poll_no_worker');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('nq');
    SELECT deliver.send('nq', '"late"', delay => '300 ms');
});
is(query_one($node, q{SELECT count(*) FROM deliver.worker_status() WHERE database = current_database()}), '0',
	'no maintenance worker serves the database');
usleep(600_000);

sub start_poll
{
	my ($out, $err) = @_;
	return IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-c',
		  q{SELECT payload #>> '{}' FROM deliver.receive('nq', 1, wait => '60 s')} ],
		'>', $out, '2>', $err);
}

# 2. the long poll that moves the message
my ($out, $err) = ('', '');
my $t0 = time();
my $poll = start_poll(\$out, \$err);
my $ended = 0;
for (1 .. 300)
{
	if (!$poll->pumpable) { $ended = 1; last; }
	usleep(100_000);
	$poll->pump_nb;
}
ok($ended, sprintf('the long poll that moved the due message ended without waiting (%.1f s of its 60 s)',
	time() - $t0)) or $poll->kill_kill;
$poll->finish if $ended;
is(query_one($node, q{SELECT count(*) FROM deliver.queue q, LATERAL deliver.metrics(q.queue_name) m
                       WHERE q.queue_name = 'nq' AND m.delayed = 0}), '1', 'the message is no longer delayed');

# 3. the next receive has it
my $got = $out eq "late\n" ? 'late'
  : query_one($node, q{SELECT payload #>> '{}' FROM deliver.receive('nq', 1, wait => '5 s')});
is($got, 'late', 'the moved message is received');

# 4. drop_queue while a long poll runs (after a second message came due)
$node->safe_psql('postgres', q{SELECT deliver.send('nq', '"later"', delay => '300 ms')});
usleep(600_000);
($out, $err) = ('', '');
$poll = start_poll(\$out, \$err);
usleep(1_500_000);
my ($rc, $dout, $derr) = $node->psql('postgres',
	q{SET lock_timeout = '10s'; SELECT deliver.drop_queue('nq')});
is($rc, 0, 'drop_queue succeeds while consumers poll the queue') or diag($derr);
$poll->finish;
unlike($err, qr/deadlock/, 'no deadlock');

done_testing();
