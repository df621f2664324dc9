# deliverd and message expiry: a queue created and altered over HTTP with
# message_ttl and on_expire (and max_depth), sends and batches with expires_at (an ISO 8601
# string or a Unix time), bad values answered 422 with their SQLSTATE, the
# PATCH route's rights, and its 404 and 400 answers.
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
use Time::HiRes qw(time);

my $node = deliver_node('gw_expiry');
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{
    CREATE ROLE exp_sender NOLOGIN;
});
my $gw = gateway_start($node,
	tokens => { 'admin-token-0123456789' => $super, 'sender-token-0123456789' => 'exp_sender' });
ok(gw_alive($gw), 'deliverd starts');
my $admin = 'admin-token-0123456789';
my $sender = 'sender-token-0123456789';
sub req { return gw_req($gw, @_); }

# create with the options
my ($st, $b) = req('POST', '/v1/queues', token => $admin,
	body => { name => 'hq', message_ttl => '1 hour', on_expire => 'dead_letter' });
is($st, 201, 'create with message_ttl and on_expire: 201');
is(query_one($node, q{SELECT message_ttl || ' ' || on_expire FROM deliver.queue WHERE queue_name = 'hq'}),
	'01:00:00 dead_letter', 'the options are stored');
($st) = req('POST', '/v1/queues', token => $admin, body => { name => 'hq_num', message_ttl => 90 });
is($st, 201, 'create with message_ttl in seconds: 201');
is(query_one($node, q{SELECT message_ttl FROM deliver.queue WHERE queue_name = 'hq_num'}), '00:01:30',
	'a number is seconds');
$node->safe_psql('postgres', q{SELECT deliver.grant_queue('hq', 'exp_sender', 'send')});

# sends: expired (string, number), in the future, null
($st, $b) = req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => { n => 1 }, expires_at => '2000-01-01T00:00:00Z' });
is($st, 201, 'send with an expires_at in the past: 201');
($st, $b) = req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => { n => 2 }, expires_at => time() - 10 });
is($st, 201, 'send with a Unix time in the past: 201');
($st, $b) = req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => { n => 3 }, expires_at => time() + 3600 });
is($st, 201, 'send with a Unix time in the future: 201');
($st, $b) = req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => { n => 4 }, expires_at => undef });
is($st, 201, 'send with expires_at null: 201');
($st, $b) = req('POST', '/v1/queues/hq/messages/batch', token => $sender,
	body => { messages => [ { payload => { n => 5 } }, { payload => { n => 6 } } ],
		expires_at => '1999-12-31 23:00:00+00' });
is($st, 201, 'batch with an expires_at in the past: 201');
($st, $b) = req('POST', '/v1/queues/hq/messages/batch', token => $sender,
	body => { messages => [ { payload => { n => 7 } } ], expires_at => time() + 3600 });
is($st, 201, 'batch with an expires_at in the future: 201');

($st, $b) = req('POST', '/v1/queues/hq/receive?max=10', token => $admin);
is($st, 200, 'receive: 200');
is(join(',', map { $_->{payload}{n} } @$b), '3,4,7', 'only the unexpired messages are received');
($st, $b) = req('GET', '/v1/queues/hq/dead-letters', token => $admin);
is(join(',', map { "$_->{payload}{n}:$_->{reason}" } @$b), '1:expired,2:expired,5:expired,6:expired',
	'the expired ones are dead letters, reason expired');

# bad values: 422 with the database's SQLSTATE
gw_is_error([ req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => {}, expires_at => 'not a time' }) ], 400, '22007', 'expires_at not a time');
gw_is_error([ req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => {}, expires_at => [] }) ], 422, '22023', 'expires_at an array');
gw_is_error([ req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => {}, expires_at => JSON::PP::true }) ], 422, '22023', 'expires_at a boolean');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'hq_bad', message_ttl => -5 }) ],
	422, '22023', 'create: negative message_ttl');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'hq_bad', on_expire => 'keep' }) ],
	422, '22023', 'create: unknown on_expire');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'hq_bad', on_expire => 7 }) ],
	422, '22023', 'create: on_expire a number');
is(query_one($node, q{SELECT count(*) FROM deliver.queue WHERE queue_name = 'hq_bad'}), '0',
	'no queue was created by the bad requests');

# PATCH /v1/queues/{queue}
($st, $b) = req('PATCH', '/v1/queues/hq', token => $admin, body => { message_ttl => '0', on_expire => 'drop' });
is($st, 200, 'PATCH: 200');
is_deeply($b, { queue_name => 'hq', altered => JSON::PP::true }, 'PATCH answers {queue_name, altered}');
is(query_one($node, q{SELECT coalesce(message_ttl::text, 'none') || ' ' || on_expire FROM deliver.queue WHERE queue_name = 'hq'}),
	'none drop', 'PATCH removed the ttl and set on_expire');
($st, $b) = req('PATCH', '/v1/queues/hq', token => $admin, body => { max_attempts => 7, visibility_timeout => 5 });
is($st, 200, 'PATCH other settings: 200');
is(query_one($node, q{SELECT max_attempts || ' ' || visibility_timeout || ' ' || on_expire FROM deliver.queue WHERE queue_name = 'hq'}),
	'7 00:00:05 drop', 'PATCH changed only what the body names');
($st, $b) = req('POST', '/v1/queues/hq/messages', token => $sender,
	body => { payload => { n => 8 }, expires_at => time() - 1 });
($st, $b) = req('POST', '/v1/queues/hq/receive?max=10', token => $admin);
is(scalar(@$b), 0, 'on_expire drop: nothing received');
($st, $b) = req('GET', '/v1/queues/hq/dead-letters', token => $admin);
is(scalar(@$b), 4, 'on_expire drop: no new dead letter');

gw_is_error([ req('PATCH', '/v1/queues/hq', token => $admin, body => { message_ttl => '400 days' }) ],
	422, '22023', 'PATCH: message_ttl out of range');
gw_is_error([ req('PATCH', '/v1/queues/hq', token => $admin, body => { on_expire => 'later' }) ],
	422, '22023', 'PATCH: unknown on_expire');
gw_is_error([ req('PATCH', '/v1/queues/nope', token => $admin, body => { message_ttl => 5 }) ],
	404, '42704', 'PATCH: unknown queue');
($st, $b) = req('PATCH', '/v1/queues/hq', token => $admin);
is($st, 400, 'PATCH without a body: 400');
gw_is_error([ req('PATCH', '/v1/queues/hq', token => $sender, body => { message_ttl => 5 }) ],
	403, '42501', 'PATCH by a role that may only send');
($st) = req('PATCH', '/v1/queues/hq', body => { message_ttl => 5 });
is($st, 401, 'PATCH without a token: 401');
is(query_one($node, q{SELECT coalesce(message_ttl::text, 'none') FROM deliver.queue WHERE queue_name = 'hq'}),
	'none', 'the refused PATCHes changed nothing');

# max_depth: create and PATCH, a send beyond it 503 (53400)
($st) = req('POST', '/v1/queues', token => $admin, body => { name => 'hd', max_depth => 2, overflow => 'reject' });
is($st, 201, 'create with max_depth: 201');
is(query_one($node, q{SELECT max_depth || ' ' || overflow FROM deliver.queue WHERE queue_name = 'hd'}),
	'2 reject', 'max_depth and overflow stored');
($st) = req('POST', '/v1/queues/hd/messages', token => $admin, body => { payload => $_ }) for 1 .. 2;
is($st, 201, 'two sends fit');
gw_is_error([ req('POST', '/v1/queues/hd/messages', token => $admin, body => { payload => 3 }) ],
	503, '53400', 'a send beyond max_depth');
gw_is_error([ req('POST', '/v1/queues/hd/messages/batch', token => $admin, body => { messages => [ { payload => 4 } ] }) ],
	503, '53400', 'a batch beyond max_depth');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'hd2', max_depth => -1 }) ],
	422, '22023', 'create: negative max_depth');
gw_is_error([ req('PATCH', '/v1/queues/hd', token => $admin, body => { max_depth => 'lots' }) ],
	400, '22P02', 'PATCH: max_depth not a number');
($st) = req('PATCH', '/v1/queues/hd', token => $admin, body => { max_depth => 0 });
is($st, 200, 'PATCH max_depth 0: 200');
($st) = req('POST', '/v1/queues/hd/messages', token => $admin, body => { payload => 3 });
is($st, 201, 'without a limit the send fits');
is(query_one($node, q{SELECT count(*) FROM deliver.peek('hd', 10)}), '3', 'the refused sends wrote nothing');

gw_stop($gw);
is(gw_sanitizer_reports($gw), '', 'no sanitizer reports');
$node->stop;
done_testing();
