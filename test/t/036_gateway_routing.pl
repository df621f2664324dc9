# deliverd's topic routing routes against a real server: POST /v1/publish
# (fan-out to every queue bound to a matching pattern, in one transaction,
# the Idempotency-Key header, mandatory, expires_at), GET/POST/DELETE
# /v1/bindings and GET /v1/routing (the dry run); the rights (bind and unbind for admins, a
# publish refused whole when one matched queue may not be sent to), a
# read-only token, and the openapi description.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use GatewayTest;

my $node = deliver_node('gwr');
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{
    CREATE ROLE app_pub NOLOGIN;
    SELECT deliver.create_queue('eu_orders');
    SELECT deliver.create_queue('all_orders');
    SELECT deliver.create_queue('audit');
    SELECT deliver.grant_queue('eu_orders', 'app_pub', 'send');
    SELECT deliver.grant_queue('all_orders', 'app_pub', 'send');
});
my $gw = gateway_start($node,
	tokens => { 'admin-token-0123456789' => $super, 'publisher-token-0123456789' => 'app_pub',
		'read-only-token-0123456789' => "$super read-only" });
ok(gw_alive($gw), 'deliverd starts');
my ($admin, $pub, $ro) = ('admin-token-0123456789', 'publisher-token-0123456789', 'read-only-token-0123456789');
sub req { return gw_req($gw, @_); }


my ($st, $b, $r);

# ---- openapi
($st, $b) = req('GET', '/openapi.json');
ok($b->{paths}{$_}, "openapi.json describes $_") for ('/v1/publish', '/v1/bindings', '/v1/routing');
ok($b->{paths}{'/v1/bindings'}{$_}, "openapi.json: /v1/bindings $_") for qw(get post delete);
ok($b->{paths}{'/v1/publish'}{post}{requestBody}{content}{'application/json'}{schema}{properties}{expires_at},
	'openapi.json: publish takes expires_at');
is($b->{components}{schemas}{PublishResult}{properties}{message_id}{'$ref'}, '#/components/schemas/Id',
	'openapi.json: published ids are strings');

# ---- bindings
($st, $b) = req('POST', '/v1/bindings', token => $admin, body => { pattern => 'orders.eu.*', queue => 'eu_orders' });
is($st, 200, 'bind: 200');
is_deeply($b, { pattern => 'orders.eu.*', queue => 'eu_orders', created => JSON::PP::true }, 'bind: created');
($st, $b) = req('POST', '/v1/bindings', token => $admin, body => { pattern => 'orders.eu.*', queue => 'eu_orders' });
is($b->{created}, JSON::PP::false, 'bind again: created is false');
req('POST', '/v1/bindings', token => $admin, body => { pattern => 'orders.#', queue => 'all_orders' });
req('POST', '/v1/bindings', token => $admin, body => { pattern => '#', queue => 'audit' });
($st, $b) = req('GET', '/v1/bindings', token => $admin);
is($st, 200, 'list bindings: 200');
is_deeply([ map { "$_->{queue} $_->{pattern}" } @$b ], [ 'all_orders orders.#', 'audit #', 'eu_orders orders.eu.*' ],
	'list bindings: by queue');
ok(defined $b->[0]{created_at}, 'list bindings: created_at');
($st, $b) = req('GET', '/v1/bindings?queue=audit', token => $pub);
is_deeply([ map { $_->{pattern} } @$b ], ['#'], 'list bindings of one queue, by any role');
gw_is_error([ req('GET', '/v1/bindings?queue=' . ('q' x 64), token => $admin) ], 400, undef, 'list bindings: queue too long');

gw_is_error([ req('POST', '/v1/bindings', token => $admin, body => { pattern => 'a..b', queue => 'audit' }) ],
	422, '22023', 'bind: an empty word');
gw_is_error([ req('POST', '/v1/bindings', token => $admin, body => { pattern => 'a.b*', queue => 'audit' }) ],
	422, '22023', 'bind: a wildcard inside a word');
gw_is_error([ req('POST', '/v1/bindings', token => $admin, body => { pattern => 'a', queue => 'nope' }) ],
	404, '42704', 'bind: unknown queue');
gw_is_error([ req('POST', '/v1/bindings', token => $admin, body => { queue => 'audit' }) ],
	422, '22004', 'bind: no pattern');
gw_is_error([ req('POST', '/v1/bindings', token => $admin) ], 400, undef, 'bind: no body');
gw_is_error([ req('POST', '/v1/bindings', token => $admin, body => '{"pattern": ') ], 400, '22P02', 'bind: not JSON');
gw_is_error([ req('POST', '/v1/bindings', token => $pub, body => { pattern => 'x', queue => 'audit' }) ],
	403, '42501', 'bind: not for a sender');
gw_is_error([ req('POST', '/v1/bindings', token => $ro, body => { pattern => 'x', queue => 'audit' }) ],
	403, '42501', 'bind: not for a read-only token');
gw_is_error([ req('DELETE', '/v1/bindings', token => $pub, body => { pattern => '#', queue => 'audit' }) ],
	403, '42501', 'unbind: not for a sender');
gw_is_error([ req('PUT', '/v1/bindings', token => $admin) ], 405, undef, 'bindings: PUT is no method');

# ---- dry run
($st, $b) = req('GET', '/v1/routing?key=orders.eu.new', token => $pub);
is($st, 200, 'routing: 200');
is_deeply($b, [ { queue => 'all_orders', pattern => 'orders.#' }, { queue => 'audit', pattern => '#' },
		{ queue => 'eu_orders', pattern => 'orders.eu.*' } ], 'routing: every matching binding');
($st, $b) = req('GET', '/v1/routing?key=', token => $ro);
is_deeply($b, [ { queue => 'audit', pattern => '#' } ], 'routing: the empty key, with a read-only token');
gw_is_error([ req('GET', '/v1/routing', token => $admin) ], 400, undef, 'routing: no key');
gw_is_error([ req('GET', '/v1/routing?key=orders.%2A', token => $admin) ], 422, '22023', 'routing: a wildcard in the key');

# ---- publish
($st, $b, $r) = req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'orders.eu.new', payload => { n => 1 }, headers => { h => 'v' }, ordering_key => 'k' });
is($st, 201, 'publish: 201');
is_deeply([ map { $_->{queue} } @$b ], [qw(all_orders audit eu_orders)], 'publish: to every matched queue');
is(scalar(() = $r->{content} =~ /"message_id":"\d+"/g), 3, 'publish: ids are JSON strings');
unlike($r->{content}, qr/"message_id":\s*\d/, 'publish: no id is a JSON number');
for my $q (qw(all_orders audit eu_orders))
{
	is(query_one($node, "SELECT payload->>'n' || ' ' || (headers->>'h') || ' ' || ordering_key FROM deliver.peek('$q')"),
		'1 v k', "publish: $q has the message");
}
($st, $b) = req('POST', '/v1/publish', token => $admin, body => { routing_key => 'logs.x', payload => 2 });
is_deeply([ map { $_->{queue} } @$b ], ['audit'], 'publish: only # matches logs.x');

# the Idempotency-Key header: per queue, as in send
($st, $b) = req('POST', '/v1/publish', token => $admin, headers => { 'Idempotency-Key' => 'p1' },
	body => { routing_key => 'orders.us', payload => 3 });
my $first = $b;
($st, $b) = req('POST', '/v1/publish', token => $admin, headers => { 'Idempotency-Key' => 'p1' },
	body => { routing_key => 'orders.us', payload => 3 });
is_deeply($b, $first, 'publish again with the same Idempotency-Key: the same ids');
is(query_one($node, q{SELECT count(*) FROM deliver.peek('all_orders', 100) WHERE payload = '3'}), '1',
	'and the message once');

# delay
($st, $b) = req('POST', '/v1/publish', token => $admin, body => { routing_key => 'orders.late', payload => 4, delay => 3600 });
is($st, 201, 'publish with a delay');
is(query_one($node, q{SELECT count(*) FROM deliver.peek('all_orders', 100) WHERE payload = '4'}), '0',
	'a delayed message is not ready');

# expires_at: as the send route takes it (a string or a Unix time; a time in
# the past is taken, and the message expires at once), for every copy
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('exp_dl');
    SELECT deliver.create_queue('exp_drop', on_expire => 'drop');
    SELECT deliver.bind('exp.#', 'exp_dl');
    SELECT deliver.bind('exp.#', 'exp_drop');
});
my ($send_st) = req('POST', '/v1/queues/exp_dl/messages', token => $admin,
	body => { payload => { n => 'sent' }, expires_at => '2000-01-01T00:00:00Z' });
($st, $b) = req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.past', payload => { n => 'past' }, expires_at => '2000-01-01T00:00:00Z' });
is($st, $send_st, "publish with an expires_at in the past: HTTP $send_st, as send");
is($st, 201, 'publish with an expires_at in the past: 201');
is_deeply([ map { $_->{queue} } @$b ], [qw(audit exp_dl exp_drop)], 'publish with expires_at: to every matched queue');
($st) = req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.unix', payload => { n => 'unix' }, expires_at => time() - 10 });
is($st, 201, 'publish with a Unix time in the past: 201');
($st) = req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.future', payload => { n => 'future' }, expires_at => time() + 3600 });
is($st, 201, 'publish with a Unix time in the future: 201');
($st) = req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.none', payload => { n => 'none' }, expires_at => undef });
is($st, 201, 'publish with expires_at null: 201');
# a deadline that passes between the publish and the receive
my $soon = query_one($node, q{SELECT to_json(clock_timestamp() + interval '1 second') #>> '{}'});
($st) = req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.soon', payload => { n => 'soon' }, expires_at => $soon });
is($st, 201, 'publish with an expires_at a second away: 201');
is(query_one($node, q{SELECT count(*) FROM deliver.peek('exp_drop', 10) WHERE payload->>'n' = 'soon'}), '1',
	'before its deadline the copy is there');
ok(wait_for($node, qq{SELECT clock_timestamp() > '$soon'::timestamptz}, 't', 30), 'the deadline passes');
for my $q (qw(exp_dl exp_drop))
{
	($st, $b) = req('POST', "/v1/queues/$q/receive?max=10", token => $admin);
	is($st, 200, "receive from $q: 200");
	is(join(',', map { $_->{payload}{n} } @$b), 'future,none', "$q: only the unexpired copies are received");
}
($st, $b) = req('GET', '/v1/queues/exp_dl/dead-letters', token => $admin);
is(join(',', map { "$_->{payload}{n}:$_->{reason}" } @$b), 'sent:expired,past:expired,unix:expired,soon:expired',
	'exp_dl: the expired copies are dead letters, reason expired');
($st, $b) = req('GET', '/v1/queues/exp_drop/dead-letters', token => $admin);
is_deeply($b, [], 'exp_drop (on_expire drop): the expired copies are dropped');
# bad values: as send's
my $in_dl = query_one($node, q{SELECT count(*) FROM deliver.peek('exp_dl', 100)});
gw_is_error([ req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.bad', payload => 1, expires_at => 'not a time' }) ], 400, '22007',
	'publish: expires_at not a time');
gw_is_error([ req('POST', '/v1/queues/exp_dl/messages', token => $admin,
	body => { payload => 1, expires_at => 'not a time' }) ], 400, '22007', 'send: the same');
gw_is_error([ req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.bad', payload => 1, expires_at => [] }) ], 422, '22023', 'publish: expires_at an array');
gw_is_error([ req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.bad', payload => 1, expires_at => JSON::PP::true }) ], 422, '22023',
	'publish: expires_at a boolean');
gw_is_error([ req('POST', '/v1/publish', token => $admin,
	body => { routing_key => 'exp.bad', payload => 1, expires_at => 1e300 }) ], 400, '22008',
	'publish: expires_at out of range');
is(query_one($node, q{SELECT count(*) FROM deliver.peek('exp_dl', 100)}), $in_dl, 'nothing was sent by the bad ones');
$node->safe_psql('postgres', q{SELECT deliver.drop_queue('exp_dl'); SELECT deliver.drop_queue('exp_drop');});

# no match; mandatory
($st, $b) = req('POST', '/v1/publish', token => $admin, body => { routing_key => 'orders.x', payload => 5 });
is($st, 201, 'publish: matched');
req('DELETE', '/v1/bindings', token => $admin, body => { pattern => '#', queue => 'audit' });
($st, $b) = req('DELETE', '/v1/bindings', token => $admin, body => { pattern => '#', queue => 'audit' });
is_deeply($b, { pattern => '#', queue => 'audit', removed => JSON::PP::false }, 'unbind again: removed is false');
($st, $b) = req('POST', '/v1/publish', token => $admin, body => { routing_key => 'logs.x', payload => 6 });
is($st, 201, 'publish with no match: 201');
is_deeply($b, [], 'publish with no match: []');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'logs.x', payload => 6, mandatory => JSON::PP::true }) ],
	404, '42704', 'publish with mandatory and no match');

# rights: app_pub may send to eu_orders and all_orders, not audit
req('POST', '/v1/bindings', token => $admin, body => { pattern => 'orders.*.audit', queue => 'audit' });
my $before = query_one($node, q{SELECT count(*) FROM deliver.peek('all_orders', 100)});
gw_is_error([ req('POST', '/v1/publish', token => $pub, body => { routing_key => 'orders.eu.audit', payload => 7 }) ],
	403, '42501', 'publish: one matched queue not granted');
is(query_one($node, q{SELECT count(*) FROM deliver.peek('all_orders', 100)}), $before, 'and nothing was sent');
($st, $b) = req('POST', '/v1/publish', token => $pub, body => { routing_key => 'orders.eu.new', payload => 8 });
is_deeply([ map { $_->{queue} } @$b ], [qw(all_orders eu_orders)], 'publish: granted queues only: sent');
gw_is_error([ req('POST', '/v1/publish', token => $ro, body => { routing_key => 'orders.eu.new', payload => 9 }) ],
	403, '42501', 'publish: not for a read-only token');

# bad input
gw_is_error([ req('POST', '/v1/publish', token => $admin) ], 400, undef, 'publish: no body');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { payload => 1 }) ], 422, '22004', 'publish: no routing_key');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'a.b' }) ], 422, '22004', 'publish: no payload');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'a.#', payload => 1 }) ],
	422, '22023', 'publish: a wildcard in the routing key');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'a' x 256, payload => 1 }) ],
	422, '22023', 'publish: a routing key over 255 bytes');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'orders.x', payload => 1, headers => [1] }) ],
	422, '22023', 'publish: headers not an object');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'orders.x', payload => 1, delay => -1 }) ],
	422, '22023', 'publish: negative delay');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'orders.x', payload => 1, mandatory => 'maybe' }) ],
	400, '22P02', 'publish: mandatory not a boolean');
gw_is_error([ req('POST', '/v1/publish') ], 401, '28000', 'publish: no token');

# the access log names the routes
like(slurp_file($gw->{log}), qr/"route":"publish","status":201/, 'the access log names publish');
is(gw_stop($gw), 0, 'deliverd stops');
my $asan = gw_sanitizer_reports($gw);
is($asan, '', 'no sanitizer reports') or diag($asan);
$node->stop;
done_testing();
