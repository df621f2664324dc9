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
my $gw = gateway_start($node,
	tokens => { $app => 'app', $other => 'other' },
	conf => { router => "'" . $node->connstr('router') . "'", stream_wait => 1, max_wait => 5,
		map_refresh => 1 });
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
		stream_wait => 8, max_wait => 20, statement_timeout => 2, request_timeout => 3, map_refresh => 1 });
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
	$_->[0]->finish for @streams;
	ok(gw_streams_closed($busy), 'the streams closed');
	my $deadline = time() + 15;
	usleep(200_000) while long_polls() ne '0,0' && time() < $deadline;
	is(long_polls(), '0,0', 'and their long polls ended');
}
is(gw_stop($busy), 0, 'the second gateway stops');

is(gw_stop($gw), 0, 'the gateway stops');
is(gw_sanitizer_reports($gw), '', 'with no sanitizer reports');
done_testing();
