# deliver-test: as root
# A network fault in the cluster (scripts/cluster with
# DELIVER_CLUSTER_NETNS=1): shard 0's primary (its pg_autoctl keeper and
# Postgres) runs in a network namespace reached only through a veth pair.
# Under the load of 030 (producers through the router, exactly-once
# consumers on their partition's shard) the link is cut for 20 s and
# restored:
#   - writes to shard 0 resume on its promoted standby (measured), shard 1
#     serves throughout (its p99 meanwhile is reported);
#   - whether and when the isolated primary demotes itself during the cut
#     (before or after the standby's promotion) is reported, not asserted:
#     pg_auto_failover's keeper did so 9-20 s after the cut in some runs
#     and not within 40 s in others;
#   - a write sent to the isolated primary from its side of the cut is not
#     acknowledged, or is there after the healing; one whose wait for the
#     synchronous standby is cancelled gets a reply that warns the commit
#     may not be replicated;
#   - the old primary rejoins as a standby once the link is back;
#   - every message sent is applied exactly once, in order per key.
# It needs root (ip netns): scripts/test runs it as root, after the others.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverHistory qw(write_result);
use ClusterTest;

plan skip_all => 'needs root (ip netns, veth pairs)' if $> != 0;
plan skip_all => 'no ip netns here (apt-get install iproute2)'
  if system('ip netns list >/dev/null 2>&1') != 0;

my $dir = PostgreSQL::Test::Utils::tempdir();
chmod 0755, $dir;    # the cluster's data is the postgres user's
# ports: the monitor's and the ones after it (see scripts/cluster); the
# link's subnet follows from them (10.77.N, N = port / 100 mod 256)
# (below the ephemeral ports, 32768 and up: an outgoing connection may hold one)
my $base = 24000 + 200 * int(rand(35));
$ENV{DELIVER_CLUSTER_DATA} = "$dir/cluster";
$ENV{DELIVER_CLUSTER_PORT} = $base;
$ENV{DELIVER_CLUSTER_PARTITIONS} = 4;
$ENV{DELIVER_CLUSTER_NOBUILD} = 1;
$ENV{DELIVER_CLUSTER_NETNS} = 1;

# whatever happens, the namespace and its link go away at the end
my ($started, $done) = (0, 0);
END
{
	local $?;
	if ($started && !$done)
	{
		cluster('netns-heal');
		cluster('down');
		cluster('netns-remove');
	}
}

my $t0 = time();
$started = 1;
my ($ok, $out, $err) = cluster('up');
ok($ok, 'scripts/cluster up, shard 0\'s first node in a network namespace') or BAIL_OUT("the cluster did not come up: $out $err");
note(sprintf('cluster up in %.0f s', time() - $t0));

my $router = "host=127.0.0.1 port=" . ($base + 100) . " dbname=deliver user=postgres";
my $monitor = "host=127.0.0.1 port=$base dbname=pg_auto_failover user=postgres";
my @shard = map { my (undef, $c) = cluster('shard-conninfo', $_); chomp $c; $c } (0, 1);
my (undef, $ns_addr) = cluster('node-host', 0, 0);
chomp $ns_addr;
my $port0 = $base + 10;    # shard 0's first node
like($shard[0], qr/host=\Q$ns_addr\E,/, "shard 0 is reached at $ns_addr first");

psql($router, q{SELECT deliver_cluster.create_queue('cq', 'exactly_once', fifo => true,
                                                     visibility_timeout => '5 seconds', retry_base => '0')});
psql($_, q{CREATE TABLE effects (k text, s int, message_id bigint, part int, at timestamptz DEFAULT clock_timestamp())})
  for @shard;
my %shard_of_part = map { split /\|/ } split /\n/, psql($router,
	q{SELECT partition || '|' || shard FROM deliver_cluster.partition_map() WHERE state = 'active'});
is(join(',', map { $shard_of_part{$_} } 0 .. 3), 'shard0,shard1,shard0,shard1', 'four partitions over two shards');

# keys: producers 0 and 1 send to shard 0, 2 and 3 to shard 1
my %part_of = map { split /\|/ } split /\n/, psql($router,
	join(' UNION ALL ', map { "SELECT 'k$_' || '|' || deliver_cluster.partition_of('k$_')" } 0 .. 99));
my @on = (
	[ grep { $shard_of_part{ $part_of{$_} } eq 'shard0' } sort keys %part_of ],
	[ grep { $shard_of_part{ $part_of{$_} } eq 'shard1' } sort keys %part_of ]);
my @keys_of = map { my $s = $_ < 2 ? 0 : 1; [ splice(@{ $on[$s] }, 0, 4) ] } 0 .. 3;
my @shard0_keys = map { @$_ } @keys_of[ 0, 1 ];
my @shard1_keys = map { @$_ } @keys_of[ 2, 3 ];

is(psql($shard[0], 'SHOW port'), $port0, 'shard 0\'s primary is the node in the namespace');

my $load = start_load(dir => $dir, router => $router, queue => 'cq', partitions => 4, producers => \@keys_of);
cmp_ok(wait_sent($load, 20, 60), '>', 20, 'the load runs');

# ---- the cut -------------------------------------------------------------
# the isolated node as seen from its side of the link
sub old_primary_state
{
	my (undef, $o) = cluster('netns-exec', 'timeout', '2', 'psql', '-XAtq', '-d',
		"host=$ns_addr port=$port0 dbname=deliver user=postgres connect_timeout=1",
		'-c', 'SELECT pg_is_in_recovery()');
	chomp $o;
	return $o eq 'f' ? 'primary' : $o eq 't' ? 'standby' : 'down';
}
# a write sent to the isolated primary from its side (named by its
# application_name, the probe's key)
sub probe
{
	my ($key) = @_;
	my ($o, $e) = ('', '');
	my $h = IPC::Run::start(
		[
			'bash', "$FindBin::RealBin/../../scripts/cluster", 'netns-exec', 'timeout', '30', 'psql', '-XAtq',
			'-v', 'ON_ERROR_STOP=1', '-d', "host=$ns_addr port=$port0 dbname=deliver user=postgres application_name=$key",
			'-c', "SELECT deliver.send('cq.p0', '{\"k\": \"$key\", \"s\": 0}', ordering_key => '$key', idempotency_key => '$key')"
		],
		'>', \$o, '2>', \$e);
	return { key => $key, h => $h, out => \$o, err => \$e };
}

is(old_primary_state(), 'primary', 'before the cut the node in the namespace is a primary');
my $t_cut = time();
($ok, undef, $err) = cluster('netns-cut');
ok($ok, 'the link is cut') or diag($err);
# two writes to the isolated primary: one waits; the other is cancelled
# after 3 s (a client's cancel request, an operator's pg_cancel_backend),
# which cancels its wait for the synchronous standby
my ($t_demoted, $t_promoted, $t_not_primary, $cancelled, @probes);
# the cut lasts 20 s, longer (up to 40 s) until the isolated primary is
# seen to demote itself: on a loaded machine its keeper may take longer
while (time() < $t_cut + 20 || (!defined $t_demoted && time() < $t_cut + 40))
{
	if (!@probes && time() > $t_cut + 1.5)
	{
		@probes = (probe('probe-plain'), probe('probe-cancel'));
	}
	# (a psql that did not get through, on a loaded machine, is tried again)
	if (@probes && !defined $cancelled && time() > $t_cut + 4.5 && time() < $t_cut + 15)
	{
		my (undef, $n) = cluster('netns-exec', 'timeout', '5', 'psql', '-XAtq', '-d',
			"host=$ns_addr port=$port0 dbname=deliver user=postgres connect_timeout=2",
			'-c', q{SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = 'probe-cancel'});
		chomp $n;
		$cancelled = $n if $n ne '';
	}
	my $now = time();
	# no longer a primary: twice in a row (one failed connection is not enough)
	if (old_primary_state() eq 'primary') { undef $t_not_primary; }
	else { $t_demoted //= $t_not_primary if defined $t_not_primary; $t_not_primary //= $now; }
	my ($sok, $st) = psql($monitor,
		q{SELECT reportedstate FROM pgautofailover.node WHERE formationid = 'shard0' AND nodename = 'shard0-node1'},
		may_fail => 1, timeout => 3);
	$t_promoted //= $now if $sok && $st =~ /^(wait_primary|primary)$/;
	usleep(200_000);
}
# writes resume when the first send to shard 0 started after the cut returns
my $resumed = resumed_after($load, $t_cut, @shard0_keys);
my ($n1, $p99) = p99_between($load, $t_cut, $t_cut + 20, @shard1_keys);
my $t_heal = time();
($ok, undef, $err) = cluster('netns-heal');
ok($ok, 'the link is restored') or diag($err);

# (a bound against a hang, not the failover target: a cut link is seen
# later than a dead process, when the keepers' and the monitor's health
# checks time out; the standby's promotion alone took 12-18 s here under
# load, and writes resume with the next call that finds it)
my $outage = $resumed ? $resumed - $t_cut : 999;
cmp_ok($outage, '<', 30, sprintf('shard 0\'s writes resume after %.1f s (link cut at 0)', $outage));
cmp_ok($n1, '>', 0, sprintf('shard 1 served throughout: %d sends during the cut, p99 %.0f ms', $n1, 1000 * ($p99 // 0)));
ok(defined $t_promoted, sprintf('the standby was promoted %.1f s after the cut', ($t_promoted // $t_heal) - $t_cut));
# Whether the isolated primary demotes itself while cut off (its keeper's
# self-fencing, pg_auto_failover's) is reported, not asserted: under load
# here it took 9-20 s in some runs and had not happened after 40 s in
# others.  What keeps the data safe is asserted below: its commits wait
# for the synchronous standby it lost, so no write on it is acknowledged
# and then lost, and once the link is back it rejoins as a standby.
note(defined $t_demoted
	? sprintf('the isolated primary demoted itself %.1f s after the cut (seen from its side)', $t_demoted - $t_cut)
	: sprintf('the isolated primary had not demoted itself when the link came back (%.1f s after the cut)',
		$t_heal - $t_cut));

# the old primary rejoins as a standby
# (a bound against a hang: about a minute in runs here; the time is reported)
ok(wait_formation($monitor, 'shard0', 180), 'once the link is back, the old primary rejoins as a standby');
my $rejoined = time() - $t_heal;
is(old_primary_state(), 'standby', 'the node in the namespace is a standby now');

for my $p (@probes)
{
	eval { $p->{h}->finish };
	$p->{ok} = $p->{h}->result(0) == 0 && ${ $p->{out} } =~ /^\d+$/m;
	note("$p->{key}: " . ($p->{ok} ? "acknowledged (id ${ $p->{out} })" : 'not acknowledged')
		  . (${ $p->{err} } ne '' ? ": ${ $p->{err} }" : ''));
}

sleep 3;    # the load goes on against the healed cluster a little
cmp_ok(longest_call($load), '<', 9, sprintf('no client call lasted past its deadline (8 s): the longest took %.1f s',
		longest_call($load)));
stop_load($load);
my ($sent, $lost, $dup, $reordered, $other) = drain_and_check($load, @shard);
cmp_ok($sent, '>', 50, "$sent messages sent through the router");
is($lost, 0, 'no message lost');
is($dup, 0, 'no message applied twice (exactly-once: idempotency keys, effect and ack in one transaction)');
is($reordered, 0, 'no key reordered (FIFO per key)');

my ($plain, $cancel) = @probes;
my $plain_there = $other->{'probe-plain'} // 0;
my $cancel_there = $other->{'probe-cancel'} // 0;
ok(!$plain->{ok} || $plain_there == 1,
	'a write to the isolated primary was not acknowledged, or it is there after the healing ('
	  . ($plain->{ok} ? 'acknowledged' : 'not acknowledged') . ", applied $plain_there times)");
# PostgreSQL commits locally before it waits for the synchronous standby: a
# cancelled wait returns success, with a warning that is the only sign.
# (The keeper demoting the isolated primary may end the probe's connection
# first: its wait is then cut short that way, with the same warning.)
$cancelled //= 'none';
my $cut_short = ${ $cancel->{err} } =~ /terminating connection due to administrator command/;
ok($cancelled eq '1' || $cut_short, 'the second write\'s wait was cut short while it waited ('
	  . ($cancelled eq '1' ? 'pg_cancel_backend' : "not cancelled ($cancelled): the demotion ended its connection")
	  . ')');
ok(!$cancel->{ok} || $cancel_there == 1 || ${ $cancel->{err} } =~ /canceling wait for synchronous replication/,
	'the cancelled one: not acknowledged, there after the healing, or its reply warns that it may '
	  . 'not be replicated (' . ($cancel->{ok} ? 'acknowledged' : 'not acknowledged') . ", applied $cancel_there times)");

my $notes = sprintf('writes to it resumed after %.1f s; the isolated primary demoted itself after %s, '
	  . 'the standby was promoted after %s; the other shard served %d sends meanwhile, p99 %.0f ms; '
	  . 'rejoined %.0f s after the healing; a write to the isolated primary: %s; one cancelled: %s',
	$outage, defined $t_demoted ? sprintf('%.1f s', $t_demoted - $t_cut) : 'not before the healing',
	defined $t_promoted ? sprintf('%.1f s', $t_promoted - $t_cut) : 'never', $n1, 1000 * ($p99 // 0), $rejoined,
	$plain->{ok} ? ($plain_there ? 'acknowledged, kept' : 'acknowledged, LOST') : 'not acknowledged',
	$cancel->{ok}
	? ($cancel_there ? 'acknowledged, kept' : 'acknowledged with the warning, gone after the healing')
	: 'not acknowledged');
note($notes);
write_result('faults.tsv', 'cluster: a shard primary\'s network link cut for 20 s (network namespace), then restored',
	1, $sent, $lost, $dup, $reordered, $notes);

# on failure, the nodes' logs are kept with the test's (tmp_check/log)
if (!Test::More->builder->is_passing)
{
	for my $log (glob("$dir/cluster/*.log"))
	{
		my $name = $log =~ s{.*/}{}r;
		system('cp', $log, "$PostgreSQL::Test::Utils::log_path/032_cluster_netfault_$name");
	}
}
cluster('destroy');
$done = 1;
done_testing();
