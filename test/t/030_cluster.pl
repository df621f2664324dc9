# The cluster (scripts/cluster): a pg_auto_failover monitor, two shards of
# a primary and a synchronous standby, and the router; a FIFO exactly-once
# queue in 4 partitions.  Producers send through the router with ordering
# and idempotency keys (retrying a failed send with the same key);
# consumers take one partition each, connected to its shard directly (as
# exactly-once consumers must: effect and ack in one transaction there).
# Under that load:
#   1. kill -9 of shard 0's primary (its keeper and every postgres
#      process): writes to shard 0 resume within 20 s, shard 1 serves
#      throughout (its p99 meanwhile is reported); the old primary rejoins
#      as a standby;
#   2. shard 0's new primary is frozen (SIGSTOP of its keeper and postgres)
#      for 20 s: it fails over the same way, and no client waits past its
#      deadline (each statement runs under `timeout`);
#   3. a partition moves from shard 1 to shard 0.
# Then every message sent is applied exactly once, and per key in the
# order it was sent.
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

my $dir = PostgreSQL::Test::Utils::tempdir();
# ports from 20000 to 29999 (see ClusterTest::cluster_start)
my $c = cluster_start(dir => $dir, base => 20000, bases => 50);
my ($router, $monitor, @shard) = ($c->{router}, $c->{monitor}, @{ $c->{shards} });

psql($router, q{SELECT deliver_cluster.create_queue('cq', 'exactly_once', fifo => true,
                                                     visibility_timeout => '5 seconds', retry_base => '0')});
psql($_, q{CREATE TABLE effects (k text, s int, message_id bigint, part int, at timestamptz DEFAULT clock_timestamp())})
  for @shard;
my %shard_of_part = map { split /\|/ } split /\n/, psql($router,
	q{SELECT partition || '|' || shard FROM deliver_cluster.partition_map() WHERE state = 'active'});
is(join(',', map { $shard_of_part{$_} } 0 .. 3), 'shard0,shard1,shard0,shard1', 'four partitions over two shards');

# the keys: 4 per producer, producers 0 and 1 sending to shard 0, 2 and 3
# to shard 1 (a producer retries a failed send until it succeeds: one
# stuck on a shard must not stop the other shard's traffic)
my %part_of = map { split /\|/ } split /\n/, psql($router,
	join(' UNION ALL ', map { "SELECT 'k$_' || '|' || deliver_cluster.partition_of('k$_')" } 0 .. 99));
my @on = (
	[ grep { $shard_of_part{ $part_of{$_} } eq 'shard0' } sort keys %part_of ],
	[ grep { $shard_of_part{ $part_of{$_} } eq 'shard1' } sort keys %part_of ]);
my @keys_of = map { my $s = $_ < 2 ? 0 : 1; [ splice(@{ $on[$s] }, 0, 4) ] } 0 .. 3;
my @shard0_keys = map { @$_ } @keys_of[ 0, 1 ];
my @shard1_keys = map { @$_ } @keys_of[ 2, 3 ];

# ---- the load (ClusterTest: bash loops writing what returned) ----------
my $load = start_load(dir => $dir, router => $router, queue => 'cq', partitions => 4, producers => \@keys_of);

cmp_ok(wait_sent($load, 20, 60), '>', 20, 'the load runs');

# ---- 1. kill -9 of shard 0's primary ----------------------------------
my $victim = primary_node($c, 0);
my @pids = node_pids(0, $victim);
my $t_kill = time();
kill 'KILL', @pids;
note('killed shard 0 node ' . $victim . ' (pids ' . join(' ', @pids) . ')');
my $resumed;
for (1 .. 600) { $resumed = resumed_after($load, $t_kill, @shard0_keys); last if $resumed; usleep(100_000); }
# (a bound against a hang; the design's 15 s target is a measurement, in
# docs/reliability.md: 12-13 s in quiet runs, 17 s in CI's under load)
my $outage = $resumed ? $resumed - $t_kill : 999;
cmp_ok($outage, '<', 30, sprintf('kill -9 of shard 0\'s primary: its writes resume after %.1f s', $outage));
my ($n1, $p99) = p99_between($load, $t_kill, $t_kill + $outage, @shard1_keys);
cmp_ok($n1, '>', 0, sprintf('shard 1 served throughout: %d sends, p99 %.0f ms', $n1, 1000 * ($p99 // 0)));
write_result('faults.tsv', 'cluster: kill -9 of a shard\'s primary (keeper and postgres)', 1, 0, 0, 0, 0,
	sprintf('writes to it resumed after %.1f s; the other shard served %d sends meanwhile, p99 %.0f ms',
		$outage, $n1, 1000 * ($p99 // 0)));
# the old primary rejoins as the standby
# (pg_auto_failover's keeper: pg_rewind, then catching up; about a minute here,
# so the bound is against a hang, and the time is reported)
cluster('start-node', 0, $victim);
my $rejoin = wait_formation($monitor, 'shard0', 180);
ok($rejoin, sprintf('the old primary rejoined as a synchronous standby (after %.0f s)', $rejoin));

# ---- 2. SIGSTOP of shard 0's (new) primary for 20 s --------------------
$victim = primary_node($c, 0);
@pids = node_pids(0, $victim);
my $t_stop = time();
kill 'STOP', @pids;
for (1 .. 600) { $resumed = resumed_after($load, $t_stop + 1, @shard0_keys); last if $resumed; usleep(100_000); }
$outage = $resumed ? $resumed - $t_stop : 999;
my $left = 20 - (time() - $t_stop);
usleep($left * 1_000_000) if $left > 0;
kill 'CONT', @pids;
cmp_ok($outage, '<', 35, sprintf('a frozen primary (SIGSTOP): shard 0\'s writes resume after %.1f s', $outage));
my $longest = longest_call($load);
cmp_ok($longest, '<', 9, sprintf('no client call lasted past its deadline (8 s): the longest took %.1f s', $longest));
write_result('faults.tsv', 'cluster: a shard\'s primary frozen (SIGSTOP) for 20 s', 1, 0, 0, 0, 0,
	sprintf('writes to it resumed after %.1f s; the longest client call %.1f s (deadline 8 s)', $outage, $longest));
my $back = wait_formation($monitor, 'shard0', 180);
ok($back, sprintf('the frozen node came back as a standby (after %.0f s)', $back));

# ---- 3. move partition 1 from shard 1 to shard 0 under load ------------
my ($mok, undef, $merr) = psql($router, q{CALL deliver_cluster.move_partition(1, 'shard0', '60 seconds')},
	may_fail => 1, timeout => 90);
ok($mok, 'partition 1 moved from shard 1 to shard 0 under load') or diag($merr);
is(psql($router, q{SELECT string_agg(shard || ':' || state, ',' ORDER BY epoch) FROM deliver_cluster.partition_map() WHERE partition = 1}),
	'shard1:retired,shard0:active', 'its old placement retired, the new one active');
# a client with the map from before the move (sending to shard 1 directly)
# is told to call again: nothing lands where nobody reads any more
my (undef, undef, $stale) = psql($shard[1],
	q{SELECT deliver_shard.send_batch(NULL, ARRAY[1], ARRAY[1], 'cq', ARRAY['{"stale": true}'::jsonb],
                                      ARRAY[NULL::jsonb], ARRAY['k-stale'], ARRAY['k-stale-1'], NULL)},
	may_fail => 1);
like($stale, qr/partition 1 of queue "cq" is not on this shard for new messages/,
	'a send to the old shard after the move is refused (the map changed: call again)');
sleep 3;

# ---- stop, drain, check -------------------------------------------------
stop_load($load);
my ($sent, $lost, $dup, $reordered) = drain_and_check($load, @shard);
cmp_ok($sent, '>', 100, "$sent messages sent through the router");
is($lost, 0, 'no message lost');
is($dup, 0, 'no message applied twice (exactly-once: idempotency keys, effect and ack in one transaction)');
is($reordered, 0, 'no key reordered (FIFO per key, across two failovers and a partition move)');
write_result('faults.tsv', 'cluster: two failovers and a partition move under load', 1, $sent, $lost, $dup,
	$reordered, 'through the router; consumers per partition on its shard');

cluster_stop($c);
done_testing();
