# High availability: a primary with a synchronous standby (streaming
# replication on loopback), producers and consumers on four queues, kill -9
# of the primary (postmaster and every backend), promotion of the standby,
# the clients carry on against it.  The history checker then proves that
# every send and ack that returned success before the failover survived:
# no committed send lost, nothing acked delivered again, no effect twice,
# no FIFO key reordered, at-most-once never twice.
#
# Also: the maintenance worker does not run on the standby while it is in
# recovery and starts on promotion; deliver's functions refuse to work on a
# standby; a delivery id handed out by the old primary is not current on
# the new one, even when both servers are in the same boot epoch.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest;
use DeliverHistory;
use Workload;

my $primary = deliver_node('primary', { allows_streaming => 1 }, 'max_connections = 60',
	"deliver.database = 'postgres'", 'deliver.maintenance_interval = 50ms',
	'deliver.rotation_interval = 300ms', 'deliver.checkpoint_interval = 100ms');
$primary->safe_psql('postgres', q{
    SELECT deliver.create_queue('fence', visibility_timeout => '1 hour');
    SELECT deliver.create_consumer_group('fence', 'other', start_from => 'earliest');
    SELECT deliver.send('fence', '{"n": 1}');
});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
# synchronous from now on (set before, the setup's commits would wait for a
# standby that does not exist yet)
$primary->append_conf('postgresql.conf', "synchronous_standby_names = 'standby'");
$primary->reload;
$primary->wait_for_catchup('standby');
is($primary->safe_psql('postgres', q{SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'}),
	'sync', 'the standby is synchronous');

# The standby is in recovery: no maintenance worker there, and deliver's
# functions refuse to run (a standby cannot record leases or acks).
ok(!wait_for($standby, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'deliver maintenance'}, '1', 2),
	'no maintenance worker on the standby');
for my $call (
	q{SELECT * FROM deliver.receive('fence', 1, consumer_group => 'other')},
	q{SELECT deliver.send('fence', '{}')},
	q{SELECT deliver.ack('fence', 1)},
	q{SELECT * FROM deliver.peek('fence')})
{
	my ($rc, $out, $err) = $standby->psql('postgres', $call, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:\s+25006/, "on the standby, refused as read-only: $call");
}
ok(wait_for($standby, 'SELECT 1', '1', 5), 'the standby is fine');
is($standby->safe_psql('postgres', q{
    SELECT (SELECT count(*) FROM deliver.list_queues()) || '/' ||
           (SELECT count(*) FROM deliver.list_consumer_groups('fence')) || '/' ||
           (SELECT count(*) FROM deliver.dead_letters('fence'))}),
	'1/2/0', 'on the standby, the catalogue and dead letters can be read');

# Restart the primary: now its boot epoch (deliver.epoch in $PGDATA, copied
# by the base backup and bumped at each start) equals the standby's.
$primary->restart;
my $stale = $primary->safe_psql('postgres', q{SELECT delivery_id FROM deliver.receive('fence', 1)});
like($stale, qr/^\d+$/, 'the old primary leased a message');

my $connfile = $primary->basedir . '/conn';
write_file($connfile, $primary->connstr('postgres'));
my $q = workload_setup($primary, 'ha');
my $dir = $primary->basedir . '/ha';
my $clients = workload_start($dir, $connfile, $q);
sleep(2 + rand(1));

# kill -9 of the primary: the postmaster and every process it started
open my $pidfh, '<', $primary->data_dir . '/postmaster.pid' or die "no postmaster.pid: $!";
my $pm = <$pidfh>;
close $pidfh;
chomp $pm;
my @kids = DeliverTest::_children_of($pm);
$primary->kill9;
kill 'KILL', @kids;
my $t_kill = time();
$standby->promote;
my $promoted_after = time() - $t_kill;
note(sprintf('standby promoted %.1fs after the kill', $promoted_after));

# Fencing across the failover: the first lease on the new primary takes the
# same slot as the old primary's lease; the old delivery id must not ack it.
my $new = $standby->safe_psql('postgres', q{SELECT delivery_id FROM deliver.receive('fence', 1, consumer_group => 'other')});
like($new, qr/^\d+$/, 'the new primary leased a message');
isnt($new, $stale, 'the new primary hands out a delivery id the old one did not');
my ($rc, $out, $err) = $standby->psql('postgres', "SELECT deliver.ack('fence', $stale)");
like($err, qr/is not current/, 'an ack with the old primary\'s delivery id is refused');
is($standby->safe_psql('postgres', "SELECT deliver.ack('fence', $new)"), 't', 'the new delivery is acked');

# the clients go on against the new primary
write_file($connfile, $standby->connstr('postgres'));
sleep(2);
my $res = workload_finish($standby, $dir, $q, $clients);
for my $kind (sort keys %$res)
{
	my $r = $res->{$kind};
	note("$kind: sent $r->{sent}, delivered $r->{delivered}, lost $r->{lost}, duplicated $r->{duplicated}, reordered $r->{reordered}");
	ok($r->{sent} > 0, "$kind: there was load");
	is($r->{lost}, 0, "$kind: no committed send lost across the failover") or diag("@{ $r->{details} }");
	is($r->{duplicated}, 0, "$kind: nothing acked came back, nothing applied twice") or diag("@{ $r->{details} }");
	is($r->{reordered}, 0, "$kind: FIFO order kept") or diag("@{ $r->{details} }");
}
my %tot;
for my $r (values %$res) { $tot{$_} += $r->{$_} for qw(sent lost duplicated reordered); }
write_result('faults.tsv', 'failover: kill -9 of a synchronous primary, standby promoted, clients switch', 1,
	$tot{sent}, $tot{lost}, $tot{duplicated}, $tot{reordered},
	sprintf('promoted %.1f s after the kill; old delivery ids refused; the worker starts on the new primary', $promoted_after));

ok(wait_for($standby, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'deliver maintenance'}, '1', 30),
	'the maintenance worker runs on the promoted standby');
ok(wait_for($standby, qq{SELECT count(*) > 0 FROM deliver.maintain('$q->{alo}')}, 't', 10),
	'maintain works on the new primary');
$standby->stop;
done_testing();
