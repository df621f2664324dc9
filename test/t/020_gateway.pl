# deliverd, the HTTP gateway, against a real server: every route's success
# and error paths, authentication (none, bad, expired, token file, JWT) and
# GRANT-based authorisation through the per-request role, limits (body size,
# idle connections), long polls, the SSE stream and its resume with
# Last-Event-ID, a Postgres restart under connected clients (503 with
# Retry-After, then recovery), /metrics, and a graceful SIGTERM.  Runs the
# AddressSanitizer build (gateway/deliverd-asan) when it exists, and then
# checks its log is clean.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use GatewayTest;
use HTTP::Tiny;
use JSON::PP;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(usleep time);

my $bin = gateway_bin();
note "gateway binary: $bin";

my $node = deliver_node('gw', q{deliver.max_payload_size = '4kB'});
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{
    CREATE ROLE app_sender NOLOGIN;
    CREATE ROLE app_reader NOLOGIN;
    CREATE ROLE app_none NOLOGIN;
    SELECT deliver.create_queue('shop');
    SELECT deliver.grant_queue('shop', 'app_sender', 'send');
    SELECT deliver.grant_queue('shop', 'app_reader', 'receive');
});

my $json = JSON::PP->new->canonical;
my $secret = 'test-secret-0123456789-0123456789-abcdef';
my $dir = $node->basedir;
# the JWT secret comes from the environment, the rest from the file
my $gw = gateway_start($node,
	tokens => { 'static-token-for-the-reader' => 'app_reader',
		'static-read-only-token-of-the-reader' => 'app_reader read-only' },
	conf => { idle_timeout => 2, max_wait => 20, stream_wait => 1, shutdown_grace => 10, pool_size => 6 },
	env => { DELIVERD_JWT_SECRET => $secret });
ok(gw_alive($gw), 'deliverd starts and answers /healthz');
my ($port, $base, $logfile) = @$gw{qw(port base log)};

# jwt(claim => value, ..., _key => K): a JWT signed with the gateway's secret (or K)
sub jwt
{
	my (%claims) = @_;
	my $key = delete $claims{_key} // $secret;
	return gw_jwt($key, %claims);
}
my $admin = jwt(role => $super, exp => time() + 3600);
my $sender = jwt(role => 'app_sender');
my $reader = 'static-token-for-the-reader';

# req(METHOD, PATH, token => T, body => perl-or-string, headers => {...})
# returns (status, decoded body or raw text, response)
sub req { return gw_req($gw, @_); }


# Ids are 64-bit integers, beyond what a JavaScript number holds exactly
# (53 bits): every id in a JSON answer is a string of digits (or null),
# never a number.
sub ids_are_strings
{
	my ($raw, $name) = @_;
	my @ids = $raw =~ /"(?:message_id|delivery_id)"\s*:\s*("[^"]*"|null)/g;
	my @num = $raw =~ /"(?:message_id|delivery_id)"\s*:\s*(-?[0-9][^,}\]]*)/g;
	push @num, $1 while $raw =~ /"message_ids"\s*:\s*\[[^\]]*?(?<=[\[,])\s*(-?[0-9][^,\]]*)/g;
	ok(@ids && !@num && !grep({ $_ ne 'null' && !/^"[0-9]+"$/ } @ids), "$name: ids are JSON strings")
	  or diag("ids: @ids; numbers: @num; in " . substr($raw, 0, 300));
	return;
}

# ---- operations routes
my ($st, $b, $r) = req('GET', '/readyz');
is($st, 200, '/readyz is 200 with Postgres up');
($st, $b) = req('GET', '/openapi.json');
is($st, 200, '/openapi.json');
for my $p ('/healthz', '/readyz', '/metrics', '/v1/queues', '/v1/queues/{queue}',
	'/v1/queues/{queue}/groups', '/v1/queues/{queue}/groups/{group}',
	'/v1/queues/{queue}/messages', '/v1/queues/{queue}/messages/batch',
	'/v1/queues/{queue}/receive', '/v1/queues/{queue}/ack',
	'/v1/queues/{queue}/deliveries/{delivery_id}/ack',
	'/v1/queues/{queue}/deliveries/{delivery_id}/nack',
	'/v1/queues/{queue}/deliveries/{delivery_id}/extend',
	'/v1/queues/{queue}/dead-letters', '/v1/queues/{queue}/redrive',
	'/v1/queues/{queue}/metrics', '/v1/queues/{queue}/stream', '/v1/queues/{queue}/peek',
	'/v1/metrics', '/v1/alerts', '/v1/workers', '/v1/push-subscriptions', '/v1/whoami', '/ui/')
{
	ok(ref $b eq 'HASH' && $b->{paths}{$p}, "openapi.json describes $p");
}
for my $s (qw(Message SendResult SendBatchResult DeadLetter))
{
	ok(ref $b eq 'HASH' && $b->{components}{schemas}{$s}, "openapi.json has schema $s");
}
{
	my $oa = $b;
	my $type = sub { my ($s) = @_; $s = $oa->{components}{schemas}{$1} if ($s->{'$ref'} // '') =~ m{/(\w+)$}; $s->{type} };
	is_deeply([ map { $type->($oa->{components}{schemas}{Message}{properties}{$_}) } qw(message_id delivery_id) ],
		[ 'string', 'string' ], 'openapi.json: received ids are strings');
}
is($b->{components}{schemas}{SendBatchResult}{properties}{message_ids}{items}{'$ref'}, '#/components/schemas/Id',
	'openapi.json: sent ids are strings');
is($b->{components}{schemas}{Id}{type}, 'string', 'openapi.json: an Id is a string');
ok($b->{components}{schemas}{IdInput}{oneOf}, 'openapi.json: an id in a request is a string or an integer');
{
	my $body = sub { $b->{paths}{ $_[0] }{ $_[1] }{requestBody}{content}{'application/json'}{schema}{properties} };
	for my $p ([ '/v1/queues/{queue}/messages', 'post' ], [ '/v1/queues/{queue}/messages/batch', 'post' ],
		[ '/v1/publish', 'post' ])
	{
		my $f = $body->(@$p) // {};
		is_deeply([ @{ $f->{priority} // {} }{qw(type minimum maximum)} ], [ 'integer', 0, 9 ],
			"openapi.json: $p->[0] takes priority, an integer from 0 to 9");
	}
	is(($body->('/v1/queues', 'post') // {})->{priorities}{type}, 'boolean', 'openapi.json: create queue takes priorities');
	is(($body->('/v1/queues/{queue}', 'patch') // {})->{priorities}{type}, 'boolean', 'openapi.json: PATCH takes priorities');
}
gw_is_error([ req('GET', '/nowhere') ], 404, undef, 'unknown route');
gw_is_error([ req('PUT', '/v1/queues', token => $admin) ], 405, undef, 'wrong method');

# ---- authentication
gw_is_error([ req('GET', '/v1/queues') ], 401, '28000', 'no token');
($st, $b, $r) = req('GET', '/v1/queues');
is($r->{headers}{'www-authenticate'}, 'Bearer', '401 says WWW-Authenticate: Bearer');
gw_is_error([ req('GET', '/v1/queues', token => 'nonsense') ], 401, '28000', 'unknown token');
gw_is_error([ req('GET', '/v1/queues', token => jwt(role => $super, _key => 'x' x 40)) ],
	401, '28000', 'JWT signed with another key');
gw_is_error([ req('GET', '/v1/queues', token => jwt(role => $super, exp => time() - 10)) ],
	401, '28000', 'expired JWT');
gw_is_error([ req('GET', '/v1/queues', token => jwt(role => $super, _alg => 'none')) ],
	401, '28000', 'JWT with alg none');
gw_is_error([ req('GET', '/v1/queues', token => jwt(sub => 'x')) ], 401, '28000',
	'JWT without a role claim');
($st, $b) = req('GET', '/v1/queues', token => $admin);
is($st, 200, 'a valid JWT lists queues');
ok(ref $b eq 'ARRAY' && grep({ $_->{queue_name} eq 'shop' } @$b), 'the list has queue shop');
gw_is_error([ req('GET', '/v1/queues/shop/metrics', token => jwt(role => 'ghost')) ],
	403, '22023', 'a JWT naming a role that does not exist');
# set_config('role', 'none') would run the request as the gateway's own
# login role; public, current_user, session_user and current_role name no
# role: such claims are refused, as are empty and over-long ones
for my $r ('none', 'NONE', 'public', 'Public', 'current_user', 'session_user', 'current_role', '', 'r' x 64)
{
	my @got = req('GET', '/v1/queues', token => jwt(role => $r, exp => time() + 3600));
	gw_is_error(\@got, 401, '28000', "a JWT with role \"$r\"");
}

# anon_role = none: no anonymous access (not the login role); a reserved
# role in anon_role or in the token file stops deliverd at start
{
	my $g = gateway_start($node, name => 'gwanon', conf => { anon_role => 'none', access_log => 'off' });
	gw_is_error([ gw_req($g, 'GET', '/v1/queues') ], 401, '28000', 'anon_role = none: a request without a token');
	is(gw_stop($g), 0, 'that gateway stops');
	is(gw_sanitizer_reports($g), '', 'with no sanitizer reports');
	my $p = PostgreSQL::Test::Cluster::get_free_port();
	for my $case ([ "anon_role = public\n", 'anon_role = public' ],
		[ "anon_role = current_user\n", 'anon_role = current_user' ],
		[ "metrics_role = public\n", 'metrics_role = public' ],
		[ "token_file = $dir/bad.tokens\n", 'a token file line naming role none' ])
	{
		write_file("$dir/bad.tokens", "bad-role-token-0123456789 none\n");
		write_file("$dir/bad.conf", "listen = 127.0.0.1\nport = $p\n$case->[0]");
		my ($in, $out) = ('', '');
		my $h = IPC::Run::start([ $bin, '-c', "$dir/bad.conf" ], '<', \$in, '>&', \$out,
			IPC::Run::timeout(10));
		my $started = !eval { $h->finish; 1 };
		$h->kill_kill if $started;
		ok(!$started && $h->result(0) == 2, "$case->[1]: deliverd refuses to start")
		  or diag($out);
		like($out, qr/reserved/, "$case->[1]: and says why");
	}
}

# ---- queues
($st, $b) = req('POST', '/v1/queues', token => $admin,
	body => { name => 'orders', visibility_timeout => 30, max_attempts => 1 });
is($st, 201, 'create queue: 201');
is($b->{queue_name}, 'orders', 'create queue: answers the name');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'orders' }) ],
	409, '42710', 'create an existing queue');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'bad name' }) ],
	400, '42602', 'create a queue with a bad name');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'g', guarantee => 'maybe' }) ],
	422, '22023', 'create a queue with a bad guarantee');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => {}) ], 422, '22004',
	'create a queue without a name');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => '{"name": ') ], 400, '22P02',
	'create a queue with malformed JSON');
gw_is_error([ req('POST', '/v1/queues', token => $sender, body => { name => 'x' }) ], 403, '42501',
	'create a queue as a role without the grant');
($st, $b) = req('POST', '/v1/queues', token => $admin,
	body => { name => 'once', guarantee => 'exactly_once', dedup_window => '10 minutes' });
is($st, 201, 'create an exactly_once queue');
($st, $b) = req('GET', '/v1/queues/orders', token => $admin);
is($st, 200, 'describe queue');
is($b->{max_attempts}, 1, 'describe queue: its settings');
gw_is_error([ req('GET', '/v1/queues/nosuch', token => $admin) ], 404, '42704', 'describe unknown queue');
gw_is_error([ req('GET', '/v1/queues/.bad', token => $admin) ], 404, '42704',
	'a queue name deliver does not allow, in the path: no such queue');
gw_is_error([ req('GET', '/v1/queues/' . ('q' x 64), token => $admin) ], 400, '42602',
	'a queue name over 63 bytes in the path');

# an option the body leaves out (or sets to null) is NULL in the call, so
# deliver's defaults apply, the settings deliver.default_retry_base and
# _max among them: here those of the database, seen by the sessions of a
# gateway started after they were set
{
	$node->safe_psql('postgres', q{
        ALTER DATABASE postgres SET deliver.default_retry_base = '7s';
        ALTER DATABASE postgres SET deliver.default_retry_max = '9min'});
	my $t = 'defaults-token-0123456789';
	my $g = gateway_start($node, name => 'gwdefaults', tokens => { $t => $super }, conf => { access_log => 'off' });
	my ($s, $d) = gw_req($g, 'POST', '/v1/queues', token => $t, body => { name => 'dflt' });
	is($s, 201, 'create a queue with nothing but a name');
	gw_req($g, 'POST', '/v1/queues', token => $t,
		body => { name => 'dflt_null', map { $_ => undef } qw(guarantee visibility_timeout max_attempts fifo dedup_window retry_base retry_max) });
	gw_req($g, 'POST', '/v1/queues', token => $t,
		body => { name => 'dflt_set', retry_base => 2, retry_max => '1 minute', max_attempts => 9 });
	my $row = q{SELECT concat_ws(' ', guarantee, visibility_timeout, max_attempts, fifo, dedup_window, retry_base, retry_max)
                  FROM deliver.list_queues() WHERE queue_name = '%s'};
	is(query_one($node, sprintf($row, 'dflt')), 'at_least_once 00:00:30 5 f 00:05:00 00:00:07 00:09:00',
		"deliver's defaults, retry_base and retry_max from the session's settings");
	is(query_one($node, sprintf($row, 'dflt_null')), 'at_least_once 00:00:30 5 f 00:05:00 00:00:07 00:09:00',
		'options set to null: the same defaults');
	is(query_one($node, sprintf($row, 'dflt_set')), 'at_least_once 00:00:30 9 f 00:05:00 00:00:02 00:01:00',
		'options given: those');
	is_deeply([ (gw_req($g, 'POST', '/v1/queues', token => $t, body => { name => 'dflt_bad', retry_base => JSON::PP::true }))[0, 1] ],
		[ 422, { error => 'cannot cast jsonb boolean to type double precision', detail => undef, hint => undef, sqlstate => '22023' } ],
		'an interval that is neither seconds nor a string is refused, not taken for the default');
	$node->safe_psql('postgres', q{
        ALTER DATABASE postgres RESET deliver.default_retry_base;
        ALTER DATABASE postgres RESET deliver.default_retry_max});
	is(gw_stop($g), 0, 'that gateway stops');
	is(gw_sanitizer_reports($g), '', 'with no sanitizer reports');
}

# ---- consumer groups
($st, $b) = req('POST', '/v1/queues/orders/groups', token => $admin, body => { name => 'audit' });
is($st, 201, 'create consumer group');
($st, $b) = req('POST', '/v1/queues/orders/groups', token => $admin, body => { name => 'audit2', start_from => undef });
is($st, 201, "create consumer group with start_from null: deliver's default");
req('DELETE', '/v1/queues/orders/groups/audit2', token => $admin);
gw_is_error([ req('POST', '/v1/queues/orders/groups', token => $admin, body => { name => 'audit' }) ],
	409, '42710', 'create an existing consumer group');
gw_is_error([ req('POST', '/v1/queues/orders/groups', token => $admin,
		body => { name => 'x', start_from => 'middle' }) ], 422, '22023', 'bad start_from');
gw_is_error([ req('POST', '/v1/queues/nosuch/groups', token => $admin, body => { name => 'x' }) ],
	404, '42704', 'group on an unknown queue');
($st, $b) = req('GET', '/v1/queues/orders/groups', token => $admin);
is_deeply([ map { $_->{consumer_group} } @$b ], [ 'default', 'audit' ], 'list consumer groups');
($st, $b) = req('DELETE', '/v1/queues/orders/groups/audit', token => $admin);
is_deeply([ $st, $b ], [ 200, { dropped => JSON::PP::true } ], 'drop consumer group');
gw_is_error([ req('DELETE', '/v1/queues/orders/groups/audit', token => $admin) ], 404, '42704',
	'drop an unknown consumer group');

# ---- send
($st, $b, $r) = req('POST', '/v1/queues/shop/messages', token => $sender,
	body => { payload => { n => 1 }, headers => { h => 'x' }, ordering_key => 'k' });
is($st, 201, 'send as a role granted send');
ok($b->{message_id} > 0, 'send answers the message id');
my $first_id = $b->{message_id};
ids_are_strings($r->{content}, 'send');
like($r->{content}, qr/"message_id"\s*:\s*"$first_id"/, 'send: {"message_id": "N"}');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => $reader, body => { payload => 1 }) ],
	403, '42501', 'send as a role granted only receive');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => jwt(role => 'app_none'), body => { payload => 1 }) ],
	403, '42501', 'send as a role without any grant');
gw_is_error([ req('POST', '/v1/queues/nosuch/messages', token => $admin, body => { payload => 1 }) ],
	404, '42704', 'send to an unknown queue');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => $admin, body => { headers => {} }) ],
	422, '22004', 'send without a payload');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => $admin, body => 'not json') ],
	400, '22P02', 'send malformed JSON');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => $admin) ], 400, undef,
	'send without a body');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => $admin, body => { payload => 'x' x 8000 }) ],
	413, '54000', 'send a payload over deliver.max_payload_size');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => $admin, body => { payload => 'x' x 70000 }) ],
	413, '54000', 'send a body over max_body');
gw_is_error([ req('POST', '/v1/queues/shop/messages', token => $admin, body => { payload => 1, delay => 'soon' }) ],
	400, '22007', 'send with a malformed delay');

# idempotency keys: header, and per message in a batch
my @ids;
for (1 .. 2)
{
	($st, $b) = req('POST', '/v1/queues/once/messages', token => $admin,
		headers => { 'Idempotency-Key' => 'pay-42' }, body => { payload => { amount => 10 } });
	is($st, 201, 'send with Idempotency-Key');
	push @ids, $b->{message_id};
}
is($ids[0], $ids[1], 'the same Idempotency-Key gives the same message id');
gw_is_error([ req('POST', '/v1/queues/once/messages', token => $admin, body => { payload => 1 }) ],
	422, '22004', 'exactly_once send without an idempotency key');
my @batches;
for (1 .. 2)
{
	($st, $b, $r) = req('POST', '/v1/queues/once/messages/batch', token => $admin,
		headers => { 'Idempotency-Key' => 'batch-7' },
		body => { messages => [ { payload => 1 }, { payload => 2 }, { payload => 3, idempotency_key => 'own' } ] });
	is($st, 201, 'send a batch with Idempotency-Key');
	push @batches, $b->{message_ids};
}
like($r->{content}, qr/^\{\s*"message_ids"\s*:\s*\[\s*"[0-9]+"\s*,\s*"[0-9]+"\s*,\s*"[0-9]+"\s*\]\s*\}$/,
	'send batch: message_ids is an array of strings');
is(scalar @{ $batches[0] }, 3, 'the batch answers three ids');
is_deeply($batches[1], $batches[0], 'the same batch again gives the same ids');
is(query_one($node, q{SELECT depth FROM deliver.metrics('once')}), '4',
	'stored once: 1 + 3 messages');
gw_is_error([ req('POST', '/v1/queues/shop/messages/batch', token => $admin, body => { messages => {} }) ],
	422, '22023', 'a batch whose messages are not an array');

# ---- priorities: a queue's switch (create, PATCH), a message's priority
# (send, batch, publish) stored as sent; the range (0 to 9) and a queue
# without priorities are deliver's answers (22023: 422, 55000: 409)
# priorities_of(QUEUE): the stored priorities (0 for none), in id order
sub priorities_of
{
	my ($q) = @_;
	my ($id, $segs) = split /\|/, query_one($node, "SELECT queue_id, segments FROM deliver.queue WHERE queue_name = '$q'");
	my $u = join ' UNION ALL ', (map { "SELECT message_id, priority FROM deliver.q${id}_s$_" } 0 .. $segs - 1),
	  "SELECT message_id, priority FROM deliver.q${id}_delayed";
	return query_one($node, "SELECT string_agg(coalesce(priority, 0)::text, ',' ORDER BY message_id) FROM ($u) m");
}
($st, $b) = req('POST', '/v1/queues', token => $admin, body => { name => 'prio', priorities => JSON::PP::true });
is($st, 201, 'create a queue with priorities');
is(query_one($node, q{SELECT priorities FROM deliver.queue WHERE queue_name = 'prio'}), 't', 'priorities on');
($st, $b) = req('POST', '/v1/queues/prio/messages', token => $admin, body => { payload => 1, priority => 7 });
is($st, 201, 'send with priority 7');
($st, $b) = req('POST', '/v1/queues/prio/messages/batch', token => $admin,
	body => { messages => [ { payload => 2 }, { payload => 3 } ], priority => 3 });
is($st, 201, 'a batch with priority 3');
($st, $b) = req('POST', '/v1/queues/prio/messages', token => $admin, body => { payload => 4, priority => undef });
is($st, 201, 'send with priority null');
($st, $b) = req('POST', '/v1/queues/prio/messages', token => $admin, body => { payload => 5, priority => 0 });
is($st, 201, 'send with priority 0');
($st, $b) = req('POST', '/v1/queues/prio/messages', token => $admin,
	body => { payload => 6, priority => 5, delay => 3600 });
is($st, 201, 'a delayed send with priority 5');
$node->safe_psql('postgres', q{SELECT deliver.bind('prio.#', 'prio')});
($st, $b) = req('POST', '/v1/publish', token => $admin, body => { routing_key => 'prio.x', payload => 7, priority => 9 });
is($st, 201, 'publish with priority 9');
is(priorities_of('prio'), '7,3,3,0,0,5,9', 'the priorities stored as sent');
gw_is_error([ req('POST', '/v1/queues/prio/messages', token => $admin, body => { payload => 1, priority => 10 }) ],
	422, '22023', 'priority 10');
gw_is_error([ req('POST', '/v1/queues/prio/messages/batch', token => $admin,
	body => { messages => [ { payload => 1 } ], priority => -1 }) ], 422, '22023', 'a batch with priority -1');
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'prio.x', payload => 1, priority => 10 }) ],
	422, '22023', 'publish with priority 10');
gw_is_error([ req('POST', '/v1/queues/prio/messages', token => $admin, body => { payload => 1, priority => '5' }) ],
	422, '22023', 'a priority that is a string');
gw_is_error([ req('POST', '/v1/queues/prio/messages', token => $admin, body => { payload => 1, priority => 2.5 }) ],
	400, '22P02', 'a priority with a fraction');
($st, $b) = req('POST', '/v1/queues', token => $admin, body => { name => 'plain' });
is($st, 201, 'create a queue without priorities');
gw_is_error([ req('POST', '/v1/queues/plain/messages', token => $admin, body => { payload => 1, priority => 1 }) ],
	409, '55000', 'a priority to a queue without priorities');
gw_is_error([ req('POST', '/v1/queues/plain/messages/batch', token => $admin,
	body => { messages => [ { payload => 1 } ], priority => 2 }) ], 409, '55000', 'a batch with a priority to a queue without priorities');
$node->safe_psql('postgres', q{SELECT deliver.bind('prio.#', 'plain')});
gw_is_error([ req('POST', '/v1/publish', token => $admin, body => { routing_key => 'prio.x', payload => 1, priority => 2 }) ],
	409, '55000', 'publish with a priority to a queue without priorities among those bound');
($st, $b) = req('POST', '/v1/queues/plain/messages', token => $admin, body => { payload => 1, priority => 0 });
is($st, 201, 'priority 0 to a queue without priorities');
($st, $b) = req('PATCH', '/v1/queues/plain', token => $admin, body => { priorities => JSON::PP::true });
is($st, 200, 'PATCH priorities true');
($st, $b) = req('POST', '/v1/queues/plain/messages', token => $admin, body => { payload => 2, priority => 4 });
is($st, 201, 'then a priority is taken');
($st, $b) = req('PATCH', '/v1/queues/plain', token => $admin, body => { max_attempts => 7 });
is($st, 200, 'PATCH without priorities');
is(query_one($node, q{SELECT priorities FROM deliver.queue WHERE queue_name = 'plain'}), 't',
	'a PATCH without priorities leaves them on');
($st, $b) = req('PATCH', '/v1/queues/plain', token => $admin, body => { priorities => JSON::PP::false });
is($st, 200, 'PATCH priorities false');
gw_is_error([ req('POST', '/v1/queues/plain/messages', token => $admin, body => { payload => 3, priority => 4 }) ],
	409, '55000', 'priorities off again: a priority is refused');
is(priorities_of('plain'), '0,4', 'what plain stored');
gw_is_error([ req('POST', '/v1/queues', token => $admin,
	body => { name => 'prio_amo', guarantee => 'at_most_once', priorities => JSON::PP::true }) ],
	501, '0A000', 'priorities on an at_most_once queue');
$node->safe_psql('postgres', q{SELECT deliver.create_queue('prio_amo', 'at_most_once')});
gw_is_error([ req('PATCH', '/v1/queues/prio_amo', token => $admin, body => { priorities => JSON::PP::true }) ],
	501, '0A000', 'PATCH priorities on an at_most_once queue');
gw_is_error([ req('POST', '/v1/queues', token => $admin, body => { name => 'prio_s', priorities => 'true' }) ],
	422, '22023', 'priorities that is a string');
gw_is_error([ req('PATCH', '/v1/queues/plain', token => $admin, body => { priorities => 1 }) ],
	422, '22023', 'PATCH priorities that is a number');
gw_is_error([ req('POST', '/v1/queues/prio/messages', token => $sender, body => { payload => 1, priority => 1 }) ],
	403, '42501', 'a priority to a queue the role may not send to');
$node->safe_psql('postgres', q{
    SELECT deliver.unbind('prio.#', 'prio'), deliver.unbind('prio.#', 'plain');
    SELECT deliver.drop_queue(q) FROM unnest(ARRAY['prio', 'plain', 'prio_amo']) q});

# ---- receive, ack, nack, extend
($st, $b, $r) = req('POST', '/v1/queues/shop/receive?max=10&visibility_timeout=30', token => $reader);
is($st, 200, 'receive as a role granted receive');
is(scalar @$b, 1, 'receive gets the message');
is($b->[0]{message_id}, $first_id, 'the one sent');
ids_are_strings($r->{content}, 'receive');
like($b->[0]{delivery_id}, qr/^[0-9]+$/, 'receive: a delivery id');
# the string is the id Postgres has, digit for digit: SQL extends that lease
is(query_one($node, "SELECT deliver.extend_lease('shop', '$b->[0]{delivery_id}', '30 s') IS NOT NULL"), 't',
	'receive: the delivery id string is exact');
is_deeply([ $b->[0]{payload}, $b->[0]{headers}, $b->[0]{ordering_key} ],
	[ { n => 1 }, { h => 'x' }, 'k' ], 'payload, headers and ordering key round-trip');
my $d = $b->[0]{delivery_id};
gw_is_error([ req('POST', '/v1/queues/shop/receive', token => $sender) ], 403, '42501',
	'receive as a role granted only send');
# the gateway checks that a parameter parses; its range is the database's answer
gw_is_error([ req('POST', '/v1/queues/shop/receive?max=ten', token => $reader) ], 400, undef,
	'receive max that is not an integer');
gw_is_error([ req('POST', '/v1/queues/shop/receive?max=0', token => $reader) ], 422, '22023', 'receive max=0');
gw_is_error([ req('POST', '/v1/queues/shop/receive?max=10001', token => $reader) ], 422, '22023',
	'receive max over deliver.max_batch_size');
($st, $b) = req('POST', '/v1/queues/shop/receive?max=10001', token => $reader);
like($b->{error}, qr/max_messages must be between 1 and 10000/, 'in the words of the database');
gw_is_error([ req('POST', '/v1/queues/shop/receive?visibility_timeout=0', token => $reader) ], 422, '22023',
	'receive visibility_timeout=0');
gw_is_error([ req('POST', '/v1/queues/shop/receive?visibility_timeout=-1', token => $reader) ], 422, '22023',
	'receive visibility_timeout=-1');
gw_is_error([ req('POST', '/v1/queues/shop/receive?visibility_timeout=soon', token => $reader) ], 400, undef,
	'receive visibility_timeout that is not a number');
gw_is_error([ req('POST', '/v1/queues/shop/receive?wait=99', token => $reader) ], 400, undef,
	'receive wait over max_wait');
gw_is_error([ req('POST', '/v1/queues/shop/receive?group=-x', token => $reader) ], 404, '42704',
	'receive with a group name deliver does not allow: no such group');
gw_is_error([ req('POST', '/v1/queues/shop/receive?group=' . ('g' x 64), token => $reader) ], 400, undef,
	'receive with a group name over 63 bytes');
gw_is_error([ req('POST', '/v1/queues/shop/receive?group=nosuch', token => $reader) ], 404, '42704',
	'receive from an unknown group');
($st, $b) = req('POST', "/v1/queues/shop/deliveries/$d/extend", token => $reader,
	body => { visibility_timeout => 120 });
is($st, 200, 'extend lease');
ok($b->{lease_expires_at}, 'extend answers the new expiry');
gw_is_error([ req('POST', "/v1/queues/shop/deliveries/$d/extend", token => $reader, body => {}) ],
	422, '22004', 'extend without a visibility_timeout');
($st, $b) = req('POST', "/v1/queues/shop/deliveries/$d/nack", token => $reader,
	body => { error => 'try again', retry_after => 0 });
is_deeply([ $st, $b ], [ 200, { nacked => JSON::PP::true } ], 'nack');
($st, $b) = req('POST', '/v1/queues/shop/receive?max=10', token => $reader);
is($b->[0]{attempt}, 2, 'the nacked message comes back as attempt 2');
$d = $b->[0]{delivery_id};
($st, $b) = req('POST', "/v1/queues/shop/deliveries/$d/ack", token => $reader);
is_deeply([ $st, $b ], [ 200, { acked => JSON::PP::true } ], 'ack');
gw_is_error([ req('POST', "/v1/queues/shop/deliveries/$d/ack", token => $reader) ], 409, '55000',
	'ack twice');
gw_is_error([ req('POST', "/v1/queues/shop/deliveries/$d/nack", token => $reader) ], 409, '55000',
	'nack an acked delivery');
gw_is_error([ req('POST', '/v1/queues/shop/deliveries/abc/ack', token => $reader) ], 400, '42602',
	'a delivery id that is not a number');
req('POST', '/v1/queues/shop/messages/batch', token => $sender,
	body => { messages => [ map { { payload => $_ } } 1 .. 3 ] });
($st, $b) = req('POST', '/v1/queues/shop/receive?max=10', token => $reader);
is(scalar @$b, 3, 'receive a batch');
($st, $b) = req('POST', '/v1/queues/shop/ack', token => $reader,
	body => { delivery_ids => [ map { $_->{delivery_id} } @$b ] });
is_deeply([ $st, $b ], [ 200, { acked => 3 } ], 'ack a batch');
gw_is_error([ req('POST', '/v1/queues/shop/ack', token => $reader, body => { delivery_ids => ['x'] }) ],
	400, '22P02', 'ack a batch of non-numbers');

# ids in: a string or a number, any 64-bit integer, as they came out
req('POST', '/v1/queues/shop/messages/batch', token => $sender,
	body => { messages => [ map { { payload => $_ } } 1 .. 3 ] });
($st, $b) = req('POST', '/v1/queues/shop/receive?max=10', token => $reader);
my @dids = map { $_->{delivery_id} } @$b;
is(scalar @dids, 3, 'three deliveries to ack');
($st, $b) = req('POST', '/v1/queues/shop/ack', token => $reader,
	body => qq({"delivery_ids": ["$dids[0]", $dids[1]]}));
is_deeply([ $st, $b ], [ 200, { acked => 2 } ], 'ack a batch of ids as a string and as a number');
($st, $b) = req('POST', "/v1/queues/shop/deliveries/$dids[2]/ack", token => $reader);
is_deeply([ $st, $b ], [ 200, { acked => JSON::PP::true } ], 'ack one by the string it came as');
gw_is_error([ req('POST', '/v1/queues/shop/ack', token => $reader, body => '{"delivery_ids": [9223372036854775807, "-9223372036854775808"]}') ],
	409, '55000', 'ack the largest and smallest 64-bit integers: parsed exactly, no such delivery');
for my $bad ([ '1.5', '22P02' ], [ '1e30', '22003' ], [ '9223372036854775808', '22003' ],
	[ '"12abc"', '22P02' ], [ 'true', '22P02' ], [ '{}', '22P02' ], [ '"1.5"', '22P02' ])
{
	my ($v, $ss) = @$bad;
	my @got = req('POST', '/v1/queues/shop/ack', token => $reader, body => qq({"delivery_ids": [$v]}));
	gw_is_error(\@got, 400, $ss, "ack a batch with $v");
	like($got[1]{hint} // '', qr/64-bit integers/, "ack a batch with $v: the hint says what an id is");
}

# long poll: a receive waiting in the gateway returns at the commit of a send
{
	my $out = '';
	my $t0 = time();
	my $h = IPC::Run::start([ 'curl', '-s', '-X', 'POST', '-H', "Authorization: Bearer $reader",
		"$base/v1/queues/shop/receive?wait=15" ], '>', \$out);
	usleep(700_000);
	req('POST', '/v1/queues/shop/messages', token => $sender, body => { payload => 'wake' });
	$h->finish;
	my $got = eval { $json->decode($out) } // [];
	is($got->[0]{payload}, 'wake', 'a long poll gets the message sent while it waits');
	ok(time() - $t0 < 10, 'and returns at once, not at the end of its wait');
	req('POST', "/v1/queues/shop/deliveries/$got->[0]{delivery_id}/ack", token => $reader) if @$got;
}

# ---- dead letters and redrive (orders: max_attempts 1)
req('POST', '/v1/queues/orders/messages', token => $admin, body => { payload => 'doomed' });
($st, $b) = req('POST', '/v1/queues/orders/receive', token => $admin);
req('POST', "/v1/queues/orders/deliveries/$b->[0]{delivery_id}/nack", token => $admin,
	body => { error => 'poison', retry_after => 0 });
($st, $b) = req('POST', '/v1/queues/orders/receive', token => $admin);
is_deeply($b, [], 'after max_attempts the message is not delivered again');
($st, $b, $r) = req('GET', '/v1/queues/orders/dead-letters?group=default&max=10', token => $admin);
is($st, 200, 'dead letters');
ids_are_strings($r->{content}, 'dead letters');
is($b->[0]{message_id}, query_one($node, q{SELECT message_id FROM deliver.dead_letters('orders')}),
	'dead letters: the message id string is exact');
my $dead_id = $b->[0]{message_id};
is_deeply([ map { [ $_->{payload}, $_->{last_error} ] } @$b ], [ [ 'doomed', 'poison' ] ],
	'dead letters: the message with its last error');
gw_is_error([ req('GET', '/v1/queues/orders/dead-letters?max=0', token => $admin) ], 422, '22023',
	'dead letters max=0');
($st, $b) = req('GET', '/v1/queues/orders/dead-letters?max=20000', token => $admin);
is($st, 200, 'dead letters max=20000: deliver sets no upper limit, nor does the gateway');
gw_is_error([ req('GET', '/v1/queues/orders/dead-letters?max=1.5', token => $admin) ], 400, undef,
	'dead letters max that is not an integer');
gw_is_error([ req('GET', '/v1/queues/orders/dead-letters?group=nosuch', token => $admin) ], 404, '42704',
	'dead letters of an unknown group');
gw_is_error([ req('POST', '/v1/queues/shop/redrive', token => $reader, body => {}) ], 403, '42501',
	'redrive as a role without EXECUTE');
gw_is_error([ req('POST', '/v1/queues/orders/redrive', token => $admin, body => { message_ids => ['1.5'] }) ],
	400, '22P02', 'redrive message ids that are not integers');
($st, $b) = req('POST', '/v1/queues/orders/redrive', token => $admin, body => { message_ids => ["$dead_id"] });
is_deeply([ $st, $b ], [ 200, { redriven => 1 } ], 'redrive by message id, as a string');
($st, $b) = req('POST', '/v1/queues/orders/receive', token => $admin);
is($b->[0]{payload}, 'doomed', 'the redriven message is delivered again');
req('POST', "/v1/queues/orders/deliveries/$b->[0]{delivery_id}/ack", token => $admin);
# once more, by message id as a number
req('POST', '/v1/queues/orders/messages', token => $admin, body => { payload => 'doomed again' });
($st, $b) = req('POST', '/v1/queues/orders/receive', token => $admin);
req('POST', "/v1/queues/orders/deliveries/$b->[0]{delivery_id}/nack", token => $admin,
	body => { error => 'poison', retry_after => 0 });
req('POST', '/v1/queues/orders/receive', token => $admin);    # finds it out of attempts
($st, $b) = req('GET', '/v1/queues/orders/dead-letters', token => $admin);
is(scalar @$b, 1, 'one dead letter again');
($st, $b) = req('POST', '/v1/queues/orders/redrive', token => $admin,
	body => qq({"message_ids": [$b->[0]{message_id}]}));
is_deeply([ $st, $b ], [ 200, { redriven => 1 } ], 'redrive by message id, as a number');
($st, $b) = req('POST', '/v1/queues/orders/receive', token => $admin);
req('POST', "/v1/queues/orders/deliveries/$b->[0]{delivery_id}/ack", token => $admin);

# ---- peek, and deleting dead letters (orders: max_attempts 1)
req('POST', '/v1/queues/orders/messages', token => $admin, body => { payload => 'peeked' });
($st, $b, $r) = req('GET', '/v1/queues/orders/peek?max=5&group=default', token => $admin);
is($st, 200, 'peek');
ids_are_strings($r->{content}, 'peek');
is_deeply([ map { [ $_->{payload}, $_->{attempt}, $_->{redelivery} ? 1 : 0 ] } @$b ], [ [ 'peeked', 1, 0 ] ],
	'peek: the next message, its attempt, no redelivery');
is(query_one($node, q{SELECT in_flight FROM deliver.metrics('orders')}), '0', 'peek leased nothing');
($st, $b) = req('POST', '/v1/queues/orders/receive', token => $admin);
is($b->[0]{payload}, 'peeked', 'a receive after the peek gets that message');
req('POST', "/v1/queues/orders/deliveries/$b->[0]{delivery_id}/nack", token => $admin,
	body => { error => 'poison again', retry_after => 0 });
req('POST', '/v1/queues/orders/receive', token => $admin);    # finds it out of attempts
($st, $b) = req('GET', '/v1/queues/orders/peek', token => $admin);
is_deeply([ $st, $b ], [ 200, [] ], 'peek (defaults): nothing to receive');
gw_is_error([ req('GET', '/v1/queues/orders/peek?max=0', token => $admin) ], 422, '22023', 'peek max=0');
gw_is_error([ req('GET', '/v1/queues/orders/peek?max=x', token => $admin) ], 400, undef,
	'peek max that is not an integer');
gw_is_error([ req('GET', '/v1/queues/orders/peek?group=nosuch', token => $admin) ], 404, '42704',
	'peek at an unknown group');
gw_is_error([ req('GET', '/v1/queues/nosuch/peek', token => $admin) ], 404, '42704', 'peek at an unknown queue');
gw_is_error([ req('GET', '/v1/queues/shop/peek', token => $sender) ], 403, '42501',
	'peek as a role without the receive right');
($st, $b) = req('GET', '/v1/queues/orders/dead-letters', token => $admin);
is(scalar @$b, 1, 'one dead letter to delete');
$dead_id = $b->[0]{message_id};
gw_is_error([ req('DELETE', '/v1/queues/orders/dead-letters', token => $admin) ], 400, undef,
	'delete dead letters without a body');
gw_is_error([ req('DELETE', '/v1/queues/orders/dead-letters', token => $admin, body => {}) ], 422, '22004',
	'delete dead letters without message_ids');
gw_is_error([ req('DELETE', '/v1/queues/orders/dead-letters', token => $admin, body => { message_ids => ['x'] }) ],
	400, '22P02', 'delete dead letters: ids that are not integers');
gw_is_error([ req('DELETE', '/v1/queues/shop/dead-letters', token => $reader, body => { message_ids => [1] }) ],
	403, '42501', 'delete dead letters as a role without EXECUTE');
gw_is_error([ req('DELETE', '/v1/queues/orders/dead-letters', token => $admin,
	body => { message_ids => [$dead_id], consumer_group => 'nosuch' }) ], 404, '42704',
	'delete dead letters of an unknown group');
($st, $b) = req('DELETE', '/v1/queues/orders/dead-letters', token => $admin,
	body => { message_ids => ["$dead_id"], consumer_group => 'default' });
is_deeply([ $st, $b ], [ 200, { deleted => 1 } ], 'delete a dead letter by id');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('orders')}), '0', 'it is gone');
($st, $b) = req('DELETE', '/v1/queues/orders/dead-letters', token => $admin, body => { message_ids => [$dead_id] });
is_deeply([ $st, $b ], [ 200, { deleted => 0 } ], 'deleting it again deletes nothing');

# ---- read-only tokens, and the console's routes
my $ro = jwt(role => $super, read_only => JSON::PP::true);
my $ro_file = 'static-read-only-token-of-the-reader';
($st, $b) = req('GET', '/v1/whoami', token => $ro);
is_deeply([ $st, $b ], [ 200, { role => $super, read_only => JSON::PP::true, cluster => JSON::PP::false } ],
	'whoami: a read-only JWT');
($st, $b) = req('GET', '/v1/whoami', token => $ro_file);
is_deeply([ $st, $b ], [ 200, { role => 'app_reader', read_only => JSON::PP::true, cluster => JSON::PP::false } ],
	'whoami: a read-only line of the token file');
($st, $b) = req('GET', '/v1/whoami', token => $admin);
is($b->{read_only}, JSON::PP::false, 'whoami: a token without the claim may write');
gw_is_error([ req('GET', '/v1/whoami') ], 401, '28000', 'whoami without a token');
gw_is_error([ req('GET', '/v1/whoami', token => jwt(role => $super, read_only => 'yes')) ], 401, '28000',
	'a read_only claim that is no boolean');
for my $call ([ 'POST', '/v1/queues/orders/messages', { payload => 1 } ],
	[ 'POST', '/v1/queues/orders/receive' ], [ 'GET', '/v1/queues/orders/stream' ],
	[ 'POST', '/v1/queues/orders/redrive', {} ],
	[ 'DELETE', '/v1/queues/orders/dead-letters', { message_ids => [1] } ],
	[ 'POST', '/v1/queues', { name => 'ro' } ], [ 'DELETE', '/v1/queues/orders' ],
	[ 'POST', '/v1/queues/orders/deliveries/1/ack' ])
{
	my ($m, $path, $body) = @$call;
	gw_is_error([ req($m, $path, token => $ro, defined $body ? (body => $body) : ()) ], 403, '42501',
		"a read-only token: $m $path");
}
gw_is_error([ req('POST', '/v1/queues/shop/receive', token => $ro_file) ], 403, '42501',
	'a read-only token file line: receive');
is(query_one($node, q{SELECT count(*) FROM deliver.list_queues() WHERE queue_name = 'ro'}), '0',
	'nothing was made');
for my $path ('/v1/queues', '/v1/queues/orders', '/v1/queues/orders/groups', '/v1/queues/orders/metrics',
	'/v1/queues/orders/dead-letters', '/v1/queues/orders/peek', '/v1/metrics', '/v1/alerts',
	'/v1/workers', '/v1/push-subscriptions')
{
	($st, $b) = req('GET', $path, token => $ro);
	is($st, 200, "a read-only token reads $path");
}
($st, $b) = req('GET', '/v1/metrics', token => $ro_file);
is_deeply([ $st, [ map { $_->{queue_name} } @$b ] ], [ 200, ['shop'] ],
	'/v1/metrics: the queues the role may read metrics of');
ok(exists $b->[0]{oldest_age_seconds}, '/v1/metrics: oldest_age_seconds');
gw_is_error([ req('GET', '/v1/workers', token => $reader) ], 403, '42501', '/v1/workers: not for PUBLIC');
($st, $b) = req('GET', '/v1/alerts', token => $reader);
is_deeply([ $st, $b ], [ 200, [] ], '/v1/alerts');
($st, $b) = req('GET', '/v1/push-subscriptions', token => $reader);
is_deeply([ $st, $b ], [ 200, [] ], '/v1/push-subscriptions');
# the console's files need no token, and hold no data
($st, $b, $r) = req('GET', '/ui/');
is($st, 200, '/ui/ (the console is installed with deliverd)');
is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', '/ui/ is HTML');
gw_is_error([ req('GET', '/ui/..%2Fdeliverd.conf') ], 404, undef, '/ui: no way out of its folder');
gw_is_error([ req('GET', '/ui/.hidden') ], 404, undef, '/ui: no dot file');
# read_only = on: every token is read-only; ui_dir: a folder of which only
# regular files with a served extension are served (no link, no dot file)
{
	my $t = 'all-read-only-token-0123456789';
	mkdir "$dir/ui-files" or die $!;
	write_file("$dir/ui-files/index.html", "<p>console</p>\n");
	write_file("$dir/ui-files/notes.txt", "not served\n");
	write_file("$dir/ui-files/.hidden.js", "not served\n");
	symlink("$dir/gwro.conf", "$dir/ui-files/linked.html") or die $!;
	mkdir "$dir/ui-files/sub.js" or die $!;
	my $g = gateway_start($node, name => 'gwro', tokens => { $t => $super },
		conf => { read_only => 'on', ui_dir => "$dir/ui-files", access_log => 'off' });
	my ($s, $d) = gw_req($g, 'GET', '/v1/whoami', token => $t);
	is_deeply([ $s, $d ], [ 200, { role => $super, read_only => JSON::PP::true, cluster => JSON::PP::false } ],
		'read_only = on: every token is read-only');
	gw_is_error([ gw_req($g, 'POST', '/v1/queues/orders/messages', token => $t, body => { payload => 1 }) ],
		403, '42501', 'read_only = on: no send');
	($s, $d) = gw_req($g, 'GET', '/v1/queues/orders/peek', token => $t);
	is($s, 200, 'read_only = on: a peek');
	($s, $d) = gw_req($g, 'GET', '/ui/');
	is_deeply([ $s, $d ], [ 200, "<p>console</p>\n" ], 'ui_dir: its index.html');
	for my $f ('notes.txt', '.hidden.js', 'linked.html', 'sub.js', 'gwro.conf')
	{
		gw_is_error([ gw_req($g, 'GET', "/ui/$f") ], 404, undef, "ui_dir: $f is not served");
	}
	is(gw_stop($g), 0, 'that gateway stops');
	is(gw_sanitizer_reports($g), '', 'with no sanitizer reports');
}

# ---- queue metrics and drop
($st, $b) = req('GET', '/v1/queues/shop/metrics', token => $reader);
is($st, 200, 'queue metrics');
is($b->[0]{consumer_group}, 'default', 'queue metrics: per consumer group');
gw_is_error([ req('GET', '/v1/queues/nosuch/metrics', token => $admin) ], 404, '42704',
	'metrics of an unknown queue');
req('POST', '/v1/queues', token => $admin, body => { name => 'tmp' });
($st, $b) = req('DELETE', '/v1/queues/tmp', token => $admin);
is_deeply([ $st, $b ], [ 200, { dropped => JSON::PP::true } ], 'drop queue');
gw_is_error([ req('DELETE', '/v1/queues/tmp', token => $admin) ], 404, '42704', 'drop an unknown queue');
gw_is_error([ req('DELETE', '/v1/queues/shop', token => $reader) ], 403, '42501',
	'drop queue as a role without EXECUTE');

# ---- the SSE stream
req('POST', '/v1/queues', token => $admin, body => { name => 'ev' });
my @sent = map {
	(req('POST', '/v1/queues/ev/messages', token => $admin, body => { payload => { n => $_ } }))[1]{message_id}
} 1 .. 3;

# stream(query, seconds, extra curl args): the events seen in that time
sub stream
{
	my ($q, $secs, @extra) = @_;
	return gw_stream($gw, "/v1/queues/ev/stream$q", $secs, $admin, @extra);
}
my @ev = stream('', 3);
is_deeply([ map { $_->{id} } @ev ], \@sent, 'the stream sends each message once, id = message id');
is_deeply([ map { $json->decode($_->{data})->{payload}{n} } @ev ], [ 1, 2, 3 ],
	'event data is the received message');
ids_are_strings(join(',', map { $_->{data} } @ev), 'stream events');
is(query_one($node, q{SELECT depth || '/' || in_flight FROM deliver.metrics('ev')}), '0/0',
	'streamed events are acked');

# resume: the event a client saw last comes back (its ack was lost, lease
# expired); a stream resumed with Last-Event-ID acks it without resending it
my ($m1) = map { (req('POST', '/v1/queues/ev/messages', token => $admin, body => { payload => 'seen' }))[1]{message_id} } 1;
($st, $b) = req('POST', '/v1/queues/ev/receive?visibility_timeout=0.5', token => $admin);
is($b->[0]{message_id}, $m1, 'a message leased and not acked');
usleep(1_200_000);
my ($m2) = map { (req('POST', '/v1/queues/ev/messages', token => $admin, body => { payload => 'new' }))[1]{message_id} } 1;
@ev = stream('', 3, '-H', "Last-Event-ID: $m1");
is_deeply([ map { $_->{id} } @ev ], [$m2], 'resumed with Last-Event-ID: the seen message is not sent again');
is(query_one($node, q{SELECT depth || '/' || in_flight || '/' || acked_total FROM deliver.metrics('ev')}),
	'0/0/5', 'and it is acked');
gw_is_error([ req('GET', '/v1/queues/nosuch/stream', token => $admin) ], 404, '42704', 'stream of an unknown queue');
gw_is_error([ req('GET', '/v1/queues/ev/stream', token => $sender) ], 403, '42501', 'stream without the grant');
gw_is_error([ req('GET', '/v1/queues/ev/stream', token => $admin, headers => { 'Last-Event-ID' => 'x' }) ],
	400, undef, 'stream with a bad Last-Event-ID');

# ---- a token's exp ends what it opened: a stream hands out nothing after
# it (it ends with an event saying why), a long poll stops waiting at it
req('POST', '/v1/queues', token => $admin, body => { name => 'exp' });
{
	my $exp = int(time()) + 3;
	my $tok = jwt(role => $super, exp => $exp);
	my $out = '';
	my $h = IPC::Run::start([ 'curl', '-sN', '-m', '20', '-H', "Authorization: Bearer $tok",
		"$base/v1/queues/exp/stream" ], '>', \$out);
	usleep(500_000);
	my $before = (req('POST', '/v1/queues/exp/messages', token => $admin, body => { payload => 'before' }))[1]{message_id};
	usleep(100_000) while time() < $exp + 1;
	my $after = (req('POST', '/v1/queues/exp/messages', token => $admin, body => { payload => 'after' }))[1]{message_id};
	$h->finish;
	is($h->result(0), 0, 'the stream of an expiring token is closed by the gateway (curl did not time out)');
	my @ev = gw_sse_events($out);
	is_deeply([ map { $_->{id} } grep { $_->{event} eq 'message' } @ev ], [$before],
		'the stream sent the message sent before its token expired, not the one sent after');
	is_deeply([ map { [ $_->{event}, eval { $json->decode($_->{data}) } ] } $ev[-1] // () ],
		[ [ 'end', { reason => 'token_expired' } ] ], 'its last event: end, reason token_expired');
	gw_streams_closed($gw);
	($st, $b) = req('POST', '/v1/queues/exp/receive?max=10', token => $admin);
	is_deeply([ map { [ $_->{message_id}, $_->{payload} ] } @$b ], [ [ $after, 'after' ] ],
		'the message sent after the expiry is there for the next consumer');
	req('POST', '/v1/queues/exp/ack', token => $admin, body => { delivery_ids => [ map { $_->{delivery_id} } @$b ] });
	is(query_one($node, q{SELECT depth || '/' || in_flight FROM deliver.metrics('exp')}), '0/0',
		'and the one streamed was acked');
}
{
	my $exp = int(time()) + 2;
	my $tok = jwt(role => $super, exp => $exp);
	my $out = '';
	my $h = IPC::Run::start([ 'curl', '-s', '-X', 'POST', '-H', "Authorization: Bearer $tok",
		"$base/v1/queues/exp/receive?wait=15" ], '>', \$out);
	usleep(100_000) while time() < $exp + 1;
	req('POST', '/v1/queues/exp/messages', token => $admin, body => { payload => 'late' });
	$h->finish;
	is($out, '[]', 'a long poll of an expiring token stops waiting when it expires');
	($st, $b) = req('POST', '/v1/queues/exp/receive', token => $admin);
	is($b->[0]{payload}, 'late', 'and leaves what comes after for the next consumer');
	req('POST', "/v1/queues/exp/deliveries/$b->[0]{delivery_id}/ack", token => $admin) if @$b;
}

# ---- limits: an idle connection is closed after idle_timeout (2 s)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5);
	print $s "GET /healthz HTTP/1.1\r\nHost: x\r\n";    # headers never finished
	my $t0 = time();
	my $sel = IO::Select->new($s);
	my $buf;
	# wait for the server to close it: readable, then EOF (or a reset)
	while (time() - $t0 < 8 && $sel->can_read(8 - (time() - $t0)))
	{
		last if !sysread($s, $buf, 4096);
	}
	my $dt = time() - $t0;
	ok($dt >= 1.5 && $dt < 7, "a client that stops sending headers is dropped after the idle timeout (${dt}s)");
	close $s;
}

# a client that trickles its request, a byte now and then, gets no more
# time than one that is silent: idle_timeout bounds the headers, and then
# the body (libmicrohttpd's own timeout restarts with every byte)
sub trickle_until_cut
{
	my ($head, $byte) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5);
	local $SIG{PIPE} = 'IGNORE';
	print $s $head;
	$s->flush;
	my $t0 = time();
	my $sel = IO::Select->new($s);
	my $buf;
	while (time() - $t0 < 9)
	{
		last if !defined syswrite($s, $byte);
		last if $sel->can_read(0.4) && !sysread($s, $buf, 4096);
	}
	my $dt = time() - $t0;
	close $s;
	return $dt;
}
{
	my $dt = trickle_until_cut("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", 'a');
	ok($dt >= 1.5 && $dt < 7, "a client that trickles its headers is cut after the idle timeout (${dt}s)");
	$dt = trickle_until_cut("POST /v1/queues/shop/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $sender\r\n"
		  . "Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"payload\": \"", 'b');
	ok($dt >= 1.5 && $dt < 7, "a client that trickles its body is cut after the idle timeout (${dt}s)");

	# the clock starts again with each request on a kept-alive connection,
	# and does not run while a request is answered (a long poll of 4 s)
	req('POST', '/v1/queues', token => $admin, body => { name => 'quiet2' });
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5);
	my $sel = IO::Select->new($s);
	my @got;
	for my $i (1 .. 3)
	{
		my ($method, $path) = $i == 2 ? ('POST', '/v1/queues/quiet2/receive?wait=4') : ('GET', '/healthz');
		print $s "$method $path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $admin\r\nContent-Length: 0\r\n\r\n";
		$s->flush;
		# one answer: its headers, then Content-Length bytes
		my ($resp, $buf, $want) = ('', '', undef);
		my $t0 = time();
		while (time() - $t0 < 8)
		{
			if (!defined $want && $resp =~ /^(.*?\r\n\r\n)/s)
			{
				my $h = $1;
				$want = length($h) + ($h =~ /^Content-Length: *(\d+)/mi ? $1 : 0);
			}
			last if defined $want && length($resp) >= $want;
			last if !$sel->can_read(8) || !sysread($s, $buf, 4096);
			$resp .= $buf;
		}
		push @got, $resp =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'none';
		usleep(1_500_000) if $i < 3;
	}
	close $s;
	is_deeply(\@got, [ 200, 200, 200 ],
		'a kept-alive connection: a request every 1.5 s, and a long poll of 4 s, each within the idle timeout of 2 s');
	($st, $b) = req('GET', '/metrics');
	my ($cut) = $b =~ /^deliverd_connections_cut_total (\d+)$/m;
	ok(defined $cut && $cut >= 2, '/metrics counts the connections cut (' . ($cut // 'none') . ')');

	# a client that reads a large answer slowly, but fast enough that
	# libmicrohttpd's own timeout (silence) never runs out, is cut once the
	# answer has waited idle_timeout for it; a client that reads gets all
	{
		$node->safe_psql('postgres', q{SELECT deliver.create_queue('bulky'); SET deliver.max_payload_size = '1MB';
	        SELECT deliver.send_batch('bulky', array_agg(to_jsonb(repeat('x', 100000)))) FROM generate_series(1, 400)});
		($st, $b) = req('GET', '/v1/queues/bulky/peek?max=400', token => $admin);
		is(ref $b eq 'ARRAY' ? scalar @$b : $st, 400, 'a client that reads gets the 40 MB answer whole');
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5);
		print $s "GET /v1/queues/bulky/peek?max=400 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $admin\r\n\r\n";
		$s->flush;
		my $t0 = time();
		my ($resp, $buf) = ('', '');
		# 1 MB every 0.25 s (it would take 10 s), for 12 s at most
		my $sel = IO::Select->new($s);
		READ: while (time() - $t0 < 12)
		{
			usleep(250_000);
			my $chunk = 0;
			while ($chunk < 1_048_576 && $sel->can_read(0))
			{
				my $n = sysread($s, $buf, 1_048_576 - $chunk);
				last READ if !$n;
				$resp .= $buf;
				$chunk += $n;
			}
		}
		my $dt = time() - $t0;
		close $s;
		my ($head) = $resp =~ /^(.*?\r\n\r\n)/s;
		my ($len) = ($head // '') =~ /^Content-Length: *(\d+)/mi;
		ok(defined $len && $len > 40_000_000 && length($resp) < length($head) + $len && $dt < 11,
			'a client that reads its 40 MB answer at 4 MB/s is cut after the idle timeout ('
			  . length($resp) . ' of ' . ($len // '?') . ' bytes, ' . sprintf('%.1f', $dt) . ' s)');
		($st, $b) = req('GET', '/metrics');
		my ($cut2) = $b =~ /^deliverd_connections_cut_total (\d+)$/m;
		ok(defined $cut2 && $cut2 > $cut, "and counted as cut ($cut2)");
	}
}

# ---- /metrics
($st, $b) = req('GET', '/metrics');
is($st, 200, '/metrics');
like($b, qr/^deliverd_requests_total\{route="send",code="201"\} \d+$/m, 'metrics: requests per route and code');
like($b, qr/^deliverd_request_duration_seconds_bucket\{route="receive",le="\+Inf"\} \d+$/m,
	'metrics: latency histograms');
like($b, qr/^deliverd_pool_connections\{state="connected"\} [1-9]/m, 'metrics: pool state');
is_deeply(gw_metric_type_repeats($b), [], 'metrics: each metric has one TYPE line');
like($b, qr/^deliver_queue_depth\{queue="once",consumer_group="default"\} 4$/m, 'metrics: queue depths');

# /metrics of a gateway that logs in as a NOINHERIT role (an authenticator,
# as recommended above): the queue gauges come from deliver.metrics() run
# as metrics_role, a role the login role may become (here one in
# pg_monitor, or one with receive rights on queue shop); by default the
# login role's own view, which is no queue, and no error
$node->safe_psql('postgres', q{
    CREATE ROLE gw_login LOGIN NOINHERIT;
    CREATE ROLE gw_monitor NOLOGIN;
    GRANT pg_monitor TO gw_monitor;
    GRANT gw_monitor, app_reader TO gw_login});
for my $case ([ undef, 'the login role', 1, 0, 0 ], [ 'gw_monitor', 'a pg_monitor role', 1, 1, 1 ],
	[ 'app_reader', 'a role that may receive from shop', 1, 1, 0 ], [ 'app_none', 'a role the login role cannot become', 1, 0, 0 ])
{
	my ($role, $what, $up, $shop, $once) = @$case;
	my $g = gateway_start($node, name => 'gwmetrics', conf => {
		conninfo => "'" . $node->connstr('postgres') . " user=gw_login'", access_log => 'off',
		defined $role ? (metrics_role => $role) : () });
	my ($s, $m) = gw_req($g, 'GET', '/metrics');
	is($s, 200, "metrics_role $what: /metrics answers");
	like($m, qr/^deliverd_database_up $up$/m, "metrics_role $what: deliverd_database_up $up");
	like($m, qr/^deliverd_queue_metrics_up @{[ $role && $role eq 'app_none' ? 0 : 1 ]}$/m,
		"metrics_role $what: deliverd_queue_metrics_up says whether the gauges could be read");
	is(($m =~ /^deliver_queue_depth\{queue="shop",consumer_group="default"\} \d+$/m) ? 1 : 0, $shop,
		"metrics_role $what: queue shop " . ($shop ? 'has' : 'has no') . ' gauges');
	is(($m =~ /^deliver_queue_depth\{queue="once",consumer_group="default"\} 4$/m) ? 1 : 0, $once,
		"metrics_role $what: queue once " . ($once ? 'has' : 'has no') . ' gauges');
	is(gw_stop($g), 0, "metrics_role $what: the gateway stops");
}

# /metrics with metrics_token: the token only (not a role's), else 401
{
	my $mt = 'metrics-token-0123456789abcdef';
	my $g = gateway_start($node, name => 'gwmetrics', conf => { access_log => 'off', metrics_token => $mt });
	my $base_m = $g->{base};
	my $get = sub { my %h = @_; return HTTP::Tiny->new(timeout => 10)->get("$base_m/metrics", { headers => \%h }) };
	is($get->()->{status}, 401, 'metrics_token: /metrics without a token is 401');
	is($get->(Authorization => "Bearer $super-wrong")->{status}, 401, 'metrics_token: a wrong token is 401');
	is($get->(Authorization => "Bearer ${mt}x")->{status}, 401, 'metrics_token: a longer token is 401');
	my $ok = $get->(Authorization => "Bearer $mt");
	is($ok->{status}, 200, 'metrics_token: the token opens /metrics');
	like($ok->{content}, qr/^deliverd_database_up 1$/m, 'metrics_token: and its gauges');
	is((gw_req($g, 'GET', '/healthz'))[0], 200, 'metrics_token: /healthz needs none');
	is(gw_stop($g), 0, 'metrics_token: the gateway stops');
	my ($rc, $out) = (0, '');
	IPC::Run::run([ gateway_bin(), '-c', '/dev/null' ], '>&', \$out,
		init => sub { $ENV{DELIVERD_METRICS_TOKEN} = 'short'; $ENV{DELIVERD_PORT} = 1 });
	like($out, qr/metrics_token must have 16 characters/, 'metrics_token: a short one is refused at start');
}

# ---- a second, small gateway: max_connections, and long polls that leave
# a pooled connection for short requests
{
	my $port2 = PostgreSQL::Test::Cluster::get_free_port();
	my $base2 = "http://127.0.0.1:$port2";
	my ($in, $log2) = ('', '');
	my $gw2 = IPC::Run::start([ $bin, '-c', "$dir/deliverd.conf" ], '<', \$in, '>', \$log2, '2>', \$log2,
		init => sub {
			$ENV{DELIVERD_PORT} = $port2;
			$ENV{DELIVERD_POOL_SIZE} = 2;
			$ENV{DELIVERD_MAX_CONNECTIONS} = 4;
			$ENV{DELIVERD_MAX_CONNECTIONS_PER_ADDRESS} = 3;
			$ENV{DELIVERD_STREAM_WAIT} = 5;
			$ENV{DELIVERD_ACQUIRE_TIMEOUT} = 1;
			# the connections held open below must outlast the checks
			$ENV{DELIVERD_IDLE_TIMEOUT} = 60;
			$ENV{DELIVERD_ANON_ROLE} = $super;
			$ENV{DELIVERD_ACCESS_LOG} = 'off';
			$ENV{ASAN_OPTIONS} = "detect_leaks=1:log_path=$dir/asan";
			$ENV{UBSAN_OPTIONS} = "print_stacktrace=1:log_path=$dir/asan";
		});
	my $c2 = HTTP::Tiny->new(timeout => 20);
	my $deadline = time() + 20;
	usleep(100_000) while time() < $deadline && ($c2->get("$base2/healthz")->{status} != 200);
	req('POST', '/v1/queues', token => $admin, body => { name => 'idle' });
	my $o = '';
	my $lp = IPC::Run::start([ 'curl', '-s', '-X', 'POST', "$base2/v1/queues/idle/receive?wait=6" ], '>', \$o);
	usleep(700_000);
	my $t0 = time();
	my $r2 = $c2->request('POST', "$base2/v1/queues/idle/receive?wait=6");
	is_deeply([ $r2->{status}, $r2->{content} ], [ 200, '[]' ],
		'pool of 2 with one long poll waiting: a second long poll answers at once');
	ok(time() - $t0 < 3, 'without waiting');
	$r2 = $c2->request('POST', "$base2/v1/queues/idle/messages", { content => '{"payload": 1}' });
	is($r2->{status}, 201, 'and a send still gets a connection');
	$lp->finish;
	like($o, qr/"payload":1/, 'the waiting long poll got that message');
	# two streams on a pool of 2: the second polls without holding a
	# connection, so sends still go through and one stream gets each message
	my ($s1, $s2) = ('', '');
	my @streams = map {
		IPC::Run::start([ 'curl', '-sN', '-m', '6', "$base2/v1/queues/idle/stream?max=1" ], '>', $_)
	} (\$s1, \$s2);
	usleep(800_000);
	$t0 = time();
	my @st2 = map { $c2->request('POST', "$base2/v1/queues/idle/messages", { content => qq({"payload": "s$_"}) })->{status} } 1 .. 2;
	is_deeply(\@st2, [ 201, 201 ], 'two streams open on a pool of 2: sends go through');
	ok(time() - $t0 < 3, 'at once');
	$_->finish for @streams;
	my @got = sort(("$s1$s2") =~ /"payload":"(s\d)"/g);
	is_deeply(\@got, [ 's1', 's2' ], 'and the streams deliver each message once');
	# three connections from 127.0.0.1 held open (max_connections_per_address):
	# a fourth from there is turned away, one from 127.0.0.2 is served; one
	# more from 127.0.0.2 makes four (max_connections): a fifth from
	# anywhere is turned away (the gateway takes connections in its own
	# time: ask until it answers as it should, 10 s at most)
	my $healthz_until = sub {
		my ($want, $from) = @_;
		my $st;
		for (1 .. 100)
		{
			$st = HTTP::Tiny->new(timeout => 5, local_address => $from)->get("$base2/healthz")->{status};
			last if $st == $want;
			usleep(100_000);
		}
		return $st;
	};
	undef $c2;    # its kept-alive connection
	# the streams' connections gone too (a stream notices its client left
	# when it next writes): else one of them counts in the limits below
	my $t1 = time();
	while (time() - $t1 < 10)
	{
		my $m = HTTP::Tiny->new(timeout => 5)->get("$base2/metrics")->{content} // '';
		last if $m =~ /^deliverd_open_streams 0$/m;
		usleep(100_000);
	}
	usleep(200_000);
	# a connection from an address that the gateway has taken: one request
	# answered on it, then held open (kept alive, idle). One it turned away
	# (an earlier connection not yet closed on its side still counted) is
	# opened again, 10 s at most, so that each of those below counts
	my $held = sub {
		my ($from) = @_;
		for (1 .. 100)
		{
			my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port2, LocalAddr => $from,
										  Timeout => 5);
			if ($s)
			{
				my $answer = '';
				print $s "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
				return $s
				  if IO::Select->new($s)->can_read(5) && sysread($s, $answer, 4096)
				  && $answer =~ m{^HTTP/1\.1 200};
				close $s;
			}
			usleep(100_000);
		}
		return undef;
	};
	my @socks = map { $held->('127.0.0.1') } 1 .. 3;
	is(scalar(grep { defined } @socks), 3, 'three connections from 127.0.0.1 held open');
	is($healthz_until->(599, '127.0.0.1'), 599, 'a connection over max_connections_per_address is refused');
	is($healthz_until->(200, '127.0.0.2'), 200, 'while one from another address is served');
	push @socks, $held->('127.0.0.2');
	ok(defined $socks[3], 'and one from 127.0.0.2 held open: four in all');
	is($healthz_until->(599, '127.0.0.3'), 599, 'a connection over max_connections is refused');
	close $_ for grep { defined } @socks;
	is($healthz_until->(200, '127.0.0.1'), 200, 'once they close, connections are accepted again');
	$gw2->signal('TERM');
	$gw2->finish;
	is($gw2->result(0), 0, 'the second gateway stops with status 0');
}

# ---- Postgres restarts while clients are connected
{
	my $out = '';
	my $poll = IPC::Run::start([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST',
		'-H', "Authorization: Bearer $reader", "$base/v1/queues/shop/receive?wait=15" ], '>', \$out);
	usleep(500_000);
	$node->stop('fast');
	$poll->finish;
	is($out, '503', 'a long poll in flight when Postgres stops gets 503');
	($st, $b, $r) = req('POST', '/v1/queues/shop/messages', token => $sender, body => { payload => 'x' });
	is($st, 503, 'with Postgres down, send gets 503');
	ok($r->{headers}{'retry-after'} >= 1, 'with Retry-After');
	like($b->{sqlstate} // '', qr/^(08|57P)/, 'and a connection SQLSTATE');
	($st) = req('GET', '/readyz');
	is($st, 503, '/readyz is 503 with Postgres down');
	($st) = req('GET', '/healthz');
	is($st, 200, '/healthz stays 200 (the process is fine)');
	$node->start;
	my $deadline = time() + 20;
	do { ($st) = req('POST', '/v1/queues/shop/messages', token => $sender, body => { payload => 'back' }); usleep(200_000) if $st != 201; }
	  while ($st != 201 && time() < $deadline);
	is($st, 201, 'after Postgres is back the gateway reconnects and sends again');
	($st) = req('GET', '/readyz');
	is($st, 200, '/readyz is 200 again');
}

# ---- graceful shutdown: long polls and streams end cleanly, the process exits 0
req('POST', '/v1/queues', token => $admin, body => { name => 'quiet' });
{
	my ($o1, $o2) = ('', '');
	my $poll = IPC::Run::start([ 'curl', '-s', '-w', ' %{http_code}', '-X', 'POST',
		'-H', "Authorization: Bearer $admin", "$base/v1/queues/quiet/receive?wait=15" ], '>', \$o1);
	my $sse = IPC::Run::start([ 'curl', '-sN', '-w', ' rc=%{http_code}', '-H', "Authorization: Bearer $admin",
		"$base/v1/queues/ev/stream" ], '>', \$o2);
	usleep(800_000);
	my $t0 = time();
	$gw->{h}->signal('TERM');
	$poll->finish;
	$sse->finish;
	my $ok = eval { $gw->{h}->finish; 1 };
	my $dt = time() - $t0;
	is($o1, '[] 200', 'SIGTERM: a long poll ends with an empty answer');
	like($o2, qr/rc=200$/, 'SIGTERM: the stream ends cleanly');
	ok($dt < 8, "SIGTERM: deliverd exits promptly (${dt}s)");
	is($gw->{h}->result(0), 0, 'SIGTERM: exit status 0');
	ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2),
		'no longer listening');
}

my $log = slurp_file($logfile);
like($log, qr/"route":"send","status":201/, 'the access log has structured lines');
my $asan = gw_sanitizer_reports($gw);
is($asan, '', 'no AddressSanitizer, LeakSanitizer or UBSan reports, in their files or the log') or diag($asan);

$node->stop;
done_testing();
