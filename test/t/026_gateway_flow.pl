# deliverd's flow control routes: POST /v1/queues/{q}/groups/{g}/pause and
# /resume, PUT /v1/queues/{q}/groups/{g}/rate; their answers, their errors
# (bad bodies, unknown queues and groups, roles without the right,
# read-only tokens), a long poll woken by a resume, and openapi.json.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use GatewayTest;
use JSON::PP;
use IPC::Run;

my $node = deliver_node('gwflow');
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{
    CREATE ROLE app_reader NOLOGIN;
    SELECT deliver.create_queue('fc');
    SELECT deliver.grant_queue('fc', 'app_reader', 'all');
});
my $secret = 'test-secret-0123456789-0123456789-abcdef';
my $gw = gateway_start($node,
	tokens => { 'reader-token-0123456789' => 'app_reader', 'read-only-token-0123456789' => "$super read-only" },
	conf => { max_wait => 20 },
	env => { DELIVERD_JWT_SECRET => $secret });
ok(gw_alive($gw), 'deliverd starts');
my $admin = gw_jwt($secret, role => $super, exp => time() + 3600);
sub req { return gw_req($gw, @_); }

my ($st, $b);

# pause, receive nothing, resume, receive
($st, $b) = req('POST', '/v1/queues/fc/groups/default/pause', token => $admin);
is_deeply([ $st, $b ], [ 200, { paused => JSON::PP::true } ], 'pause: paused');
($st, $b) = req('POST', '/v1/queues/fc/groups/default/pause', token => $admin);
is_deeply([ $st, $b ], [ 200, { paused => JSON::PP::false } ], 'pause again: false, was paused');
($st, $b) = req('POST', '/v1/queues/fc/messages', token => $admin, body => { payload => { n => 1 } });
is($st, 201, 'send while paused');
($st, $b) = req('POST', '/v1/queues/fc/receive?max=10', token => $admin);
is_deeply([ $st, $b ], [ 200, [] ], 'a paused group receives nothing');
($st, $b) = req('GET', '/v1/queues/fc/groups', token => $admin);
is_deeply([ map { [ $_->{consumer_group}, $_->{paused} ? 1 : 0, $_->{rate_per_second}, $_->{rate_burst} ] } @$b ],
	[ [ 'default', 1, undef, undef ] ], 'the group list shows it paused, no rate');
($st, $b) = req('POST', '/v1/queues/fc/groups/default/resume', token => $admin);
is_deeply([ $st, $b ], [ 200, { resumed => JSON::PP::true } ], 'resume: resumed');
($st, $b) = req('POST', '/v1/queues/fc/groups/default/resume', token => $admin);
is_deeply([ $st, $b ], [ 200, { resumed => JSON::PP::false } ], 'resume again: false, was not paused');
($st, $b) = req('POST', '/v1/queues/fc/receive?max=10', token => $admin);
is_deeply([ $st, [ map { $_->{payload}{n} } @$b ] ], [ 200, [1] ], 'a resumed group receives the message');

# a long poll waiting on a paused group is woken by the resume
req('POST', '/v1/queues/fc/groups/default/pause', token => $admin);
req('POST', '/v1/queues/fc/messages', token => $admin, body => { payload => { n => 2 } });
{
	my $out = '';
	my $poll = IPC::Run::start([ 'curl', '-s', '-w', ' %{http_code}', '-X', 'POST',
		'-H', "Authorization: Bearer $admin", "$gw->{base}/v1/queues/fc/receive?max=10&wait=15" ],
		'>', \$out);
	ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity
	                      WHERE wait_event_type = 'Extension' AND query LIKE '%deliver.receive%'}, '1', 20),
		'the long poll sleeps on the paused group');
	($st, $b) = req('POST', '/v1/queues/fc/groups/default/resume', token => $admin);
	is($st, 200, 'resume while the poll waits');
	$poll->finish;
	like($out, qr/"n"\s*:\s*2.* 200$/, 'the resume wakes the poll, which returns the message');
}

# rate limit
($st, $b) = req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin,
	body => { per_second => 0.001, burst => 2 });
is_deeply([ $st, $b ], [ 200, { consumer_group => 'default', rate_per_second => 0.001, rate_burst => 2 } ],
	'set a rate with a burst');
req('POST', '/v1/queues/fc/messages/batch', token => $admin,
	body => { messages => [ map { { payload => { n => $_ } } } 3 .. 7 ] });
($st, $b) = req('POST', '/v1/queues/fc/receive?max=10', token => $admin);
is(scalar(@$b), 2, 'a receive gets the burst');
($st, $b) = req('POST', '/v1/queues/fc/receive?max=10', token => $admin);
is_deeply([ $st, $b ], [ 200, [] ], 'then nothing');
($st, $b) = req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { per_second => 2.5 });
is_deeply($b, { consumer_group => 'default', rate_per_second => 2.5, rate_burst => 3 },
	'the burst defaults to ceil(per_second)');
($st, $b) = req('GET', '/v1/queues/fc/groups', token => $admin);
is_deeply([ $b->[0]{rate_per_second}, $b->[0]{rate_burst} ], [ 2.5, 3 ], 'the group list shows the rate');
($st, $b) = req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { per_second => undef });
is_deeply([ $st, $b ], [ 200, { consumer_group => 'default', rate_per_second => undef, rate_burst => undef } ],
	'per_second null removes the limit');
($st, $b) = req('POST', '/v1/queues/fc/receive?max=10', token => $admin);
is(scalar(@$b), 3, 'without a limit the rest comes');

# errors
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { per_second => 0 }) ],
	422, '22023', 'rate 0');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { per_second => 1, burst => 0 }) ],
	422, '22023', 'burst 0');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { per_second => undef, burst => 3 }) ],
	422, '22023', 'a burst without a rate');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { burst => 3 }) ],
	400, '22P02', 'a body without per_second');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { per_second => 'fast' }) ],
	400, '22P02', 'a rate that is no number');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => { per_second => 1, burst => 1.5 }) ],
	400, '22P02', 'a burst that is no integer');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin) ], 400, undef, 'a rate without a body');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => $admin, body => '{"per_second": ') ],
	400, '22P02', 'a rate with a broken body');
gw_is_error([ req('POST', '/v1/queues/fc/groups/nosuch/pause', token => $admin) ], 404, '42704', 'pause an unknown group');
gw_is_error([ req('POST', '/v1/queues/nosuch/groups/default/resume', token => $admin) ], 404, '42704',
	'resume on an unknown queue');
gw_is_error([ req('PUT', '/v1/queues/nosuch/groups/default/rate', token => $admin, body => { per_second => 1 }) ],
	404, '42704', 'rate on an unknown queue');
gw_is_error([ req('POST', '/v1/queues/fc/groups/' . ('g' x 64) . '/pause', token => $admin) ], 400, '42602',
	'a group name too long');
gw_is_error([ req('POST', '/v1/queues/fc/groups/default/pause', token => 'reader-token-0123456789') ], 403, '42501',
	'a role with every right on the queue may not pause it (admin only)');
gw_is_error([ req('PUT', '/v1/queues/fc/groups/default/rate', token => 'reader-token-0123456789', body => { per_second => 1 }) ],
	403, '42501', 'nor set its rate');
gw_is_error([ req('POST', '/v1/queues/fc/groups/default/resume', token => 'read-only-token-0123456789') ], 403, '42501',
	'a read-only token may not resume');
($st) = req('GET', '/v1/queues/fc/groups/default/pause', token => $admin);
is($st, 405, 'GET on pause: 405');
($st) = req('POST', '/v1/queues/fc/groups/default/rate', token => $admin);
is($st, 405, 'POST on rate: 405');
($st) = req('POST', '/v1/queues/fc/groups/default/pause');
is($st, 401, 'pause without a token: 401');
is(query_one($node, q{SELECT paused FROM deliver.list_consumer_groups('fc')}), 'f',
	'none of the refused calls changed the group');

# FIFO key limit
$node->safe_psql('postgres', q{SELECT deliver.create_queue('ff', fifo => true)});
($st, $b) = req('PUT', '/v1/queues/ff/fifo-key-limit', token => $admin, body => { max_in_flight_per_key => 2 });
is_deeply([ $st, $b ], [ 200, { queue_name => 'ff', fifo_key_limit => 2 } ], 'set the FIFO key limit');
req('POST', '/v1/queues/ff/messages/batch', token => $admin,
	body => { messages => [ map { { payload => { n => $_ }, ordering_key => 'k' } } 1 .. 4 ] });
($st, $b) = req('POST', '/v1/queues/ff/receive?max=10', token => $admin);
is_deeply([ map { $_->{payload}{n} } @$b ], [ 1, 2 ], 'two messages of the key go out at once');
gw_is_error([ req('PUT', '/v1/queues/fc/fifo-key-limit', token => $admin, body => { max_in_flight_per_key => 2 }) ],
	409, '55000', 'a queue that is not FIFO');
gw_is_error([ req('PUT', '/v1/queues/ff/fifo-key-limit', token => $admin, body => { max_in_flight_per_key => 0 }) ],
	422, '22023', 'a limit of 0');
gw_is_error([ req('PUT', '/v1/queues/ff/fifo-key-limit', token => $admin, body => {}) ],
	422, '22004', 'no limit in the body');
gw_is_error([ req('PUT', '/v1/queues/ff/fifo-key-limit', token => $admin) ], 400, undef, 'no body');
gw_is_error([ req('PUT', '/v1/queues/ff/fifo-key-limit', token => 'reader-token-0123456789', body => { max_in_flight_per_key => 2 }) ],
	403, '42501', 'not for a role with a queue right');

# openapi.json
($st, $b) = req('GET', '/openapi.json');
ok($b->{paths}{'/v1/queues/{queue}/groups/{group}/pause'}{post}, 'openapi.json describes pause');
ok($b->{paths}{'/v1/queues/{queue}/groups/{group}/resume'}{post}, 'openapi.json describes resume');
ok($b->{paths}{'/v1/queues/{queue}/groups/{group}/rate'}{put}{requestBody}, 'openapi.json describes rate and its body');
ok($b->{paths}{'/v1/queues/{queue}/fifo-key-limit'}{put}{requestBody}, 'openapi.json describes fifo-key-limit');

my $asan = gw_sanitizer_reports($gw);
is($asan, '', 'no sanitizer reports') or diag($asan);
gw_stop($gw);
$node->stop;
done_testing();
