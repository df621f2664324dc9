# What the cluster tests (scripts/cluster) share: the script itself, psql,
# a load of producers sending through the router and exactly-once
# consumers taking one partition each on its shard, the figures of that
# load (when writes resumed, a shard's latencies) and the final check
# (drain, then every message sent applied exactly once, in order per key).
#
# The load: a FIFO exactly-once queue; producer p sends keys of its own one
# message at a time with an idempotency key, retrying a failed send with
# the same key, and writes a line for every call:
#   sent KEY SEQ ID T_START T_END   or   fail KEY SEQ T_START T_END
# consumers receive, write their effect and ack in one transaction on the
# partition's shard (found through the router at each round).
package ClusterTest;

use strict;
use warnings;

use Exporter 'import';
use FindBin;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest qw(write_file);

our @EXPORT = qw(cluster cluster_start cluster_stop psql node_pids primary_node start_load sent_lines wait_sent
  resumed_after p99_between longest_call formation_states wait_formation stop_load drain_and_check);

my $root = "$FindBin::RealBin/../..";

# scripts/cluster with arguments: (success, stdout, stderr)
sub cluster
{
	my @args = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'bash', "$root/scripts/cluster", @args ], '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

# Is the TCP port free on the loopback address?
sub port_free
{
	my ($port) = @_;
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp', Listen => 1,
		ReuseAddr => 1) or return 0;
	close $s;
	return 1;
}

# The cluster a test brought up with cluster_start (brought down at the end
# when the test stopped before cluster_stop)
my $started;
END
{
	local $?;
	cluster('down') if $started && -d $started->{data};
}

# Bring a cluster up for a test (scripts/cluster up; it BAILs OUT when the
# cluster does not come up):
#   cluster_start(dir => DIR, base => FIRST, bases => N,
#                 gateway => 1, partitions => 4, env => { KEY => value })
# Its ports (see scripts/cluster: the monitor's at the base, the nodes' at
# +10.., the router's at +100, the gateway's at +200) are taken from the
# bases FIRST + 200 * n, n < N, the first of a few random tries whose ports
# are all free; tests that may run side by side use ranges of their own,
# below the ephemeral ports (32768 on), which outgoing connections take.
# The data goes to DIR/cluster; gateway => 1 adds deliverd in cluster mode
# (the sanitizer build when there is one, its reports in DIR/asan*); env
# sets more of scripts/cluster's environment (DELIVERD_KEY reaches
# deliverd).  Returns { base, data, router, monitor, shards => [ conninfo
# of shard 0, of shard 1 ], gw => URL, up_s => seconds it took }.
sub cluster_start
{
	my (%o) = @_;
	my $dir = $o{dir};
	my $base;
	for (1 .. 50)
	{
		$base = $o{base} + 200 * int(rand($o{bases}));
		last if !grep { !port_free($base + $_) } (0, 10, 11, 20, 21, 100, 200);
	}
	my %c = (base => $base, data => "$dir/cluster");
	$ENV{DELIVER_CLUSTER_DATA} = $c{data};
	$ENV{DELIVER_CLUSTER_PORT} = $base;
	$ENV{DELIVER_CLUSTER_PARTITIONS} = $o{partitions} // 4;
	$ENV{DELIVER_CLUSTER_NOBUILD} = 1;
	if ($o{gateway})
	{
		require GatewayTest;
		$ENV{DELIVER_CLUSTER_DELIVERD} = GatewayTest::gateway_bin();
		$ENV{ASAN_OPTIONS} = "detect_leaks=1:abort_on_error=0:log_path=$dir/asan";
		$ENV{UBSAN_OPTIONS} = "print_stacktrace=1:log_path=$dir/asan";
		$c{gw} = 'http://127.0.0.1:' . ($base + 200);
	}
	$ENV{$_} = $o{env}{$_} for keys %{ $o{env} // {} };

	my $t0 = time();
	$started = \%c;
	my ($ok, $out, $err) = cluster('up');
	ok($ok, 'scripts/cluster up' . ($o{gateway} ? ' (deliverd in cluster mode included)' : ''))
	  or BAIL_OUT("the cluster did not come up: $out $err");
	$c{up_s} = time() - $t0;
	$c{up_out} = $out;
	note(sprintf('cluster up in %.0f s', $c{up_s}));
	$c{router} = "host=127.0.0.1 port=" . ($base + 100) . " dbname=deliver user=postgres";
	$c{monitor} = "host=127.0.0.1 port=$base dbname=pg_auto_failover user=postgres";
	$c{shards} = [ map { my (undef, $s) = cluster('shard-conninfo', $_); chomp $s; $s } (0, 1) ];
	return \%c;
}

# Bring the cluster down; returns what the sanitizers reported (in their
# files or in deliverd's log), '' when nothing
sub cluster_stop
{
	my ($c) = @_;
	cluster('down');
	$started = undef;
	my $dir = $c->{data} =~ s{/cluster$}{}r;
	my $asan = join '', map { slurp_file($_) } glob("$dir/asan*");
	my $log = -f "$c->{data}/deliverd.log" ? slurp_file("$c->{data}/deliverd.log") : '';
	$asan .= $1 while $log =~ /(^.*(?:AddressSanitizer|runtime error|LeakSanitizer).*$)/mg;
	return $asan;
}

# psql -c SQL on a connection string; dies on failure unless may_fail
# (then returns (ok, stdout, stderr)); timeout => seconds bounds it
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

# The keeper and postgres processes of node N of shard K (to stop or kill
# them): the keeper's pid file, the postmaster's, and their children.
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

# Which node of shard K of cluster C (cluster_start's) is its primary now,
# 0 or 1: the one whose port the shard's connection string reaches (node n
# of shard K listens on base + 10 * (K + 1) + n).
sub primary_node
{
	my ($c, $k) = @_;
	my $port = psql($c->{shards}[$k], 'SHOW port');
	return $port == $c->{base} + 10 * ($k + 1) ? 0 : 1;
}

# Start the load on queue QUEUE (partitions 0 .. PARTITIONS-1) of the
# router ROUTER: producers => [ [keys of producer 0], ... ].  Returns the
# load (a hash) for the functions below.
sub start_load
{
	my (%l) = @_;
	my ($dir, $router, $queue) = @l{qw(dir router queue)};
	$l{stop} = "$dir/stop";
	$l{procs} = [];
	my $loop = sub {
		my ($name, $body) = @_;
		my $script = "$dir/$name.sh";
		write_file($script, <<"EOS");
set -u
ROUTER='$router'
OUT='$dir/$name.out'
: > "\$OUT"
while [ ! -e '$l{stop}' ]; do
$body
done
EOS
		push @{ $l{procs} }, IPC::Run::start([ 'bash', $script ], '>', "$dir/$name.stdout", '2>', "$dir/$name.stderr");
	};
	for my $p (0 .. $#{ $l{producers} })
	{
		my $keys = join(' ', @{ $l{producers}[$p] });
		my $n = scalar @{ $l{producers}[$p] };
		# the seq of a key only moves on once its send returned
		$loop->("producer$p", <<"EOS");
  seq=\${seq:-0}
  set -- $keys
  shift \$((seq % $n))
  key=\$1
  t1=\$(date +%s.%N)
  if id=\$(timeout 8 psql -XAtq -v ON_ERROR_STOP=1 -d "\$ROUTER" -c "SELECT deliver_cluster.send('$queue', jsonb_build_object('k', '\$key', 's', \$seq), ordering_key => '\$key', idempotency_key => '\$key:\$seq')" 2>>'$dir/producer$p.err'); then
    echo "sent \$key \$seq \$id \$t1 \$(date +%s.%N)" >> "\$OUT"
    seq=\$((seq + 1))
  else
    echo "fail \$key \$seq \$t1 \$(date +%s.%N)" >> "\$OUT"
    sleep 0.2
  fi
EOS
	}
	for my $part (0 .. $l{partitions} - 1)
	{
		$loop->("consumer$part", <<"EOS");
  conn=\$(timeout 5 psql -XAtq -d "\$ROUTER" -c "SELECT conninfo FROM deliver_cluster.partition_conninfo('$queue', $part)" 2>/dev/null)
  if [ -z "\$conn" ]; then sleep 0.2; continue; fi
  if ! timeout 8 psql -XAtq -v ON_ERROR_STOP=1 -d "\$conn" >>"\$OUT" 2>>'$dir/consumer$part.err' <<'SQL'
@{[ consume_sql($queue, $part, 10, '1 second') ]}
SQL
  then sleep 0.2; fi
EOS
	}
	return \%l;
}

# receive, effect and ack in one transaction on the partition's shard
sub consume_sql
{
	my ($queue, $part, $n, $wait) = @_;
	return <<"SQL";
BEGIN;
CREATE TEMP TABLE r ON COMMIT DROP AS
    SELECT message_id, delivery_id, payload FROM deliver.receive('$queue.p$part', $n, wait => '$wait');
INSERT INTO effects (k, s, message_id, part) SELECT payload->>'k', (payload->>'s')::int, message_id, $part FROM r;
SELECT count(*) FROM r WHERE deliver.ack('$queue.p$part', delivery_id);
COMMIT;
SQL
}

# every line the producers wrote, split
sub sent_lines
{
	my ($l) = @_;
	my @lines;
	for my $p (0 .. $#{ $l->{producers} })
	{
		open my $fh, '<', "$l->{dir}/producer$p.out" or next;
		push @lines, map { chomp; [ split / / ] } <$fh>;
		close $fh;
	}
	return @lines;
}

# The number of sends of the load that returned, once more than N did or
# SECONDS passed (the first calls also start every connection: slow on a
# busy machine).
sub wait_sent
{
	my ($load, $n, $seconds) = @_;
	my $deadline = time() + $seconds;
	my $sent;
	while (1)
	{
		$sent = grep { $_->[0] eq 'sent' } sent_lines($load);
		last if $sent > $n || time() >= $deadline;
		usleep(100_000);
	}
	return $sent;
}

# the end of the first successful send of one of KEYS that started after T
sub resumed_after
{
	my ($l, $t, @keys) = @_;
	my %mine = map { $_ => 1 } @keys;
	my ($first) = sort { $a <=> $b }
	  map { $_->[5] } grep { $_->[0] eq 'sent' && $mine{ $_->[1] } && $_->[4] >= $t } sent_lines($l);
	return $first;
}

# the number of successful sends of KEYS that started between T1 and T2,
# and their 99th percentile latency (seconds)
sub p99_between
{
	my ($l, $t1, $t2, @keys) = @_;
	my %mine = map { $_ => 1 } @keys;
	my @lat = sort { $a <=> $b } map { $_->[5] - $_->[4] }
	  grep { $_->[0] eq 'sent' && $mine{ $_->[1] } && $_->[4] >= $t1 && $_->[4] <= $t2 } sent_lines($l);
	return (scalar(@lat), @lat ? $lat[ int(0.99 * $#lat) ] : undef);
}

# the longest producer call (seconds)
sub longest_call
{
	my ($l) = @_;
	my $longest = 0;
	for my $c (sent_lines($l)) { my $d = $c->[-1] - $c->[-2]; $longest = $d if $d > $longest; }
	return $longest;
}

# the reported states of a formation's nodes, by node id: "primary,secondary"
sub formation_states
{
	my ($monitor, $formation) = @_;
	my ($ok, $st) = psql($monitor,
		"SELECT string_agg(reportedstate::text, ',' ORDER BY nodeid) FROM pgautofailover.node WHERE formationid = '$formation'",
		may_fail => 1, timeout => 5);
	return $ok ? $st : '';
}

# Wait up to SECONDS for FORMATION to be a primary and a secondary again.
# Returns the seconds it took (at least 0.001), or 0 if it did not get
# there; then the states last seen are written to the test's log.
sub wait_formation
{
	my ($monitor, $formation, $seconds) = @_;
	my $start = time();
	my $states = '';
	while (time() < $start + $seconds)
	{
		$states = formation_states($monitor, $formation);
		return (time() - $start) || 0.001 if $states =~ /^(primary,secondary|secondary,primary)$/;
		usleep(200_000);
	}
	Test::More::diag("formation $formation after $seconds s: $states");
	return 0;
}

sub stop_load
{
	my ($l) = @_;
	write_file($l->{stop}, '');
	$_->finish for @{ $l->{procs} };
	return;
}

# Drain what is left (the consumers' transaction, per partition, until a
# round brings nothing), then compare the effects on SHARDS (connection
# strings) with what the producers saw acknowledged.  Effects of keys
# outside the load (probes) are left out.  Returns (sent, lost, duplicated,
# reordered, { key => effects } of the other keys).
sub drain_and_check
{
	my ($l, @shards) = @_;
	for my $round (1 .. 10)
	{
		my $n = 0;
		for my $part (0 .. $l->{partitions} - 1)
		{
			my $conn = psql($l->{router}, "SELECT conninfo FROM deliver_cluster.partition_conninfo('$l->{queue}', $part)");
			$n += psql($conn, consume_sql($l->{queue}, $part, 100, '2 seconds'));
		}
		last if $n == 0;
	}
	my %load_key = map { $_ => 1 } map { @$_ } @{ $l->{producers} };
	my %sent;
	$sent{"$_->[1] $_->[2]"} = $_->[3] for grep { $_->[0] eq 'sent' } sent_lines($l);
	my (%applied, %by_key, %other);
	for my $s (@shards)
	{
		for (split /\n/, psql($s, q{SELECT k || ' ' || s || ' ' || extract(epoch FROM at) FROM effects}))
		{
			my ($k, $sq, $at) = split / /;
			if (!$load_key{$k}) { $other{$k}++; next; }
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
	return (scalar(keys %sent), $lost, $dup, $reordered, \%other);
}

1;
