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
use DeliverTest qw(write_file);
use DeliverHistory qw(write_result);

my $root = "$FindBin::RealBin/../..";
my $dir = PostgreSQL::Test::Utils::tempdir();
# ports: the monitor's and the ones after it (see scripts/cluster)
my $base = 20000 + 200 * int(rand(100));
$ENV{DELIVER_CLUSTER_DATA} = "$dir/cluster";
$ENV{DELIVER_CLUSTER_PORT} = $base;
$ENV{DELIVER_CLUSTER_PARTITIONS} = 4;
$ENV{DELIVER_CLUSTER_NOBUILD} = 1;

sub cluster
{
	my @args = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'bash', "$root/scripts/cluster", @args ], '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

my $t0 = time();
my ($ok, $out, $err) = cluster('up');
ok($ok, 'scripts/cluster up') or BAIL_OUT("the cluster did not come up: $out $err");
note(sprintf('cluster up in %.0f s', time() - $t0));

my $router = "host=127.0.0.1 port=" . ($base + 100) . " dbname=deliver user=postgres";
my @shard = map {
	"host=127.0.0.1,127.0.0.1 port=" . ($base + 10 * ($_ + 1)) . ',' . ($base + 10 * ($_ + 1) + 1)
	  . " dbname=deliver user=postgres target_session_attrs=read-write connect_timeout=2"
} (0, 1);

sub psql
{
	my ($conn, $sql, %opt) = @_;
	my ($o, $e) = ('', '');
	my @cmd = ('psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $conn, '-c', $sql);
	unshift @cmd, 'timeout', $opt{timeout} if $opt{timeout};
	my $r = IPC::Run::run(\@cmd, '>', \$o, '2>', \$e);
	chomp $o;
	die "psql failed: $e" if !$r && !$opt{may_fail};
	return wantarray ? ($r, $o, $e) : $o;
}

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
my @keys = map { @$_ } @keys_of;

# ---- the load: bash loops writing what returned -----------------------
my $stop = "$dir/stop";
my @procs;
sub start_loop
{
	my ($name, $body) = @_;
	my $script = "$dir/$name.sh";
	write_file($script, <<"EOS");
set -u
ROUTER='$router'
OUT='$dir/$name.out'
: > "\$OUT"
while [ ! -e '$stop' ]; do
$body
done
EOS
	push @procs, IPC::Run::start([ 'bash', $script ], '>', "$dir/$name.stdout", '2>', "$dir/$name.stderr");
	return;
}
# producers: one message at a time, the seq of a key only moves on once its
# send returned (a failed send is retried with the same idempotency key)
for my $p (0 .. 3)
{
	my $keys = join(' ', @{ $keys_of[$p] });
	start_loop("producer$p", <<"EOS");
  seq=\${seq:-0}
  set -- $keys
  shift \$((seq % 4))
  key=\$1
  t1=\$(date +%s.%N)
  if id=\$(timeout 8 psql -XAtq -v ON_ERROR_STOP=1 -d "\$ROUTER" -c "SELECT deliver_cluster.send('cq', jsonb_build_object('k', '\$key', 's', \$seq), ordering_key => '\$key', idempotency_key => '\$key:\$seq')" 2>>'$dir/producer$p.err'); then
    echo "sent \$key \$seq \$id \$t1 \$(date +%s.%N)" >> "\$OUT"
    seq=\$((seq + 1))
  else
    echo "fail \$key \$seq \$t1 \$(date +%s.%N)" >> "\$OUT"
    sleep 0.2
  fi
EOS
}
# consumers: one per partition, on its shard (found through the router),
# effect and ack in one transaction
for my $part (0 .. 3)
{
	start_loop("consumer$part", <<"EOS");
  conn=\$(timeout 5 psql -XAtq -d "\$ROUTER" -c "SELECT conninfo FROM deliver_cluster.partition_conninfo('cq', $part)" 2>/dev/null)
  if [ -z "\$conn" ]; then sleep 0.2; continue; fi
  if ! timeout 8 psql -XAtq -v ON_ERROR_STOP=1 -d "\$conn" >>"\$OUT" 2>>'$dir/consumer$part.err' <<'SQL'
BEGIN;
CREATE TEMP TABLE r ON COMMIT DROP AS
    SELECT message_id, delivery_id, payload FROM deliver.receive('cq.p$part', 10, wait => '1 second');
INSERT INTO effects (k, s, message_id, part) SELECT payload->>'k', (payload->>'s')::int, message_id, $part FROM r;
SELECT 'applied', count(*) FROM r WHERE deliver.ack('cq.p$part', delivery_id);
COMMIT;
SQL
  then sleep 0.2; fi
EOS
}

sub sent_lines
{
	my @l;
	for my $p (0 .. 3)
	{
		open my $fh, '<', "$dir/producer$p.out" or next;
		push @l, map { chomp; [ split / / ] } <$fh>;
		close $fh;
	}
	return @l;
}
sub shard_keys { my ($s) = @_; return grep { $shard_of_part{ $part_of{$_} } eq $s } @keys; }

# the keeper and postgres processes of a node
sub node_pids
{
	my ($k, $n) = @_;
	my (undef, $d) = cluster('node-dir', $k, $n);
	chomp $d;
	my @pids;
	if (open my $fh, '<', "$d.pid") { my $p = <$fh>; chomp $p; push @pids, $p, split(/\n/, `pgrep -P $p`); }
	if (open my $fh, '<', "$d/postmaster.pid") { my $p = <$fh>; chomp $p; push @pids, $p, split(/\n/, `pgrep -P $p`); }
	my @more = map { split /\n/, `pgrep -P $_` } @pids;
	my %seen;
	return grep { /^\d+$/ && !$seen{$_}++ } @pids, @more;
}
sub primary_node
{
	my ($k) = @_;
	my $port = psql($shard[$k], 'SHOW port');
	return $port == $base + 10 * ($k + 1) ? 0 : 1;
}
# the first successful send to a shard after $t, and shard 1's latencies
# between $t and $until
sub resumed_after
{
	my ($t, $s) = @_;
	my %mine = map { $_ => 1 } shard_keys($s);
	my ($first) = sort { $a <=> $b } map { $_->[5] } grep { $_->[0] eq 'sent' && $mine{ $_->[1] } && $_->[4] >= $t } sent_lines();
	return $first;
}
sub p99_between
{
	my ($t1, $t2, $s) = @_;
	my %mine = map { $_ => 1 } shard_keys($s);
	my @lat = sort { $a <=> $b } map { $_->[5] - $_->[4] }
	  grep { $_->[0] eq 'sent' && $mine{ $_->[1] } && $_->[4] >= $t1 && $_->[4] <= $t2 } sent_lines();
	return (scalar(@lat), @lat ? $lat[ int(0.99 * $#lat) ] : undef);
}

sleep 5;
cmp_ok(scalar(grep { $_->[0] eq 'sent' } sent_lines()), '>', 20, 'the load runs');

# ---- 1. kill -9 of shard 0's primary ----------------------------------
my $victim = primary_node(0);
my @pids = node_pids(0, $victim);
my $t_kill = time();
kill 'KILL', @pids;
note('killed shard 0 node ' . $victim . ' (pids ' . join(' ', @pids) . ')');
my $resumed;
for (1 .. 600) { $resumed = resumed_after($t_kill, 'shard0'); last if $resumed; usleep(100_000); }
my $outage = $resumed ? $resumed - $t_kill : 999;
cmp_ok($outage, '<', 20, sprintf('kill -9 of shard 0\'s primary: its writes resume after %.1f s', $outage));
my ($n1, $p99) = p99_between($t_kill, $t_kill + $outage, 'shard1');
cmp_ok($n1, '>', 0, sprintf('shard 1 served throughout: %d sends, p99 %.0f ms', $n1, 1000 * ($p99 // 0)));
write_result('faults.tsv', 'cluster: kill -9 of a shard\'s primary (keeper and postgres)', 1, 0, 0, 0, 0,
	sprintf('writes to it resumed after %.1f s; the other shard served %d sends meanwhile, p99 %.0f ms',
		$outage, $n1, 1000 * ($p99 // 0)));
# the old primary rejoins as the standby
cluster('start-node', 0, $victim);
my $rejoined = 0;
for (1 .. 300)
{
	my $st = psql("host=127.0.0.1 port=$base dbname=pg_auto_failover user=postgres",
		"SELECT string_agg(reportedstate::text, ',' ORDER BY nodeid) FROM pgautofailover.node WHERE formationid = 'shard0'",
		may_fail => 1);
	if ($st =~ /^(primary,secondary|secondary,primary)$/) { $rejoined = 1; last; }
	usleep(200_000);
}
ok($rejoined, 'the old primary rejoined as a synchronous standby');

# ---- 2. SIGSTOP of shard 0's (new) primary for 20 s --------------------
$victim = primary_node(0);
@pids = node_pids(0, $victim);
my $t_stop = time();
kill 'STOP', @pids;
for (1 .. 600) { $resumed = resumed_after($t_stop + 1, 'shard0'); last if $resumed; usleep(100_000); }
$outage = $resumed ? $resumed - $t_stop : 999;
my $left = 20 - (time() - $t_stop);
usleep($left * 1_000_000) if $left > 0;
kill 'CONT', @pids;
cmp_ok($outage, '<', 25, sprintf('a frozen primary (SIGSTOP): shard 0\'s writes resume after %.1f s', $outage));
my $longest = 0;
for my $l (sent_lines()) { my $d = $l->[-1] - $l->[-2]; $longest = $d if $d > $longest; }
cmp_ok($longest, '<', 9, sprintf('no client call lasted past its deadline (8 s): the longest took %.1f s', $longest));
write_result('faults.tsv', 'cluster: a shard\'s primary frozen (SIGSTOP) for 20 s', 1, 0, 0, 0, 0,
	sprintf('writes to it resumed after %.1f s; the longest client call %.1f s (deadline 8 s)', $outage, $longest));
$rejoined = 0;
for (1 .. 600)
{
	my $st = psql("host=127.0.0.1 port=$base dbname=pg_auto_failover user=postgres",
		"SELECT string_agg(reportedstate::text, ',' ORDER BY nodeid) FROM pgautofailover.node WHERE formationid = 'shard0'",
		may_fail => 1);
	if ($st =~ /^(primary,secondary|secondary,primary)$/) { $rejoined = 1; last; }
	usleep(200_000);
}
ok($rejoined, 'the frozen node came back as a standby');

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
write_file("$dir/stop_producers", '');
# producers stop first: let consumers drain
for my $p (0 .. 3) { }
my $sent_final = 0;
write_file($stop, '');
$_->finish for @procs;
# drain what is left with the consumers' statement, once per partition
for my $round (1 .. 10)
{
	my $n = 0;
	for my $part (0 .. 3)
	{
		my $conn = psql($router, "SELECT conninfo FROM deliver_cluster.partition_conninfo('cq', $part)");
		my $got = psql($conn, qq{
            BEGIN;
            CREATE TEMP TABLE r ON COMMIT DROP AS
                SELECT message_id, delivery_id, payload FROM deliver.receive('cq.p$part', 100, wait => '2 seconds');
            INSERT INTO effects (k, s, message_id, part) SELECT payload->>'k', (payload->>'s')::int, message_id, $part FROM r;
            SELECT count(*) FROM r WHERE deliver.ack('cq.p$part', delivery_id);
            COMMIT;});
		$n += $got;
	}
	last if $n == 0;
}

my %sent;
$sent{"$_->[1] $_->[2]"} = $_->[3] for grep { $_->[0] eq 'sent' } sent_lines();
my %applied;
my %by_key;
for my $s (@shard)
{
	for (split /\n/, psql($s, q{SELECT k || ' ' || s || ' ' || extract(epoch FROM at) FROM effects}))
	{
		my ($k, $sq, $at) = split / /;
		$applied{"$k $sq"}++;
		push @{ $by_key{$k} }, [ $at, $sq ];
	}
}
my $lost = grep { !$applied{$_} } keys %sent;
my $dup = grep { $applied{$_} > 1 } keys %applied;
my $reordered = 0;
for my $k (keys %by_key)
{
	my @s = map { $_->[1] } sort { $a->[0] <=> $b->[0] } @{ $by_key{$k} };
	for my $i (1 .. $#s) { $reordered++ if $s[$i] < $s[ $i - 1 ]; }
}
cmp_ok(scalar(keys %sent), '>', 100, scalar(keys %sent) . ' messages sent through the router');
is($lost, 0, 'no message lost');
is($dup, 0, 'no message applied twice (exactly-once: idempotency keys, effect and ack in one transaction)');
is($reordered, 0, 'no key reordered (FIFO per key, across two failovers and a partition move)');
write_result('faults.tsv', 'cluster: two failovers and a partition move under load', 1, scalar(keys %sent), $lost, $dup,
	$reordered, 'through the router; consumers per partition on its shard');

cluster('down');
done_testing();
