# drop_queue and purge_queue while consumers long-poll the queue and
# producers send to it: neither deadlocks with them; after a drop the
# waiters end at once with "queue does not exist" (42704), never with "could
# not open relation" or a deadlock, and senders end with 42704; after a
# purge the queue goes on (new messages wake the waiters).  A send that
# waited for drop_queue's locks ends with 42704 too.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use DeliverTest;
use DeliverHistory qw(write_result);

my $node = deliver_node('drop_poll', "deliver.database = 'postgres'", "deadlock_timeout = '100ms'");
my $connstr = $node->connstr('postgres');

# a psql running one statement in the background; returns a handle
sub start_psql
{
	my ($sql) = @_;
	my %h = (out => '', err => '');
	$h{run} = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose',
			'-d', $connstr, '-c', $sql ], '>', \$h{out}, '2>', \$h{err});
	return \%h;
}

sub finish_psql
{
	my ($h) = @_;
	$h->{run}->finish;
	return ($h->{run}->result, $h->{out}, $h->{err});
}

my %outcomes;
my ($bad, $slow) = (0, 0);
for my $round (1 .. 8)
{
	my $purge = $round % 2 == 0;
	$node->safe_psql('postgres', q{SELECT deliver.create_queue('dq', max_attempts => 3)});
	$node->safe_psql('postgres', q{SELECT deliver.create_consumer_group('dq', 'g2')});
	my @polls = map {
		start_psql("SELECT count(*) FROM deliver.receive('dq', 10, wait => '30 s'"
			  . ($_ % 2 ? ", consumer_group => 'g2'" : '') . ")")
	} 1 .. 4;
	my @sends = map {
		start_psql(q{DO $$ BEGIN FOR i IN 1 .. 200 LOOP
                         PERFORM deliver.send('dq', jsonb_build_object('i', i), delay => CASE WHEN i % 3 = 0 THEN interval '10 ms' END);
                         PERFORM pg_sleep(0.005);
                       END LOOP; END $$})
	} 1 .. 2;
	# some messages received and acked meanwhile (so segments, done tables
	# and dead letters are all in use)
	usleep(200_000);
	$node->psql('postgres', q{SELECT count(*) FROM deliver.receive('dq', 5) r WHERE deliver.ack('dq', r.delivery_id)});
	my $t0 = time();
	my ($rc, $out, $err) = $node->psql('postgres',
		$purge ? q{SELECT deliver.purge_queue('dq') >= 0} : q{SELECT deliver.drop_queue('dq')});
	is($rc, 0, "round $round: " . ($purge ? 'purge_queue' : 'drop_queue') . ' succeeds') or diag($err);
	# a purged queue goes on: new messages wake its long polls
	$node->safe_psql('postgres', q{SELECT deliver.send_batch('dq', array_fill('{"after": "purge"}'::jsonb, ARRAY[40]))})
	  if $purge;
	for my $p (@polls, @sends)
	{
		my ($prc, $pout, $perr) = finish_psql($p);
		my $what = $perr =~ /ERROR:\s+(\w{5}):/ ? $1 : ($prc == 0 ? 'ok' : "failed: $perr");
		$outcomes{$what}++;
		$bad++ unless $what eq 'ok' || $what eq '42704';
		diag("round $round: $what $perr") unless $what eq 'ok' || $what eq '42704';
	}
	my $took = time() - $t0;
	$slow++ if $took > 10;
	note(sprintf('round %d: waiters and senders ended %.2f s after the %s', $round, $took,
			$purge ? 'purge' : 'drop'));
	$node->safe_psql('postgres', q{SELECT deliver.drop_queue('dq')}) if $purge;
}
# A send that looked the queue up before drop_queue committed and waits for
# its locks ends with 42704 when the drop commits, not with an internal
# error on the dropped tables ("could not open relation with OID", XX000:
# a sender whose DO block started during a drop of the rounds above, now
# and then).  Deterministic: the drop is held open until the send waits.
$node->safe_psql('postgres', q{SELECT deliver.create_queue('sq')});
my $dropper = $node->background_psql('postgres');
$dropper->query_safe(q{BEGIN; SELECT deliver.drop_queue('sq');});
my $late = start_psql(q{SELECT deliver.send('sq', '"late"')});
ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity
                      WHERE wait_event_type = 'Lock' AND query LIKE '%deliver.send(''sq''%'
                        AND pid <> pg_backend_pid()}, '1', 30),
	'a send waits for the locks of an open drop_queue');
$dropper->query_safe('COMMIT');
$dropper->quit;
my ($late_rc, $late_out, $late_err) = finish_psql($late);
like($late_err, qr/ERROR:\s+42704: queue "sq" does not exist/,
	'the send ends with 42704 when the drop commits') or diag($late_err);

is($bad, 0, 'every waiter and sender ended with a result or with 42704: ' .
	join(', ', map { "$_ $outcomes{$_}" } sort keys %outcomes));
is($slow, 0, 'the long polls ended within seconds of the drop, not at the end of their wait');
write_result('hostile.tsv', 'drop', 'drop_queue and purge_queue under long polls and sends (8 rounds)',
	'42704 or a result', $bad ? 'other errors' : '42704 or a result', $bad ? 'FAIL' : 'pass');

unlike(slurp_file($node->logfile), qr/deadlock detected|could not open relation|terminated by signal/,
	'no deadlock, no missing relation, no crash in the server log');
done_testing();
