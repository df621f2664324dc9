# The cluster through its HTTP gateway: scripts/cluster up starts deliverd
# in cluster mode (the AddressSanitizer build here) next to a
# pg_auto_failover monitor, two shards of a primary and a synchronous
# standby, and the router.  A FIFO at-least-once queue in 4 partitions;
# producers send through deliverd with ordering and idempotency keys (a
# send that failed, or whose outcome is in doubt, is sent again with the
# same key until it succeeds); consumers receive through deliverd (spread
# over the partitions, long polls) and ack after processing, one by one or
# in batches.  Under that load:
#   1. shard 0's primary is frozen (SIGSTOP of its keeper and postgres) for
#      a little longer than the gateway's statement_timeout: requests to it
#      end by their deadline, shard 1 serves throughout;
#   2. kill -9 of shard 0's primary (its keeper and every postgres
#      process): sends to shard 0 resume through the gateway once its
#      standby is promoted, shard 1 serves throughout;
#   3. the router stopped for 4 s: sends and receives go on with the map
#      deliverd holds, administration answers 503, /readyz stays ready;
#   4. a partition moved from shard 1 to shard 0 (move_partition): deliverd
#      follows the map, its keys' messages keep their order.
# Then, from the clients' own records: nothing sent is lost; a message is
# delivered again only when no ack of it had succeeded (at-least-once over
# HTTP); per key, acks follow the send order (FIFO); every id's partition
# is deliver_cluster.partition_of of its key; no request outlived its
# deadline.  Hostile delivery ids get 4xx answers, never 5xx, and the
# sanitizers report nothing.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest qw(write_file);
use DeliverHistory qw(write_result);
use ClusterTest qw(cluster cluster_start cluster_stop node_pids primary_node);

my $dir = PostgreSQL::Test::Utils::tempdir();
# the gateway's deadlines (DELIVERD_<KEY> reaches it through scripts/cluster)
my ($stmt_timeout, $req_timeout, $wait) = (2, 5, 1);
my %env;
$env{DELIVERD_STATEMENT_TIMEOUT} = $stmt_timeout;
$env{DELIVERD_REQUEST_TIMEOUT} = $req_timeout;
$env{DELIVERD_MAX_WAIT} = 5;
$env{DELIVERD_SHARD_POOL_SIZE} = 6;
$env{DELIVERD_POOL_SIZE} = 4;

# ports from 31000 on, away from 030's and 055's ranges
my $c = cluster_start(dir => $dir, base => 31000, bases => 8, gateway => 1, env => \%env);
my $base = $c->{base};
like($c->{up_out}, qr{gateway:\s+$c->{gw}}, 'scripts/cluster conninfo names the gateway');
my (undef, $token) = cluster('token', 'postgres', 3600);
chomp $token;

my $router = $c->{router};
my @shard = @{ $c->{shards} };

sub psql
{
	my ($conn, $sql, %opt) = @_;
	my ($o, $e) = ('', '');
	my $r = IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $conn, '-c', $sql ],
		'>', \$o, '2>', \$e);
	chomp $o;
	die "psql failed: $e" if !$r && !$opt{may_fail};
	return $o;
}

my $json = JSON::PP->new->canonical;
my $gw = $c->{gw};
my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 1,
	default_headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/json' });
sub req
{
	my ($method, $path, $body, %h) = @_;
	my $r = $http->request($method, "$gw$path",
		{ headers => \%h, defined $body ? (content => ref $body ? $json->encode($body) : $body) : () });
	my $d = eval { $json->decode($r->{content}) };
	return ($r->{status}, $d, $r);
}

my ($st, $bd) = req('POST', '/v1/queues',
	{ name => 'gq', fifo => JSON::PP::true, visibility_timeout => 4, retry_base => 0 });
is($st, 201, 'a FIFO queue made through the gateway (deliver_cluster.create_queue)') or diag explain $bd;
is($bd->{partitions}, 4, 'in 4 partitions');
($st, $bd) = req('GET', '/readyz');
is($st, 200, '/readyz: the map is read') or diag explain $bd;
is_deeply($bd->{shards}, { shard0 => 'up', shard1 => 'up' }, '/readyz: both shards up');

my %shard_of_part = map { split /\|/ } split /\n/, psql($router,
	q{SELECT partition || '|' || shard FROM deliver_cluster.partition_map() WHERE state = 'active'});
my %part_of = map { split /\|/ } split /\n/, psql($router,
	join(' UNION ALL ', map { "SELECT 'k$_' || '|' || deliver_cluster.partition_of('k$_')" } 0 .. 99));
my @on = (
	[ grep { $shard_of_part{ $part_of{$_} } eq 'shard0' } sort keys %part_of ],
	[ grep { $shard_of_part{ $part_of{$_} } eq 'shard1' } sort keys %part_of ]);
# producers 0 and 1 send to shard 0, 2 and 3 to shard 1, 4 keys each
my @keys_of = map { my $s = $_ < 2 ? 0 : 1; [ splice(@{ $on[$s] }, 0, 4) ] } 0 .. 3;
my %shard_of_key = map { my $p = $_; map { $_ => ($p < 2 ? 'shard0' : 'shard1') } @{ $keys_of[$p] } } 0 .. 3;
# and a producer of batches, two keys on each shard
my @batch_keys = (splice(@{ $on[0] }, 0, 2), splice(@{ $on[1] }, 0, 2));
$shard_of_key{$_} = $shard_of_part{ $part_of{$_} } for @batch_keys;

# the partition of keys of every kind (UTF-8 ones included) is the router's
my @probe = ((map { "probe-$_" } 1 .. 40), "cl\x{e9}", "\x{dc}n\x{ef}c\x{f6}d\x{e9}", "\x{65e5}\x{672c}\x{8a9e}",
	"emoji \x{1F600}", '', ' ', 'a' x 500, '"quoted"', 'back\\slash', "tab\tkey");
my $jsonu = JSON::PP->new->utf8->canonical;
my $probe_q = "SELECT string_agg(deliver_cluster.partition_of(k)::text, ',' ORDER BY i) FROM jsonb_array_elements_text("
  . "convert_from(decode('" . unpack('H*', $jsonu->encode(\@probe)) . "', 'hex'), 'UTF8')::jsonb) WITH ORDINALITY u(k, i)";
my @want = split /,/, psql($router, $probe_q);
($st, $bd) = req('POST', '/v1/queues', { name => 'hq' });
is($st, 201, 'a second queue');
my $r = $http->request('POST', "$gw/v1/queues/hq/messages/batch", { content => $jsonu->encode(
	{ messages => [ map { { payload => $_, ordering_key => $probe[$_] } } 0 .. $#probe ] }) });
my $ids = eval { $json->decode($r->{content})->{message_ids} } // [];
is($r->{status}, 201, 'a batch of ' . scalar(@probe) . ' messages over both shards');
is(join(',', map { (split /:/)[0] } @$ids), join(',', @want),
	'each in the partition deliver_cluster.partition_of gives its key (UTF-8, empty, long, quoted keys)');
my (undef, $rb) = req('POST', '/v1/queues/hq/receive?max=100');
is(join(',', sort { $a <=> $b } map { $_->{payload} } @{ $rb // [] }), join(',', 0 .. $#probe),
	'one receive gets them all back, from the four partitions');
# (acked: a partition moves once every queue's part of it is drained, below)
my ($ast) = req('POST', '/v1/queues/hq/ack', { delivery_ids => [ map { $_->{delivery_id} } @{ $rb // [] } ] });
is($ast, 200, 'and one ack batch acks them all');

# ---- the clients: forked processes writing what returned ---------------
my $stop = "$dir/stop";
my $stop_producers = "$dir/stop_producers";
my (@producers, @consumers);
sub client
{
	my ($name, $body) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid) { push @{ $name =~ /^producer/ ? \@producers : \@consumers }, $pid; return; }
	my $c = HTTP::Tiny->new(timeout => 30, keep_alive => 1,
		default_headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/json' });
	open my $h, '>>', "$dir/$name.hist" or POSIX::_exit(2);
	$h->autoflush(1);
	eval { $body->($c, $h); 1 } or print $h "died\t$@\n";
	POSIX::_exit(0);
}
sub code_of { my ($r) = @_; my $d = eval { $json->decode($r->{content}) }; return ref $d eq 'HASH' ? ($d->{code} // '') : ''; }

for my $p (0 .. 3)
{
	client("producer$p", sub {
		my ($c, $h) = @_;
		my $seq = 0;
		while (!-e $stop_producers)
		{
			my $key = $keys_of[$p][ $seq % 4 ];
			my $t1 = time();
			my $r = $c->post("$gw/v1/queues/gq/messages", { headers => { 'Idempotency-Key' => "$key:$seq" },
				content => $json->encode({ payload => { k => $key, s => $seq }, ordering_key => $key }) });
			my $t2 = time();
			my $d = $r->{status} == 201 ? eval { $json->decode($r->{content}) } : undef;
			my $id = $d ? $d->{message_id} : '';
			printf $h "send\t%d\t%s\t%d\t%s\t%.6f\t%.6f\t%s\n", $r->{status}, $key, $seq, $id, $t1, $t2, code_of($r);
			if ($id) { $seq++; usleep(20_000); }
			else { usleep(100_000); }    # the same seq again, with the same idempotency key
		}
	});
}
# batches of 8: two messages of each key, a failed part sent again with the
# same idempotency keys (a key's messages share a part: all or none sent)
client('producer-batch', sub {
	my ($c, $h) = @_;
	my %next = map { $_ => 0 } @batch_keys;
	while (!-e $stop_producers)
	{
		my @m = map { my $k = $_; map { [ $k, $next{$k} + $_ ] } 0, 1 } @batch_keys;
		my $t1 = time();
		my $r = $c->post("$gw/v1/queues/gq/messages/batch", { content => $json->encode({ messages => [
			map { { payload => { k => $_->[0], s => $_->[1] }, ordering_key => $_->[0],
					idempotency_key => "$_->[0]:$_->[1]" } } @m ] }) });
		my $t2 = time();
		my $d = eval { $json->decode($r->{content}) };
		$d = {} unless ref $d eq 'HASH';
		my %doubt = map { $_ => 1 } @{ $d->{in_doubt} // [] };
		for my $i (0 .. $#m)
		{
			my $id = $d->{message_ids} ? $d->{message_ids}[$i] // '' : '';
			printf $h "send\t%d\t%s\t%d\t%s\t%.6f\t%.6f\t%s\tbatch\n", $id ? 201 : $r->{status}, $m[$i][0], $m[$i][1],
			  $id, $t1, $t2, $doubt{$i} || (($d->{code} // '') eq 'in_doubt' && !$d->{message_ids}) ? 'in_doubt' : '';
		}
		for my $i (0 .. $#m) { $next{ $m[$i][0] } = $m[$i][1] + 1 if $d->{message_ids} && $d->{message_ids}[$i]; }
		usleep($r->{status} == 201 ? 50_000 : 100_000);
	}
});
for my $cn (0 .. 2)
{
	client("consumer$cn", sub {
		my ($c, $h) = @_;
		my $n = 0;
		while (!-e $stop)
		{
			my $t1 = time();
			my $r = $c->post("$gw/v1/queues/gq/receive?max=5&wait=$wait");
			my $t2 = time();
			my $msgs = $r->{status} == 200 ? eval { $json->decode($r->{content}) } : undef;
			printf $h "rreq\t%d\t%.6f\t%.6f\t%d\t%s\n", $r->{status}, $t1, $t2, $msgs ? scalar(@$msgs) : 0,
			  $r->{headers}{'deliver-unavailable-partitions'} // '';
			if (!$msgs) { usleep(100_000); next; }
			for my $m (@$msgs)
			{
				printf $h "recv\t%s\t%s\t%s\t%d\t%.6f\t%.6f\n", $m->{message_id}, $m->{delivery_id},
				  $m->{payload}{k}, $m->{payload}{s}, $t1, $t2;
			}
			# "processing", then the acks: one by one, or one batch
			if ($n++ % 2)
			{
				for my $m (@$msgs)
				{
					my $a1 = time();
					my $ar = $c->post("$gw/v1/queues/gq/deliveries/$m->{delivery_id}/ack");
					my $a2 = time();
					my $okk = $ar->{status} == 200 && $ar->{content} =~ /"acked"\s*:\s*true/ ? 1 : 0;
					printf $h "ack\t%s\t%d\t%d\t%.6f\t%.6f\t%s\n", $m->{message_id}, $ar->{status}, $okk, $a1, $a2, code_of($ar);
				}
			}
			elsif (@$msgs)
			{
				my $a1 = time();
				my $ar = $c->post("$gw/v1/queues/gq/ack",
					{ content => $json->encode({ delivery_ids => [ map { $_->{delivery_id} } @$msgs ] }) });
				my $a2 = time();
				my $d = eval { $json->decode($ar->{content}) };
				$d = {} unless ref $d eq 'HASH';
				# an error names the ids of the parts that did not commit
				# (not_acked) or may have (in_doubt); without those lists
				# no part committed
				my $partial = exists $d->{not_acked};
				my %failed = map { $_ => 1 } @{ $d->{not_acked} // [] };
				my %doubt = map { $_ => 1 } @{ $d->{in_doubt} // [] };
				for my $m (@$msgs)
				{
					my $did = $m->{delivery_id};
					my $okk = $ar->{status} == 200 || ($partial && !$failed{$did} && !$doubt{$did}) ? 1 : 0;
					my $code = $doubt{$did} || (!$partial && ($d->{code} // '') eq 'in_doubt') ? 'in_doubt' : '';
					printf $h "ack\t%s\t%d\t%d\t%.6f\t%.6f\t%s\n", $m->{message_id}, $ar->{status}, $okk, $a1, $a2, $code;
				}
			}
		}
	});
}

sub lines
{
	my ($prefix) = @_;
	my @l;
	for my $f (glob("$dir/$prefix*.hist"))
	{
		open my $fh, '<', $f or next;
		push @l, map { chomp; [ split /\t/, $_, -1 ] } <$fh>;
		close $fh;
	}
	return @l;
}
# (single sends: a batch's time is that of its slowest part)
sub shard_sends_ok
{
	my ($s, $from, $to) = @_;
	return grep { $_->[0] eq 'send' && $_->[1] == 201 && $shard_of_key{ $_->[2] } eq $s && $_->[5] >= $from
		  && $_->[6] <= $to && ($_->[8] // '') ne 'batch' } lines('producer');
}
sub batch_parts_ok
{
	my ($s, $from, $to) = @_;
	my %req = map { $_->[5] => 1 } grep { $_->[0] eq 'send' && $_->[1] == 201 && $shard_of_key{ $_->[2] } eq $s
		  && $_->[5] >= $from && $_->[6] <= $to && ($_->[8] // '') eq 'batch' } lines('producer');
	return scalar(keys %req);
}
sub shard_receives
{
	my ($s, $from, $to) = @_;
	return grep { $_->[0] eq 'recv' && $shard_of_key{ $_->[3] } eq $s && $_->[5] >= $from && $_->[6] <= $to }
	  lines('consumer');
}
sub p99 { my @l = sort { $a <=> $b } @_; return @l ? $l[ int(0.99 * $#l) ] : 0; }

# the load runs through the gateway: more than 10 sends to shard 0
# returned (waited for up to a minute, as 030)
my $sent = 0;
for (1 .. 600)
{
	$sent = shard_sends_ok('shard0', 0, 9e9);
	last if $sent > 10;
	usleep(100_000);
}
cmp_ok($sent, '>', 10, 'the load runs through the gateway');

# ---- 1. shard 0's primary frozen a little past statement_timeout --------
my $victim = primary_node($c, 0);
my @stopped = node_pids(0, $victim);
my $freeze = $stmt_timeout + 1;
my $t_freeze = time();
kill 'STOP', @stopped;
sleep $freeze;
kill 'CONT', @stopped;
my $t_thaw = time();
note(sprintf('froze shard 0 node %d for %.1f s', $victim, $t_thaw - $t_freeze));
my $resumed;
for (1 .. 300)
{
	($resumed) = sort { $a <=> $b } map { $_->[6] } shard_sends_ok('shard0', $t_freeze, 9e9);
	last if $resumed && $resumed > $t_thaw;
	$resumed = undef;
	usleep(100_000);
}
ok($resumed, sprintf('sends to shard 0 succeed again after the freeze (%.1f s after it began)',
	($resumed // 0) - $t_freeze));
my @s1 = shard_sends_ok('shard1', $t_freeze, $t_thaw);
cmp_ok(scalar(@s1), '>', 0, sprintf('shard 1 served during the freeze: %d sends, p99 %.0f ms',
	scalar(@s1), 1000 * p99(map { $_->[6] - $_->[5] } @s1)));
my $frozen_503 = grep { $_->[0] eq 'send' && $_->[1] == 503 && $_->[5] >= $t_freeze && $_->[5] < $t_thaw }
  lines('producer');
note("sends answered 503 during the freeze: $frozen_503");
sleep 2;

# ---- 2. kill -9 of shard 0's primary ------------------------------------
# (once its formation has a primary and a secondary again, should the
# freeze have made the monitor fail it over)
my $formation_ok = 0;
for (1 .. 300)
{
	my $states = psql("host=127.0.0.1 port=$base dbname=pg_auto_failover user=postgres",
		"SELECT string_agg(reportedstate::text, ',' ORDER BY nodeid) FROM pgautofailover.node WHERE formationid = 'shard0'",
		may_fail => 1);
	if ($states =~ /^(primary,secondary|secondary,primary)$/) { $formation_ok = 1; last; }
	usleep(200_000);
}
ok($formation_ok, 'shard 0 has a primary and a synchronous standby');
$victim = primary_node($c, 0);
my @killed = node_pids(0, $victim);
my $t_kill = time();
kill 'KILL', @killed;
note("killed shard 0 node $victim (pids @killed)");
$resumed = undef;
for (1 .. 600)
{
	($resumed) = sort { $a <=> $b } map { $_->[6] } shard_sends_ok('shard0', $t_kill, 9e9);
	last if $resumed;
	usleep(100_000);
}
my $outage = $resumed ? $resumed - $t_kill : 999;
cmp_ok($outage, '<', 30, sprintf('kill -9 of shard 0\'s primary: sends to it through the gateway resume after %.1f s',
	$outage));
# shard 1 meanwhile: over the outage, and at least 5 s of it (a window
# of a moment says nothing)
my $t_seen = $t_kill + ($outage > 5 ? $outage : 5);
note(sprintf('shard 1 is looked at from the kill to %.1f s after it', $t_seen - $t_kill));
@s1 = shard_sends_ok('shard1', $t_kill, $t_seen);
my @r1 = shard_receives('shard1', $t_kill, $t_seen);
cmp_ok(scalar(@s1), '>', 0, sprintf('shard 1 served sends throughout: %d, p99 %.0f ms',
	scalar(@s1), 1000 * p99(map { $_->[6] - $_->[5] } @s1)));
cmp_ok(scalar(@r1), '>', 0, sprintf('and receives: %d messages of shard 1 received', scalar(@r1)));
my $parts1 = batch_parts_ok('shard1', $t_kill, $t_seen);
cmp_ok($parts1, '>', 0, "and batches: $parts1 batches had their shard 1 part sent");
my $skipped = grep { $_->[0] eq 'rreq' && $_->[5] ne '' && $_->[2] >= $t_kill } lines('consumer');
note("receives that skipped unavailable partitions (Deliver-Unavailable-Partitions): $skipped");
# the next sections need shard 0 served again: the gateway connected to its
# new primary, and a send to it started now succeeds
my $t_check = time();
my $serving;
for (1 .. 600)
{
	$serving = ($http->get("$gw/metrics")->{content} =~ /deliverd_shard_up\{shard="shard0"\} 1/)
	  && shard_sends_ok('shard0', $t_check, 9e9);
	last if $serving;
	usleep(100_000);
}
ok($serving, sprintf('shard 0 is served through the gateway again (%.1f s after the kill)', time() - $t_kill));
sleep 3;

# ---- 3. the router down: messages go on, administration waits ----------
my $router_dir = "$dir/cluster/router";
my ($o1, $e1, $o2, $e2) = ('', '', '', '');
my $t_rdown = time();
ok(IPC::Run::run([ 'pg_ctl', '-D', $router_dir, '-m', 'immediate', '-w', 'stop' ], '>', \$o1, '2>', \$e1),
	'the router is stopped (immediate)') or diag($e1);
sleep 2;
my ($rst) = req('GET', '/v1/queues');
is($rst, 503, 'while the router is down, administration answers 503');
my ($yst, $ybd) = req('GET', '/readyz');
is($yst, 200, '/readyz stays ready: messages do not need the router') or diag explain $ybd;
is(ref $ybd eq 'HASH' ? $ybd->{router} : '', 'down', '/readyz reports the router down');
sleep 2;
my $t_rup = time();
ok(IPC::Run::run([ 'pg_ctl', '-D', $router_dir, '-l', "$router_dir.log", '-w', 'start' ], '>', \$o2, '2>', \$e2),
	'the router is started again') or diag($e2);
for my $k (0, 1)
{
	my @s = shard_sends_ok("shard$k", $t_rdown + 0.5, $t_rup);
	cmp_ok(scalar(@s), '>', 0, sprintf('router down: sends to shard %d go on (%d, p99 %.0f ms)',
		$k, scalar(@s), 1000 * p99(map { $_->[6] - $_->[5] } @s)));
}
my @rr = (shard_receives('shard0', $t_rdown + 0.5, $t_rup), shard_receives('shard1', $t_rdown + 0.5, $t_rup));
cmp_ok(scalar(@rr), '>', 0, sprintf('router down: receives go on (%d messages)', scalar(@rr)));
my $back;
for (1 .. 100)
{
	($rst) = req('GET', '/v1/queues');
	if ($rst == 200) { $back = time() - $t_rup; last; }
	usleep(100_000);
}
ok(defined $back, sprintf('administration answers again %.1f s after the router is back', $back // 0));

# ---- 4. a partition moved from shard 1 to shard 0 under load -----------
# (deliverd learns it from the shards: the old one refuses new messages of
# the partition, the drained one refuses receives, and it reads the map again)
my $mp = $part_of{ $keys_of[2][0] };
my @mkeys = grep { $part_of{$_} == $mp } map { @$_ } @keys_of, \@batch_keys;
my $t_move = time();
psql($router, "CALL deliver_cluster.move_partition($mp, 'shard0', '60 seconds')", may_fail => 1);
my $t_moved = time();
is(psql($router, "SELECT string_agg(shard || ':' || state, ',' ORDER BY epoch) FROM deliver_cluster.partition_map() WHERE partition = $mp"),
	'shard1:retired,shard0:active',
	sprintf('partition %d moved from shard 1 to shard 0 under load through deliverd (%.1f s, the drain included)', $mp,
		$t_moved - $t_move));
my $new_epoch = psql($router, "SELECT max(epoch) FROM deliver_cluster.partition_map() WHERE partition = $mp");
my %mkey = map { $_ => 1 } @mkeys;
my @after;
for (1 .. 100)
{
	@after = grep { $_->[0] eq 'send' && $_->[1] == 201 && $mkey{ $_->[2] } && $_->[5] > $t_moved } lines('producer');
	last if @after;
	usleep(100_000);
}
cmp_ok(scalar(@after), '>', 0, sprintf('sends of its keys (%s) go on after the move: %d', join(',', @mkeys), scalar(@after)));
is(scalar(grep { (split /:/, $_->[4])[1] != $new_epoch } @after), 0,
	"and land in its new placement (epoch $new_epoch, on shard 0)");
$shard_of_key{$_} = 'shard0' for @mkeys;
sleep 2;

# ---- stop the producers, let the consumers drain ------------------------
write_file($stop_producers, '');
waitpid($_, 0) for @producers;
my %sent;    # "key seq" => id
my $deadline = time() + 60;
$sent{"$_->[2] $_->[3]"} = $_->[4] for grep { $_->[0] eq 'send' && $_->[1] == 201 } lines('producer');
# the queue's depth and leases, summed over its partitions and groups
sub queue_left
{
	my ($s, $rows) = req('GET', '/v1/queues/gq/metrics');
	return 9e9 if $s != 200;
	my $n = 0;
	$n += $_->{depth} + $_->{in_flight} + $_->{delayed} + $_->{dead_letters} for @$rows;
	return $n;
}
# until every message sent was acked, or its ack is in doubt (its reply
# was lost) and nothing is left in the queue
while (time() < $deadline)
{
	my %acked = map { $_->[1] => 1 } grep { $_->[0] eq 'ack' && ($_->[3] || $_->[6] eq 'in_doubt') } lines('consumer');
	last if !grep({ !$acked{$_} } values %sent) && queue_left() == 0;
	usleep(250_000);
}
write_file($stop, '');
waitpid($_, 0) for @consumers;
# what is left: received and acked here
my $quiet = 0;
while ($quiet < 3 && time() < $deadline + 30)
{
	my ($s, $msgs) = req('POST', "/v1/queues/gq/receive?max=100&wait=1");
	if ($s != 200 || !@$msgs) { $quiet++; next; }
	$quiet = 0;
	my ($as) = req('POST', '/v1/queues/gq/ack', { delivery_ids => [ map { $_->{delivery_id} } @$msgs ] });
	open my $h, '>>', "$dir/consumer-drain.hist" or die $!;
	printf $h "recv\t%s\t%s\t%s\t%d\t%.6f\t%.6f\n", $_->{message_id}, $_->{delivery_id}, $_->{payload}{k},
	  $_->{payload}{s}, time(), time() for @$msgs;
	printf $h "ack\t%s\t%d\t%d\t%.6f\t%.6f\t\n", $_->{message_id}, $as, $as == 200 ? 1 : 0, time(), time() for @$msgs;
	close $h;
}

# ---- the checks ---------------------------------------------------------
my @prod = lines('producer');
my @cons = lines('consumer');
is(scalar(grep { $_->[0] eq 'died' } @prod, @cons), 0, 'no client died');
my (%ack_ok, %ack_doubt, %recv_of);
for my $l (@cons)
{
	if ($l->[0] eq 'recv') { push @{ $recv_of{ $l->[1] } }, [ $l->[5], $l->[6] ]; }
	elsif ($l->[0] eq 'ack' && $l->[3]) { push @{ $ack_ok{ $l->[1] } }, [ $l->[4], $l->[5] ]; }
	elsif ($l->[0] eq 'ack' && $l->[6] eq 'in_doubt') { $ack_doubt{ $l->[1] } = 1; }
}
# a message without a successful ack whose ack was in doubt was acked when
# that ack committed: then it did not come back, and the queue is empty
my $acked_in_doubt = grep { !$ack_ok{$_} && $ack_doubt{$_} } values %sent;
my $lost = grep { !$ack_ok{$_} && !$ack_doubt{$_} } values %sent;
my $left = queue_left();
my $twice = grep { @{ $ack_ok{$_} } > 1 } keys %ack_ok;
# a delivery after an ack of the message had succeeded: a duplicate, not a redelivery
my $after_ack = 0;
for my $id (keys %ack_ok)
{
	my ($first_ack_end) = sort { $a <=> $b } map { $_->[1] } @{ $ack_ok{$id} };
	$after_ack += grep { $_->[0] > $first_ack_end } @{ $recv_of{$id} // [] };
}
my $redelivered = grep { @{ $recv_of{$_} } > 1 } keys %recv_of;
# FIFO per key: a later message's ack cannot have ended before an earlier one's began
my %by_key;
for my $ks (keys %sent)
{
	my ($k, $s) = split / /, $ks;
	my $acks = $ack_ok{ $sent{$ks} } or next;
	push @{ $by_key{$k} }, [ $s, (sort { $a->[0] <=> $b->[0] } @$acks)[0] ];
}
my $reordered = 0;
for my $k (keys %by_key)
{
	my @s = sort { $a->[0] <=> $b->[0] } @{ $by_key{$k} };
	for my $i (1 .. $#s) { $reordered++ if $s[$i][1][1] < $s[ $i - 1 ][1][0]; }
}
# each id's partition is the router's partition of its key
my $misplaced = grep { my ($k) = split / /; (split /:/, $sent{$_})[0] != $part_of{$k} } keys %sent;
# one id per key and seq (a send sent again with its idempotency key got the first one's id)
my %ids_of;
$ids_of{"$_->[2] $_->[3]"}{ $_->[4] } = 1 for grep { $_->[0] eq 'send' && $_->[1] == 201 } @prod;
my $split_sends = grep { keys %{ $ids_of{$_} } > 1 } keys %ids_of;
my $in_doubt = grep { $_->[0] eq 'send' && $_->[7] eq 'in_doubt' } @prod;
# deadlines: every request ended within request_timeout (+ its wait for receives)
my ($over, $longest, $longest_what) = (-9e9, 0, '');
for my $l (@prod, @cons)
{
	my ($d, $limit);
	if ($l->[0] eq 'send') { $d = $l->[6] - $l->[5]; $limit = $req_timeout; }
	elsif ($l->[0] eq 'rreq') { $d = $l->[3] - $l->[2]; $limit = $req_timeout + $wait; }
	elsif ($l->[0] eq 'ack') { $d = $l->[5] - $l->[4]; $limit = $req_timeout; }
	else { next; }
	$longest = $d if $d > $longest;
	($over, $longest_what) = ($d - $limit, sprintf('a %s of %.2f s, deadline %d s', $l->[0], $d, $limit))
	  if $d - $limit > $over;
}
my $timeouts_599 = grep { ($_->[0] eq 'send' || $_->[0] eq 'rreq' || $_->[0] eq 'ack') && ($_->[1] // 0) == 599 }
  @prod, @cons;
my $sends = grep { $_->[0] eq 'send' } @prod;
my $rreqs = grep { $_->[0] eq 'rreq' } @cons;

cmp_ok(scalar(keys %sent), '>', 100, scalar(keys %sent) . " messages sent through the gateway ($sends send requests, "
	  . "$in_doubt answered in doubt; $rreqs receive requests)");
is($lost, 0, "no message lost: every one sent was acked ($acked_in_doubt by an ack answered in doubt)");
is($left, 0, 'nothing left in the queue (no message waiting, leased, delayed or dead): the acks in doubt committed');
is($twice, 0, 'no message acked twice');
is($after_ack, 0, "no message delivered again after an ack of it had succeeded ($redelivered redelivered before, "
	  . 'as at-least-once allows)');
is($reordered, 0, 'per key, acks follow the send order (FIFO)');
is($misplaced, 0, 'every message in the partition deliver_cluster.partition_of gives its key');
is($split_sends, 0, 'a send repeated with its idempotency key got the first id');
is($timeouts_599, 0, 'no client timed out waiting for the gateway');
cmp_ok($over, '<=', 0.5, sprintf('no request outlived its deadline (the longest %.2f s; the closest to its '
	  . 'deadline: %s)', $longest, $longest_what));

# ---- hostile ids: 4xx, never 5xx ----------------------------------------
for my $case (
	[ 'POST', '/v1/queues/gq/deliveries/abc/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/12345/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/1:2/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/1:2:3:4/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/0:1:-5/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/-1:1:5/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/0:0:1/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/4:1:1/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/99999:1:5/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/0:999:5/nack', {} ],
	[ 'POST', '/v1/queues/gq/deliveries/0:1:99999999999999999999/extend', { visibility_timeout => 5 } ],
	[ 'POST', '/v1/queues/gq/deliveries/0:1:123456789/ack' ],
	[ 'POST', '/v1/queues/gq/deliveries/0:1:123456789/extend', { visibility_timeout => 5 } ],
	[ 'POST', '/v1/queues/nope/deliveries/0:1:1/ack' ],
	[ 'POST', '/v1/queues/gq/ack', { delivery_ids => ['x'] } ],
	[ 'POST', '/v1/queues/gq/ack', { delivery_ids => [1] } ],
	[ 'POST', '/v1/queues/gq/ack', { delivery_ids => ['99:1:1'] } ],
	[ 'POST', '/v1/queues/gq/ack', { delivery_ids => 'x' } ],
	[ 'POST', '/v1/queues/gq/ack', '{"delivery_ids": [' ],
	[ 'POST', '/v1/queues/gq/messages', { payload => 1, ordering_key => 5 } ],
	[ 'POST', '/v1/queues/gq/messages/batch', { messages => [] } ],
	[ 'POST', '/v1/queues/nope/messages', { payload => 1 } ],
	[ 'POST', '/v1/queues/nope/receive' ],
	[ 'POST', '/v1/queues/gq/receive?max=0' ],
	[ 'POST', '/v1/queues/gq/receive?group=nogroup' ],
	[ 'POST', '/v1/queues/gq/redrive', { message_ids => ['bad'] } ])
{
	my ($method, $path, $body) = @$case;
	my ($s, $d) = req($method, $path, $body);
	ok($s >= 400 && $s < 500, "$method $path " . (defined $body ? (ref $body ? $json->encode($body) : $body) : '')
		  . ": $s " . (ref $d eq 'HASH' ? $d->{sqlstate} // '' : ''));
}
($st) = req('GET', '/healthz');
is($st, 200, 'the gateway is alive');
like($http->get("$gw/metrics")->{content}, qr/deliverd_shard_up\{shard="shard0"\} 1/, '/metrics: shard 0 is up again');

write_result('faults.tsv', 'cluster gateway: a shard\'s primary frozen, then killed (kill -9), under HTTP load', 1,
	scalar(keys %sent), $lost, $twice + $after_ack, $reordered,
	sprintf('sends to it resumed %.1f s after the kill; the other shard served %d sends and %d receives meanwhile; '
		  . '%d sends in doubt; the longest request %.1f s', $outage, scalar(@s1), scalar(@r1), $in_doubt, $longest));

my $asan = cluster_stop($c);
my $log = -f "$dir/cluster/deliverd.log" ? slurp_file("$dir/cluster/deliverd.log") : '';
is($asan, '', 'the sanitizers reported nothing');
note("gateway log:\n" . join("\n", grep { /unavailable|connected|partition map|in time/ } split /\n/, $log));
done_testing();
