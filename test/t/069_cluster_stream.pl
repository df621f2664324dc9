# The event stream in cluster mode (GET /v1/queues/{queue}/stream through
# deliverd serving a cluster): its receives go round the queue's partitions
# on every shard, each event's id is the cluster's message id
# (partition:epoch:id), each message streamed is acked on the shard its
# delivery id names, and a client resuming with Last-Event-ID does not get
# that message again.  The shards check the token's role, as for every
# route.  One node holds two shard databases and the router database; no
# cluster is started.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest;
use GatewayTest;

my $json = JSON::PP->new;
my $node = router_shard_node('cluster_stream', shards => 2, partitions => 4,
	before => 'CREATE ROLE app NOLOGIN; CREATE ROLE other NOLOGIN;');
$node->safe_psql('router', q{
    SELECT deliver_cluster.create_queue('ev');
    SELECT deliver_cluster.grant_queue('ev', 'app', 'all');
});
router_door($node, $_) for qw(app other);
is($node->safe_psql('router', q{SELECT string_agg(DISTINCT s.name, ',' ORDER BY s.name)
    FROM deliver_cluster.placement x JOIN deliver_cluster.shard s USING (shard_id)}), 's0,s1',
	'the four partitions are on both shards');

my ($app, $other) = ('app-token-of-the-stream-test', 'other-token-of-the-stream-test');
my $secret = 'a-secret-of-the-cluster-stream-test-32b';
my $gw = gateway_start($node,
	tokens => { $app => 'app', $other => 'other' },
	conf => { router => "'" . $node->connstr('router') . "'", stream_wait => 1, max_wait => 5,
		map_refresh => 1 },
	env => { DELIVERD_JWT_SECRET => $secret });
sub req { return gw_req($gw, @_); }
sub stream
{
	my ($secs, @extra) = @_;
	return gw_stream($gw, '/v1/queues/ev/stream', $secs, $app, @extra);
}
# depth/in_flight/acked over every partition of ev (router SQL)
sub totals
{
	return $node->safe_psql('router', q{SELECT sum(depth) || '/' || sum(in_flight) || '/' || sum(acked_total)
        FROM deliver_cluster.metrics('ev')});
}
sub send_msgs
{
	my @keys = @_;
	return map {
		my ($st, $b) = req('POST', '/v1/queues/ev/messages', token => $app,
			body => { payload => { k => $_ }, ordering_key => $_ });
		$st == 201 ? $b->{message_id} : "HTTP $st";
	} @keys;
}

# ---- every partition's messages, once each, acked
my @sent = send_msgs(map { "key$_" } 1 .. 12);
is(scalar(grep { /^\d+:1:\d+$/ } @sent), 12, 'twelve messages sent through the gateway') or diag explain \@sent;
my %parts = map { (split /:/)[0] => 1 } @sent;
ok(keys(%parts) >= 3, 'they went to ' . keys(%parts) . ' of the 4 partitions');

my @ev = stream(4);
is_deeply([ sort map { $_->{id} } @ev ], [ sort @sent ], 'the stream sends each message once, id = its cluster id');
is(scalar(grep { $_->{event} ne 'message' } @ev), 0, 'and no error event');
my @data = map { $json->decode($_->{data}) } @ev;
is_deeply([ sort map { $_->{message_id} } @data ], [ sort map { $_->{id} } @ev ],
	'each event\'s data is the message, its message_id the event id');
is(scalar(grep { $_->{delivery_id} =~ /^\d+:1:\d+$/ && $_->{payload}{k} eq $_->{ordering_key} } @data), 12,
	'with its delivery id, payload and ordering key');
is(totals(), '0/0/12', 'every streamed message was acked, on both shards');

# ---- messages sent while the stream waits
{
	my $out = '';
	my $h = IPC::Run::start([ 'curl', '-sN', '-m', '5', '-H', "Authorization: Bearer $app",
		"$gw->{base}/v1/queues/ev/stream" ], '>', \$out);
	usleep(1_000_000);
	my @later = send_msgs('a', 'b', 'c');
	$h->finish;
	ok(gw_streams_closed($gw), 'the gateway closed the stream once the client left (deliverd_open_streams 0)');
	is_deeply([ sort map { $_->{id} } gw_sse_events($out) ], [ sort @later ],
		'messages sent while the stream waits come as they are sent');
	is(totals(), '0/0/15', 'and are acked');
}

# ---- resume: the message a client saw last comes back when its ack was
# lost (lease expired); resumed with Last-Event-ID, it is acked, not resent
my ($m1) = send_msgs('seen');
my ($st, $b) = req('POST', '/v1/queues/ev/receive?visibility_timeout=0.5', token => $app);
is($b->[0]{message_id}, $m1, 'a message leased and not acked');
usleep(1_200_000);
my ($m2) = send_msgs('new');
@ev = stream(3, '-H', "Last-Event-ID: $m1");
is_deeply([ map { $_->{id} } @ev ], [$m2], 'resumed with Last-Event-ID: the seen message is not sent again');
is(totals(), '0/0/17', 'and it is acked');

# ---- errors answer with a status, before the stream opens
gw_is_error([ req('GET', '/v1/queues/nosuch/stream', token => $app) ], 404, '42704',
	'stream of an unknown queue');
gw_is_error([ req('GET', '/v1/queues/ev/stream', token => $other) ], 403, '42501',
	'stream without the grant (the shards refuse the role)');
gw_is_error([ req('GET', '/v1/queues/ev/stream', token => $app, headers => { 'Last-Event-ID' => 'x' }) ],
	400, undef, 'stream with a bad Last-Event-ID');
gw_is_error([ req('GET', '/v1/queues/ev/stream', token => $app, headers => { 'Last-Event-ID' => '12' }) ],
	400, undef, 'stream with a single node\'s id as Last-Event-ID');
for my $bad ('1:1:' . ('9' x 30), '9999999:1:1', '1:1:-1', '1:1', ('1' x 5000))
{
	gw_is_error([ req('GET', '/v1/queues/ev/stream', token => $app, headers => { 'Last-Event-ID' => $bad }) ],
		400, undef, 'stream with Last-Event-ID ' . (length($bad) > 40 ? length($bad) . ' digits' : "'$bad'"));
}
gw_is_error([ req('GET', '/v1/queues/ev/stream?max=0', token => $app) ], 422, '22023',
	'stream with max=0 (the shards\' answer)');
is(totals(), '0/0/17', 'the refused streams took nothing');

# ---- an open stream rides out a time with no shard answering: its rounds
# send keep-alives, and once the shards are back it streams again
sub shards_open
{
	my ($allow) = @_;
	for my $db (qw(shard0 shard1))
	{
		$node->safe_psql('postgres', "ALTER DATABASE $db ALLOW_CONNECTIONS $allow");
		$node->safe_psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db'")
		  unless $allow eq 'true';
	}
}
# read what a started curl wrote, for SECS seconds
sub pump_for
{
	my ($h, $secs) = @_;
	my $end = time() + $secs;
	while (time() < $end)
	{
		$h->pump_nb;
		usleep(100_000);
	}
}
{
	my (undef, $m) = req('GET', '/metrics');
	is_deeply(gw_metric_type_repeats($m), [], 'cluster /metrics: each metric has one TYPE line');
	like($m, qr/^deliverd_connections_cut_total \d+$/m, 'cluster /metrics: the connections cut');
}
sub shards_up
{
	my (undef, $m) = req('GET', '/metrics');
	return scalar(() = $m =~ /^deliverd_shard_up\{shard="s[01]"\} 1$/mg);
}
{
	my $out = '';
	my $h = IPC::Run::start([ 'curl', '-sN', '-m', '25', '-H', "Authorization: Bearer $app",
		"$gw->{base}/v1/queues/ev/stream" ], '>', \$out);
	usleep(1_000_000);
	shards_open('false');
	my $deadline = time() + 10;
	usleep(100_000) while shards_up() > 0 && time() < $deadline;
	is(shards_up(), 0, 'both shards are unavailable to the gateway');
	pump_for($h, 0.2);
	my $mark = length $out;
	pump_for($h, 3);
	my $during = substr($out, $mark);
	like($during, qr/^: keep-alive$/m, 'the open stream sends keep-alives meanwhile');
	unlike($during, qr/^event: error$/m, 'and no error event');
	shards_open('true');
	$deadline = time() + 15;
	usleep(100_000) while shards_up() < 2 && time() < $deadline;
	is(shards_up(), 2, 'the shards are back');
	my @back = send_msgs('back1', 'back2', 'back3');
	my $got = 0;
	$deadline = time() + 10;
	while (time() < $deadline)
	{
		$h->pump_nb;
		my %ids = map { $_->{id} => 1 } gw_sse_events($out);
		$got = grep { $ids{$_} } @back;
		last if $got == @back;
		usleep(100_000);
	}
	is($got, 3, 'the same stream then sends what is sent to them');
	$h->kill_kill;
	ok(gw_streams_closed($gw), 'the stream closed once the client left');
	is(totals(), '0/0/20', 'and acked what it sent');
}

# ---- a token's expiry ends the stream in cluster mode too: what is sent
# after it stays for the next consumer
{
	my $exp = int(time()) + 3;
	my $tok = gw_jwt($secret, role => 'app', exp => $exp);
	my $out = '';
	my $h = IPC::Run::start([ 'curl', '-sN', '-m', '20', '-H', "Authorization: Bearer $tok",
		"$gw->{base}/v1/queues/ev/stream" ], '>', \$out);
	usleep(500_000);
	my ($before) = send_msgs('before-exp');
	usleep(100_000) while time() < $exp + 1;
	my ($after) = send_msgs('after-exp');
	$h->finish;
	is($h->result(0), 0, 'the stream of an expiring token is closed by the gateway (curl did not time out)');
	my @ev = gw_sse_events($out);
	is_deeply([ map { $_->{id} } grep { $_->{event} eq 'message' } @ev ], [$before],
		'it sent the message sent before the expiry, not the one after');
	is_deeply([ map { [ $_->{event}, eval { $json->decode($_->{data}) } ] } $ev[-1] // () ],
		[ [ 'end', { reason => 'token_expired' } ] ], 'its last event: end, reason token_expired');
	gw_streams_closed($gw);
	my ($st, $b) = req('POST', '/v1/queues/ev/receive?max=10', token => $app);
	is_deeply([ map { $_->{message_id} } @$b ], [$after], 'the one sent after is there for the next consumer');
	req('POST', '/v1/queues/ev/ack', token => $app, body => { delivery_ids => [ map { $_->{delivery_id} } @$b ] });
	is(totals(), '0/0/22', 'and acked');
}

# ---- a negative wait is refused: it would have put the request's deadline
# in the past, and the statement sent then would have "timed out" at once,
# marking each shard down
sub shard_timeouts
{
	my ($g) = @_;
	my (undef, $m) = gw_req($g, 'GET', '/metrics');
	return join ',', map { $m =~ /^deliverd_shard_timeouts_total\{shard="$_"\} (\d+)$/m ? $1 : '?' } qw(s0 s1);
}
{
	my $before = shard_timeouts($gw);
	gw_is_error([ req('POST', '/v1/queues/ev/receive?wait=-20', token => $app) ], 400, undef, 'receive with wait=-20');
	gw_is_error([ req('GET', '/v1/queues/ev/stream?wait=-20', token => $app) ], 400, undef, 'stream with wait=-20');
	is(shard_timeouts($gw), $before, 'no shard timed out');
	is(shards_up(), 2, 'both shards are up');
}

# ---- long polls leave each shard pool a connection for short requests.
# A second gateway, 2 connections per shard, long polls of 8 s slices: five
# streams on an empty queue would hold both connections of both shards for
# 8 s, and a send would get no connection before its 3 s deadline (503).
$node->safe_psql('router', q{
    SELECT deliver_cluster.create_queue('idle');
    SELECT deliver_cluster.grant_queue('idle', 'app', 'all');
});
my $busy = gateway_start($node, name => 'busy', tokens => { $app => 'app' },
	conf => { router => "'" . $node->connstr('router') . "'", shard_pool_size => 2, poll_slice => 8,
		stream_wait => 8, max_wait => 20, statement_timeout => 2, request_timeout => 3, map_refresh => 1,
		max_streams => 5, max_batch => 5 });
sub long_polls
{
	my (undef, $m) = gw_req($busy, 'GET', '/metrics');
	return join ',', map { $m =~ /^deliverd_shard_long_polls\{shard="$_"\} (\d+)$/m ? $1 : '?' } qw(s0 s1);
}
{
	my @streams = map {
		my $out = '';
		[ IPC::Run::start([ 'curl', '-sN', '-m', '6', '-H', "Authorization: Bearer $app",
			"$busy->{base}/v1/queues/idle/stream" ], '>', \$out), \$out ]
	} 1 .. 5;
	usleep(1_500_000);
	is(long_polls(), '1,1', 'five open streams: one long poll per shard (pool of 2), the others poll between naps');
	my @st = map {
		(gw_req($busy, 'POST', '/v1/queues/idle/messages', token => $app,
			body => { payload => { n => $_ }, ordering_key => "busy$_" }))[0]
	} 1 .. 8;
	is(join(',', @st), join(',', (201) x 8), 'sends to both shards answer meanwhile');
	gw_is_error([ gw_req($busy, 'GET', '/v1/queues/idle/stream', token => $app) ], 503, '53300',
		'a sixth stream, over max_streams (5)');
	$_->[0]->finish for @streams;
	ok(gw_streams_closed($busy), 'the streams closed');
	my $deadline = time() + 15;
	usleep(200_000) while long_polls() ne '0,0' && time() < $deadline;
	is(long_polls(), '0,0', 'and their long polls ended');
}

# ---- batches over max_batch (5) are refused before anything is sent
gw_is_error([ gw_req($busy, 'POST', '/v1/queues/idle/messages/batch', token => $app,
	body => { messages => [ map { { payload => $_ } } 1 .. 6 ] }) ], 413, '54000', 'a batch send of 6');
gw_is_error([ gw_req($busy, 'POST', '/v1/queues/idle/ack', token => $app,
	body => { delivery_ids => [ map { "0:1:$_" } 1 .. 6 ] }) ], 413, '54000', 'a batch ack of 6');
my ($bst) = gw_req($busy, 'POST', '/v1/queues/idle/messages/batch', token => $app,
	body => { messages => [ map { { payload => $_ } } 1 .. 5 ] });
is($bst, 201, 'a batch send of 5 is sent');

# ---- a body sent slowly, past request_timeout (3 s): the request ran out
# of time before its statement, which is not sent; no shard is marked down
{
	my $before = shard_timeouts($busy);
	my $body = '{"payload": {"slow": true}, "ordering_key": "slow"}';
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $busy->{port}, Proto => 'tcp')
	  or die "connect: $!";
	$sock->autoflush(1);
	print $sock "POST /v1/queues/idle/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $app\r\n"
	  . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n";
	my $t0 = time();
	for my $ch (split //, $body)
	{
		print $sock $ch;
		usleep(4_000_000 / length($body));
	}
	my $answer = do { local $/; <$sock> } // '';
	close $sock;
	like($answer, qr{^HTTP/1\.1 503}, sprintf('a body sent over %.1f s: 503', time() - $t0));
	like($answer, qr/"sqlstate":\s*"57014"/, 'SQLSTATE 57014: the request ran out of time before the database');
	is(shard_timeouts($busy), $before, 'no shard timed out');
	my (undef, $m) = gw_req($busy, 'GET', '/metrics');
	is(scalar(() = $m =~ /^deliverd_shard_up\{shard="s[01]"\} 1$/mg), 2, 'both shards are up');
	is($node->safe_psql('router', q{SELECT sum(sent_total) FROM deliver_cluster.metrics('idle')}), '13',
		'and the slow message was not sent (13 sent before it)');
}
is(gw_stop($busy), 0, 'the second gateway stops');

is(gw_stop($gw), 0, 'the gateway stops');
is(gw_sanitizer_reports($gw), '', 'with no sanitizer reports');
done_testing();
