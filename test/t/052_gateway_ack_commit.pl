# deliverd and a queue's ack_commit: POST /v1/queues and PATCH
# /v1/queues/{queue} take it, GET shows it; 'async' on an exactly-once or
# at-most-once queue is 501 (0A000), a bad value 422 (22023); only a role
# that administers queues may change it; acks of an async queue over HTTP
# finish their messages, and (the server logs at DEBUG1 here) commit
# without waiting for the WAL flush, those of a durable queue do not.
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

my $node = deliver_node('gw_ack_commit', 'log_min_messages = debug1');
my $async_line = qr/ack_commit async: this transaction commits without waiting for the WAL flush/;
sub async_commits
{
	my @n = (slurp_file($node->logfile) =~ /$async_line/g);
	return scalar(@n);
}
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{CREATE ROLE ac_app NOLOGIN;});
my $gw = gateway_start($node,
	tokens => { 'admin-token-0123456789' => $super, 'app-token-0123456789' => 'ac_app' });
ok(gw_alive($gw), 'deliverd starts');
my $admin = 'admin-token-0123456789';
my $app = 'app-token-0123456789';
sub req { return gw_req($gw, @_); }
sub stored
{
	my ($q) = @_;
	return query_one($node, "SELECT coalesce((SELECT ack_commit FROM deliver.queue WHERE queue_name = '$q'), 'none')");
}

my ($st, $b) = req('POST', '/v1/queues', token => $admin, body => { name => 'qa', ack_commit => 'async' });
is($st, 201, 'create with ack_commit async: 201');
is(stored('qa'), 'async', 'stored');
($st) = req('POST', '/v1/queues', token => $admin, body => { name => 'qd' });
is($st, 201, 'create without it: 201');
is(stored('qd'), 'durable', 'durable by default');
($st, $b) = req('GET', '/v1/queues/qa', token => $admin);
is($b->{ack_commit}, 'async', 'GET /v1/queues/{queue} shows ack_commit');
($st, $b) = req('GET', '/v1/queues', token => $admin);
is(join(',', map { "$_->{queue_name}=$_->{ack_commit}" } @$b), 'qa=async,qd=durable', 'GET /v1/queues shows it');

# acks over HTTP on the async queue finish their messages
$node->safe_psql('postgres', q{SELECT deliver.grant_queue('qa', 'ac_app', 'all')});
($st) = req('POST', '/v1/queues/qa/messages', token => $app, body => { payload => { n => 1 } });
is($st, 201, 'send: 201');
($st, $b) = req('POST', '/v1/queues/qa/receive?max=1', token => $app);
is(scalar(@$b), 1, 'receive: one message');
($st, $b) = req('POST', "/v1/queues/qa/deliveries/$b->[0]{delivery_id}/ack", token => $app);
is($st, 200, 'ack: 200');
is_deeply($b, { acked => JSON::PP::true }, 'acked');
is(query_one($node, q{SELECT acked_total || ' ' || depth || ' ' || in_flight FROM deliver.metrics('qa')}),
	'1 0 0', 'the message is finished');
is(async_commits(), 1, 'the HTTP ack committed without waiting for the flush');
# the durable queue's HTTP ack waits as usual
$node->safe_psql('postgres', q{SELECT deliver.grant_queue('qd', 'ac_app', 'all')});
req('POST', '/v1/queues/qd/messages', token => $app, body => { payload => { n => 2 } });
($st, $b) = req('POST', '/v1/queues/qd/receive?max=1', token => $app);
($st, $b) = req('POST', "/v1/queues/qd/deliveries/$b->[0]{delivery_id}/ack", token => $app);
is_deeply($b, { acked => JSON::PP::true }, 'durable queue: acked');
is(async_commits(), 1, 'durable queue: no commit without the flush');

# PATCH
($st, $b) = req('PATCH', '/v1/queues/qa', token => $admin, body => { ack_commit => 'durable' });
is($st, 200, 'PATCH ack_commit durable: 200');
is(stored('qa'), 'durable', 'changed');
($st) = req('PATCH', '/v1/queues/qa', token => $admin, body => { max_attempts => 3 });
is(stored('qa'), 'durable', 'a PATCH without it leaves it');
($st) = req('PATCH', '/v1/queues/qa', token => $admin, body => { ack_commit => 'async' });
is(stored('qa'), 'async', 'and back to async');

# refused
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'qe', guarantee => 'exactly_once', ack_commit => 'async' }) ],
	501, '0A000', 'create: async on an exactly-once queue');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'qe', guarantee => 'at_most_once', ack_commit => 'async' }) ],
	501, '0A000', 'create: async on an at-most-once queue');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'qe', ack_commit => 'soon' }) ],
	422, '22023', 'create: unknown ack_commit');
is(stored('qe'), 'none', 'no queue was created by the bad requests');
$node->safe_psql('postgres', q{SELECT deliver.create_queue('qe', 'exactly_once')});
gw_is_error([ req('PATCH', '/v1/queues/qe', token => $admin, body => { ack_commit => 'async' }) ],
	501, '0A000', 'PATCH: async on an exactly-once queue');
gw_is_error([ req('PATCH', '/v1/queues/qa', token => $admin, body => { ack_commit => JSON::PP::true }) ],
	422, '22023', 'PATCH: ack_commit a boolean');
gw_is_error([ req('PATCH', '/v1/queues/qa', token => $app, body => { ack_commit => 'durable' }) ],
	403, '42501', 'PATCH by a role that may only send and receive');
gw_is_error([ req('PATCH', '/v1/queues/nope', token => $admin, body => { ack_commit => 'async' }) ],
	404, '42704', 'PATCH: unknown queue');
is(stored('qa') . ' ' . stored('qe'), 'async durable', 'the refused PATCHes changed nothing');

gw_stop($gw);
is(gw_sanitizer_reports($gw), '', 'no sanitizer reports');
$node->stop;
done_testing();
