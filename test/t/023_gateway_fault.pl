# Fault row "the gateway loses its database and gets it back", under load:
# producers and consumers send, receive and ack through deliverd over HTTP
# while Postgres is stopped (fast) and restarted, then killed (immediate,
# as kill -9 of the postmaster) and restarted.  Each client records the
# operations that returned success in the DeliverHistory line format; after
# the load the queue is drained and check_history verifies that no
# acknowledged send is lost and nothing acked comes back.  The gateway must
# answer 503 while the database is away, keep running, and serve again
# once it is back.  Runs DELIVER_GW_FAULT_RUNS times (default 1); the row
# goes to faults.tsv (scripts/reliability-doc).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use DeliverHistory;
use GatewayTest;
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(usleep time);

my $runs = $ENV{DELIVER_GW_FAULT_RUNS} // 1;
my $node = deliver_node('gwfault');
my $super = query_one($node, 'SELECT current_user');
my $token = 'gateway-fault-token-0123456789';
my $gw = gateway_start($node, tokens => { $token => $super },
	conf => { pool_size => 4, max_wait => 2, access_log => 'off' });
my $dir = $node->basedir;
my $json = JSON::PP->new;

# a client process: loops until $stop_file exists, appends history lines
sub client
{
	my ($kind, $queue, $hist, $stop_file, $id) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	return $pid if $pid;
	my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 1,
		default_headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/json' });
	open my $h, '>>', $hist or POSIX::_exit(2);
	$h->autoflush(1);
	my $seq = 0;
	my $base = "$gw->{base}/v1/queues/$queue";
	while (!-e $stop_file)
	{
		if ($kind eq 'send')
		{
			$seq++;
			my $r = $http->post("$base/messages", { content => $json->encode({ payload => { p => $id, seq => $seq } }) });
			my $b = $r->{status} == 201 ? eval { $json->decode($r->{content}) } : undef;
			if ($b && $b->{message_id}) { print $h "0\tsend\t$b->{message_id}\tp$id\t$seq\n"; }
			else { usleep(50_000); }
		}
		else
		{
			my $r = $http->post("$base/receive?max=5&visibility_timeout=2");
			my $b = $r->{status} == 200 ? eval { $json->decode($r->{content}) } : undef;
			if (!$b) { usleep(50_000); next; }
			for my $m (@$b)
			{
				print $h "0\trecv\t$m->{message_id}\t$m->{delivery_id}\n";
				my $ar = $http->post("$base/deliveries/$m->{delivery_id}/ack", { content => '{}' });
				if ($ar->{status} == 200 && $ar->{content} =~ /"acked"\s*:\s*true/)
				{
					printf $h "0\tack\t%s\t%.6f\n", $m->{message_id}, time();
				}
				elsif ($ar->{status} == 503 || $ar->{status} == 599)
				{
					# the database or the connection went away during the
					# ack: it may have committed
					print $h "0\tacking\t$m->{message_id}\n";
				}
				else
				{
					# a definite answer (the lease expired: 409): not acked;
					# for the reader of the history only
					print $h "0\tackfail\t$m->{message_id}\t$ar->{status}\n";
				}
			}
		}
	}
	close $h;
	POSIX::_exit(0);
}

my %tot = (runs => 0, sent => 0, lost => 0, duplicated => 0, reordered => 0, ack_in_doubt => 0);
my ($saw503, $recovered) = (0, 0);
for my $run (1 .. $runs)
{
	my $queue = "gwf$run";
	$node->safe_psql('postgres', "SELECT deliver.create_queue('$queue', visibility_timeout => '2 s')");
	my $stop_file = "$dir/stop$run";
	my @hist = map { "$dir/hist$run.$_" } 1 .. 4;
	my @pids = map { client($_ <= 2 ? 'send' : 'recv', $queue, $hist[ $_ - 1 ], $stop_file, $_) } 1 .. 4;

	# the faults, at random moments: a fast stop, then an immediate one
	# (the postmaster and every backend killed without a shutdown)
	for my $mode ('fast', 'immediate')
	{
		usleep(1_500_000 + int(rand(1_500_000)));
		$node->stop($mode);
		my ($st) = gw_req($gw, 'POST', "/v1/queues/$queue/messages", token => $token, body => { payload => 'x' });
		$saw503++ if $st == 503;
		usleep(1_000_000 + int(rand(1_000_000)));
		$node->start;
		my $deadline = time() + 30;
		my $ok;
		do { ($ok) = gw_req($gw, 'GET', "/v1/queues/$queue", token => $token); usleep(100_000) if $ok != 200; }
		  while ($ok != 200 && time() < $deadline);
		$recovered++ if $ok == 200;
	}
	usleep(1_500_000);
	open my $s, '>', $stop_file or die $!;
	close $s;
	waitpid($_, 0) for @pids;

	my @drained = drain_queue($node, $queue, quiet => 4, seconds => 60);
	my $h = read_history(@hist);
	my $r = check_history(guarantee => 'at_least_once', history => $h, drained => \@drained);
	note("run $run: sent $r->{sent}, received " . scalar(@{ $h->{received} }) . ", acked "
		  . scalar(@{ $h->{acked} }) . ", drained " . scalar(@drained) . ", lost $r->{lost}, duplicated $r->{duplicated}");
	diag($_) for @{ $r->{details} };
	$tot{runs}++;
	$tot{$_} += $r->{$_} // 0 for qw(sent lost duplicated reordered ack_in_doubt);
	ok($r->{sent} > 0 && @{ $h->{acked} } > 0, "run $run: the clients sent and acked through the gateway");
}
is($tot{lost}, 0, 'no acknowledged send lost');
is($tot{duplicated}, 0, 'nothing acked came back, nothing acked twice');
is($saw503, 2 * $runs, 'with Postgres down the gateway answers 503');
is($recovered, 2 * $runs, 'and serves again once Postgres is back');
ok(gw_alive($gw), 'the gateway survived every outage');
my $notes = "fast stop and immediate stop (kill -9) each run; 503 while down, recovered";
$notes .= "; $tot{ack_in_doubt} acks in doubt" if $tot{ack_in_doubt};
write_result('faults.tsv', 'gateway loses its database (stop, kill -9) under HTTP load', $tot{runs}, $tot{sent},
	$tot{lost}, $tot{duplicated}, $tot{reordered}, $notes);
is(gw_stop($gw), 0, 'the gateway stops cleanly');
is(gw_sanitizer_reports($gw), '', 'no AddressSanitizer, LeakSanitizer or UBSan reports');
$node->stop;
done_testing();
