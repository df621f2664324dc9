# Push after a failover (docs/push.md, "After a failover"): a primary with
# a synchronous standby, a push-only queue (no pull group) and a push
# consumer (deliver listen --exec) reading its subscription's slot while a
# producer sends all along.  kill -9 of the primary, promotion of the
# standby: the slot is gone (PostgreSQL 15 does not replicate logical
# slots), the subscription's row is there.  The procedure: restore the
# subscription (a new slot), hand the consumer its backlog (push_backlog:
# what was committed before the new slot's start, since the last commit
# it handled), then listen again.  Every message whose send was
# acknowledged reaches the consumer at least once; how many came twice is
# reported.  Meanwhile the maintenance worker on the new primary rotates
# segments every 300 ms and would truncate the backlog if the subscription
# without its slot did not hold it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest;
use DeliverHistory qw(write_result);

my $primary = deliver_node('primary', { allows_streaming => 1 }, 'max_connections = 60',
	"deliver.database = 'postgres'", 'deliver.maintenance_interval = 50ms',
	'deliver.rotation_interval = 300ms', 'deliver.checkpoint_interval = 100ms', "timezone = 'UTC'");
$primary->safe_psql('postgres', q{
    SELECT deliver.create_queue('pq');
    SELECT deliver.drop_consumer_group('pq', 'default');
});
$primary->safe_psql('postgres', q{SELECT deliver.create_push_subscription('pq', 'psub')});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
$primary->append_conf('postgresql.conf', "synchronous_standby_names = 'standby'");
$primary->reload;
$primary->wait_for_catchup('standby');

my $dir = $primary->basedir;
my $connfile = "$dir/conn";
write_file($connfile, $primary->connstr('postgres'));
my $stop = "$dir/stop";

# the producer: transactions of 5 messages; a line per acknowledged send
# with its ids (a send whose COMMIT did not return is in doubt: not written)
write_file("$dir/producer.sh", <<"EOS");
set -u
i=0
: > '$dir/sent'
while [ ! -e '$stop' ]; do
  i=\$((i + 1))
  if ids=\$(timeout 5 psql -XAtq -v ON_ERROR_STOP=1 -d "\$(cat '$connfile')" \\
        -c "SELECT deliver.send_batch('pq', ARRAY(SELECT jsonb_build_object('n', \$i * 10 + k) FROM generate_series(1, 5) k))" \\
        2>>'$dir/producer.err'); then
    echo "\$ids" | tr -d '{}' | tr ',' ' ' >> '$dir/sent'
  else
    sleep 0.1
  fi
done
EOS
my $producer = IPC::Run::start([ 'bash', "$dir/producer.sh" ], '>', "$dir/producer.out", '2>', "$dir/producer.stderr");

# the push consumer: the messages it handled, as JSON lines
my $handled = "$dir/handled";
write_file($handled, '');
sub listen_start
{
	my ($node) = @_;
	return IPC::Run::start([ 'deliver', '-d', $node->connstr('postgres'), 'listen', 'psub', '--exec', "cat >> $handled" ],
		'>', "$dir/listen.out", '2>>', "$dir/listen.err");
}
sub lines_of
{
	my ($path) = @_;
	open my $fh, '<', $path or return ();
	my @l = grep { /\S/ } map { chomp; $_ } <$fh>;
	close $fh;
	return @l;
}
sub handled_ids { return map { /"message_id":(\d+)/ ? $1 : () } lines_of($handled); }
sub sent_ids { return map { split ' ' } lines_of("$dir/sent"); }

my $listener = listen_start($primary);
sleep 3;
cmp_ok(scalar(handled_ids()), '>', 0, 'the push consumer gets messages (' . scalar(handled_ids()) . ')');

# kill -9 of the primary: the postmaster and every process it started
open my $pidfh, '<', $primary->data_dir . '/postmaster.pid' or die "no postmaster.pid: $!";
my $pm = <$pidfh>;
close $pidfh;
chomp $pm;
my @kids = DeliverTest::_children_of($pm);
$primary->kill9;
kill 'KILL', @kids;
my $t_kill = time();
# the consumer lost its server; it is stopped (it would retry the dead one)
$listener->signal('TERM');
eval { $listener->finish };
my $handled_before = scalar(handled_ids());
$standby->promote;
write_file($connfile, $standby->connstr('postgres'));
note(sprintf('standby promoted %.1f s after the kill; the consumer had handled %d messages', time() - $t_kill,
		$handled_before));

# the subscription came with the standby, its slot did not
is($standby->safe_psql('postgres', q{
    SELECT count(*) FILTER (WHERE p.subscription_name = 'psub') || '/' || count(r.slot_name)
      FROM deliver.push_subscription p LEFT JOIN pg_replication_slots r ON r.slot_name = p.subscription_name}),
	'1/0', 'on the new primary: the subscription, no slot');
my ($rc, $out, $err) = ('', '', '');
IPC::Run::run([ 'deliver', '-d', $standby->connstr('postgres'), 'listen', 'psub' ], '>', \$out, '2>', \$err);
is($? >> 8, 3, 'deliver listen ends with status 3');
like($err, qr/does not exist, but the push subscription does.*restore_push_subscription/s,
	'and says to restore the subscription');

# the producer goes on against the new primary, the maintenance worker runs
# there (and rotates the segments all along)
ok(wait_for($standby, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'deliver maintenance'}, '1', 30),
	'the maintenance worker runs on the new primary');
sleep 2;

# ---- the procedure --------------------------------------------------------
# since: the commit time of the last transaction the consumer handled, less
# a margin (commit times are taken just before the commit record is written)
my ($last) = sort { $b cmp $a } map { /"commit_time":"([^"]+)"/ ? $1 : () } lines_of($handled);
my $start = $standby->safe_psql('postgres', q{SELECT deliver.restore_push_subscription('psub')});
like($start, qr{^[0-9A-F]+/[0-9A-F]+$}, "the subscription is restored: a new slot from $start");
my @backlog = split /\n/, $standby->safe_psql('postgres',
	"SELECT message_id FROM deliver.push_backlog('psub', since => '$last'::timestamptz - interval '1 second')");
cmp_ok(scalar(@backlog), '>', 0, scalar(@backlog) . ' messages in the backlog (committed before the new slot, '
	  . 'since the last one handled)');
# the consumer handles the backlog, then listens again
write_file("$dir/backlog", join("\n", @backlog) . "\n");
$listener = listen_start($standby);
sleep 3;

# ---- stop, check ----------------------------------------------------------
write_file($stop, '');
$producer->finish;
my %sent = map { $_ => 1 } sent_ids();
my %got;
ok(wait_until_all(), 'the consumer caught up with the producer');
sub wait_until_all
{
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		%got = map { $_ => 1 } handled_ids(), @backlog;
		return 1 unless grep { !$got{$_} } keys %sent;
		usleep(200_000);
	}
	return 0;
}
$listener->signal('TERM');
eval { $listener->finish };

my @delivered = (handled_ids(), @backlog);
my %times;
$times{$_}++ for @delivered;
my @lost = sort { $a <=> $b } grep { !$times{$_} } keys %sent;
my $twice = grep { $times{$_} > 1 } keys %times;
my $in_doubt = grep { !$sent{$_} } keys %times;
cmp_ok(scalar(keys %sent), '>', 100, scalar(keys %sent) . ' messages sent and acknowledged');
is(scalar(@lost), 0, 'every acknowledged message reached the push consumer, across the failover')
  or diag("lost: @lost[0 .. ($#lost < 20 ? $#lost : 19)]");
note("$twice delivered twice; $in_doubt delivered whose send was not acknowledged (in doubt)");
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'psub'}), '1',
	'the restored slot is there');
write_result('faults.tsv', 'push: kill -9 of the primary, standby promoted, push subscription restored and its backlog read',
	1, scalar(keys %sent), scalar(@lost), $twice, 0,
	sprintf('backlog %d messages; %d delivered twice; %d in doubt delivered', scalar(@backlog), $twice, $in_doubt));

$standby->safe_psql('postgres', q{SELECT deliver.drop_push_subscription('psub')});
$standby->stop;
done_testing();
