# The hostile-input catalogue of the HTTP gateway: every route of deliverd
# tried with bad input (missing and NULL fields, empty and huge bodies,
# non-JSON and deep JSON, invalid UTF-8 in the body, the path and the query
# string, queue names with quotes, semicolons, dots, %-encoded slashes and
# 200 characters, negative, huge and non-numeric numbers, unknown and other
# queues' delivery ids, ids in bodies that are no 64-bit integers (fractions,
# beyond 64 bits, booleans, objects), reserved roles in tokens (none,
# public, current_user...), a stream outliving its token, bad
# Idempotency-Key headers, priorities that are no integer from 0 to 9 (or
# no boolean, for a queue's switch), unknown routes and
# methods, oversized headers).  Each request must get the expected HTTP
# status (and SQLSTATE where the route maps one), the gateway must still
# answer /healthz afterwards, and a rejected request must leave nothing
# behind (row counts of every table in schema deliver, in-flight counts).
# Results go to hostile.tsv with the SQL catalogue (scripts/reliability-doc).
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

my $node = deliver_node('gwhostile', q{deliver.max_payload_size = '4kB'});
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('hq', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('hq2', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('heo', 'exactly_once');
    SELECT deliver.create_queue('hexp');
    SELECT deliver.create_queue('hp', visibility_timeout => '1 hour', priorities => true);
    SELECT deliver.send_batch('hq', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 5) i));
    SELECT deliver.send_batch('hq2', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 5) i));
    CREATE ROLE reader NOLOGIN;
    SELECT deliver.grant_queue('hq2', 'reader', 'receive');
    -- topic routing: r.* keys go to hq and hq2
    SELECT deliver.bind('r.#', 'hq');
    SELECT deliver.bind('r.*', 'hq2');
    -- p.# keys go to hp, a queue with priorities
    SELECT deliver.bind('p.#', 'hp');
});
my ($d_hq, $d_hq2) = map { query_one($node, "SELECT delivery_id FROM deliver.receive('$_', 1)") } qw(hq hq2);
like("$d_hq $d_hq2", qr/^\d+ \d+$/, 'two leases to attack');

my $secret = 'hostile-secret-0123456789-0123456789';
my $gw = gateway_start($node, tokens => { 'admin-token-0123456789' => $super, 'reader-token-0123456789' => 'reader' },
	conf => { jwt_secret => $secret });
my $T = 'admin-token-0123456789';
sub role_jwt { return { Authorization => 'Bearer ' . gw_jwt($secret, role => $_[0], exp => time() + 3600) } }

my $state_sql = q{
    SELECT string_agg(format('%s=%s', c.relname,
             (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM deliver.%I', c.relname), false, true, '')))[1]::text),
             ',' ORDER BY c.relname)
      || '|' || (SELECT string_agg(format('%s:%s', q, m.consumer_group || '/' || m.in_flight), ',' ORDER BY q, m.consumer_group)
                   FROM unnest(ARRAY['hq', 'hq2', 'heo', 'hexp', 'hp']) q, deliver.metrics(q) m)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'deliver' AND c.relkind IN ('r', 'p')};

my $deep = '{"payload": ' . ('[' x 5000) . (']' x 5000) . '}';
my $deep300 = '{"payload": ' . ('[' x 300) . (']' x 300) . '}';
my $n200 = 'n' x 200;
my $bad8 = "\xc3\x28\xff\xfe";
my $hdr = "Host: x\r\nAuthorization: Bearer $T\r\n";

# [category, method, path, body or undef, {headers}, expected status, expected sqlstate ('' = none)]
# a body of [ 'raw', TEXT ] is sent as a hand-written request (no client checks)
my @c = (
	# missing and NULL fields
	[ 'missing field', 'POST', '/v1/queues', {}, {}, 422, '22004' ],
	[ 'NULL field', 'POST', '/v1/queues', { name => undef }, {}, 422, '22004' ],
	[ 'NULL field', 'POST', '/v1/queues/hq/messages', { payload => undef }, {}, 201, '' ],
	[ 'missing field', 'POST', '/v1/queues/hq/messages', { headers => {} }, {}, 422, '22004' ],
	[ 'NULL field', 'POST', '/v1/queues/hq/messages/batch', { messages => undef }, {}, 422, '22023' ],
	[ 'NULL field', 'POST', '/v1/queues/hq/messages/batch', { messages => [ { payload => 1 }, undef ] }, {}, 422, '22004' ],
	[ 'missing field', 'POST', '/v1/queues/hq/messages/batch', { messages => [ { payload => 1 }, {} ] }, {}, 422, '22004' ],
	[ 'NULL field', 'POST', '/v1/queues/hq/ack', { delivery_ids => undef }, {}, 422, '22023' ],
	[ 'NULL field', 'POST', '/v1/queues/hq/ack', { delivery_ids => [undef] }, {}, 422, '22004' ],
	[ 'missing field', 'POST', "/v1/queues/hq/deliveries/$d_hq/extend", {}, {}, 422, '22004' ],
	[ 'NULL field', 'POST', "/v1/queues/hq/deliveries/$d_hq/extend", { visibility_timeout => undef }, {}, 422, '22004' ],
	[ 'missing field', 'POST', '/v1/queues/hq/groups', {}, {}, 422, '22004' ],
	# empty and huge bodies
	[ 'empty body', 'POST', '/v1/queues', '', {}, 422, '22004' ],
	[ 'empty body', 'POST', '/v1/queues/hq/messages', '', {}, 400, '' ],
	[ 'empty body', 'POST', '/v1/queues/hq/messages/batch', '', {}, 400, '' ],
	[ 'empty body', 'POST', '/v1/queues/hq/messages/batch', { messages => [] }, {}, 422, '22023' ],
	[ 'empty body', 'POST', '/v1/queues/hq/ack', { delivery_ids => [] }, {}, 200, '' ],
	[ 'huge body', 'POST', '/v1/queues/hq/messages', { payload => 'x' x 5000 }, {}, 413, '54000' ],
	[ 'huge body', 'POST', '/v1/queues/hq/messages', { payload => 'x' x 100_000 }, {}, 413, '54000' ],
	[ 'huge body', 'POST', '/v1/queues/hq/messages/batch', { messages => [ { payload => 1 }, { payload => 'x' x 5000 } ] }, {}, 413, '54000' ],
	[ 'huge body', 'POST', '/v1/queues/hq/messages/batch', { messages => [ map { { payload => 1 } } 1 .. 20000 ] }, {}, 413, '54000' ],
	# non-JSON and deep JSON
	[ 'non-JSON', 'POST', '/v1/queues/hq/messages', 'payload=1', {}, 400, '22P02' ],
	[ 'non-JSON', 'POST', '/v1/queues/hq/messages', '[1, 2]', {}, 422, '22004' ],
	[ 'non-JSON', 'POST', '/v1/queues/hq/messages', '"just a string"', {}, 422, '22004' ],
	[ 'non-JSON', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": ', {}, 400, '22P02' ],
	[ 'non-JSON', 'POST', "/v1/queues/hq/deliveries/$d_hq/nack", 'nack!', {}, 400, '22P02' ],
	[ 'deep JSON', 'POST', '/v1/queues/hq/messages', $deep, {}, 413, '54000' ],
	[ 'deep JSON', 'POST', '/v1/queues/hq/messages', $deep300, {}, 201, '' ],
	[ 'deep JSON', 'POST', '/v1/queues', '{"name": ' . ('[' x 3000) . (']' x 3000) . '}', {}, 400, '42602' ],
	# invalid UTF-8
	[ 'invalid UTF-8', 'POST', '/v1/queues/hq/messages', qq({"payload": "$bad8"}), {}, 422, '22021' ],
	[ 'invalid UTF-8', 'POST', '/v1/queues/heo/messages [Idempotency-Key: ?(??]', [ 'raw', "POST /v1/queues/heo/messages HTTP/1.1\r\n${hdr}Idempotency-Key: $bad8\r\nContent-Length: 14\r\n\r\n{\"payload\": 1}" ], {}, 422, '22021' ],
	[ 'invalid UTF-8', 'GET', "/v1/queues/h$bad8", [ 'raw', "GET /v1/queues/h$bad8 HTTP/1.1\r\n$hdr\r\n" ], {}, 422, '22021' ],
	[ 'invalid UTF-8', 'POST', "/v1/queues/hq/receive?group=$bad8", [ 'raw', "POST /v1/queues/hq/receive?group=$bad8 HTTP/1.1\r\n${hdr}Content-Length: 0\r\n\r\n" ], {}, 422, '22021' ],
	[ 'invalid UTF-8', 'POST', '/v1/queues/hq/receive?group=%C3%28', undef, {}, 422, '22021' ],
	# queue names: the gateway checks only that a name fits (1-63 bytes);
	# one deliver does not allow names no queue
	[ 'queue name', 'GET', "/v1/queues/a'b", undef, {}, 404, '42704' ],
	[ 'queue name', 'GET', '/v1/queues/a;DROP%20TABLE%20x', undef, {}, 404, '42704' ],
	[ 'queue name', 'POST', '/v1/queues', { name => "x'); DROP SCHEMA deliver CASCADE; --" }, {}, 400, '42602' ],
	[ 'queue name', 'GET', '/v1/queues/a.b', undef, {}, 404, '42704' ],
	[ 'queue name', 'GET', '/v1/queues/..', undef, {}, 404, '42704' ],
	[ 'queue name', 'GET', '/v1/queues/hq%2Fmessages', undef, {}, 404, '42704' ],
	[ 'queue name', 'GET', '/v1/queues/hq%2F..%2Fhq2', undef, {}, 404, '42704' ],
	[ 'queue name', 'GET', "/v1/queues/$n200", undef, {}, 400, '42602' ],
	[ 'queue name', 'GET', '/v1/queues/' . ('n' x 64), undef, {}, 400, '42602' ],
	[ 'queue name', 'GET', '/v1/queues/' . ('n' x 63), undef, {}, 404, '42704' ],
	[ 'queue name', 'POST', '/v1/queues', { name => $n200 }, {}, 400, '42602' ],
	[ 'queue name', 'POST', "/v1/queues/$n200/messages", { payload => 1 }, {}, 400, '42602' ],
	[ 'queue name', 'POST', '/v1/queues', { name => 42 }, {}, 201, '' ],
	[ 'queue name', 'DELETE', '/v1/queues/hq%00', undef, {}, 404, '42704' ],
	[ 'queue name', 'POST', '/v1/queues/hq%00/messages', { payload => 1 }, {}, 404, '42704' ],
	# numbers: the gateway checks that they parse; their range is the database's answer
	[ 'number', 'POST', '/v1/queues/hq/receive?max=-1', undef, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?max=0', undef, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?max=10001', undef, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?max=99999999999', undef, {}, 400, '22003' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?max=99999999999999999999', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?max=ten', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?max=1e3', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?max=', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?wait=-5', undef, {}, 400, '' ],
	[ 'number', 'GET', '/v1/queues/hq/stream?wait=-5', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?wait=6', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?wait=1e308', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?wait=nan', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?visibility_timeout=-1', undef, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?visibility_timeout=0', undef, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?visibility_timeout=9999999999', undef, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?visibility_timeout=9999999999999', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?visibility_timeout=1e3', undef, {}, 400, '' ],
	[ 'number', 'POST', '/v1/queues/hq/receive?visibility_timeout=inf', undef, {}, 400, '' ],
	[ 'number', 'POST', "/v1/queues/hq/deliveries/$d_hq/extend", { visibility_timeout => -1 }, {}, 422, '22023' ],
	[ 'number', 'POST', "/v1/queues/hq/deliveries/$d_hq/extend", { visibility_timeout => 'forever' }, {}, 400, '22007' ],
	[ 'number', 'POST', "/v1/queues/hq/deliveries/$d_hq/nack", { retry_after => -10 }, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues', { name => 'nq', visibility_timeout => -1 }, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues', { name => 'nq', max_attempts => 1e30 }, {}, 400, '22003' ],
	# an interval that is neither seconds nor a string is refused, not taken for "left out"
	[ 'interval', 'POST', '/v1/queues', { name => 'nq', visibility_timeout => JSON::PP::true }, {}, 422, '22023' ],
	[ 'interval', 'POST', '/v1/queues', { name => 'nq', retry_base => {} }, {}, 422, '22023' ],
	[ 'interval', 'POST', '/v1/queues', { name => 'nq', retry_max => [ 1 ] }, {}, 422, '22023' ],
	[ 'interval', 'POST', '/v1/queues/hq/messages', { payload => 1, delay => JSON::PP::false }, {}, 422, '22023' ],
	[ 'interval', 'POST', "/v1/queues/hq/deliveries/$d_hq/extend", { visibility_timeout => [] }, {}, 422, '22023' ],
	[ 'interval', 'POST', "/v1/queues/hq/deliveries/$d_hq/nack", { retry_after => {} }, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/messages', { payload => 1, delay => -5 }, {}, 422, '22023' ],
	[ 'number', 'GET', '/v1/queues/hq/dead-letters?max=-3', undef, {}, 422, '22023' ],
	[ 'number', 'GET', '/v1/queues/hq/dead-letters?max=99999999999', undef, {}, 400, '22003' ],
	[ 'number', 'GET', '/v1/queues/hq/dead-letters?max=0x10', undef, {}, 400, '' ],
	[ 'group name', 'POST', '/v1/queues/hq/receive?group=' . ('g' x 64), undef, {}, 400, '' ],
	[ 'group name', 'POST', '/v1/queues/hq/receive?group=', undef, {}, 400, '' ],
	[ 'group name', 'POST', "/v1/queues/hq/receive?group=a'b", undef, {}, 404, '42704' ],
	[ 'group name', 'GET', '/v1/queues/hq/dead-letters?group=' . ('g' x 64), undef, {}, 400, '' ],
	# delivery ids
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/999999999/ack', undef, {}, 409, '55000' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/-1/ack', undef, {}, 409, '55000' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/0/ack', undef, {}, 409, '55000' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/-9223372036854775808/ack', undef, {}, 409, '55000' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/9223372036854775808/ack', undef, {}, 400, '42602' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/--1/ack', undef, {}, 400, '42602' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/99999999999999999999/ack', undef, {}, 400, '42602' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/deliveries/1e5/ack', undef, {}, 400, '42602' ],
	[ 'delivery id', 'POST', "/v1/queues/hq/deliveries/$d_hq2/ack", undef, {}, 409, '55000' ],
	[ 'delivery id', 'POST', "/v1/queues/hq/deliveries/$d_hq2/nack", undef, {}, 409, '55000' ],
	[ 'delivery id', 'POST', "/v1/queues/hq/deliveries/$d_hq2/extend", { visibility_timeout => 5 }, {}, 409, '55000' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', { delivery_ids => [ $d_hq, $d_hq2, 999999999 ] }, {}, 409, '55000' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', { delivery_ids => [ 'x', $d_hq ] }, {}, 400, '22P02' ],
	# ids in a body: strings or numbers, 64-bit integers only
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": [1.5]}', {}, 400, '22P02' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": ["1.5"]}', {}, 400, '22P02' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": ["1e3"]}', {}, 400, '22P02' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": [1e30]}', {}, 400, '22003' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": [9223372036854775808]}', {}, 400, '22003' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": ["99999999999999999999999"]}', {}, 400, '22003' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": [true]}', {}, 400, '22P02' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": [{}]}', {}, 400, '22P02' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', '{"delivery_ids": [[1]]}', {}, 400, '22P02' ],
	[ 'delivery id', 'POST', '/v1/queues/hq/ack', qq({"delivery_ids": ["$d_hq2", -1]}), {}, 409, '55000' ],
	[ 'message id', 'POST', '/v1/queues/hq/redrive', '{"message_ids": [1.5]}', {}, 400, '22P02' ],
	[ 'message id', 'POST', '/v1/queues/hq/redrive', '{"message_ids": ["x"]}', {}, 400, '22P02' ],
	[ 'message id', 'POST', '/v1/queues/hq/redrive', '{"message_ids": [1e30]}', {}, 400, '22003' ],
	[ 'message id', 'POST', '/v1/queues/hq/redrive', '{"message_ids": "5"}', {}, 422, '22023' ],
	[ 'delivery id', 'POST', "/v1/queues/hq2/deliveries/$d_hq/ack", undef, { Authorization => 'Bearer reader-token-0123456789' }, 409, '55000' ],
	# Idempotency-Key headers
	[ 'Idempotency-Key', 'POST', '/v1/queues/heo/messages', { payload => 1 }, { 'Idempotency-Key' => '' }, 422, '22023' ],
	[ 'Idempotency-Key', 'POST', '/v1/queues/heo/messages', { payload => 1 }, { 'Idempotency-Key' => 'k' x 10000 }, 413, '54000' ],
	[ 'Idempotency-Key', 'POST', '/v1/queues/heo/messages', { payload => 1 }, { 'Idempotency-Key' => "a'; DROP TABLE x; --" }, 201, '' ],
	[ 'Idempotency-Key', 'POST', '/v1/queues/heo/messages/batch', { messages => [ map { { payload => $_ } } 1 .. 3 ] }, { 'Idempotency-Key' => 'k' x 513 }, 413, '54000' ],
	# HEAD of the stream would run its first receive (leasing messages nobody gets)
	[ 'method', 'HEAD', '/v1/queues/hq/stream', undef, {}, 405, '' ],
	[ 'Idempotency-Key', 'POST', '/v1/queues/heo/messages/batch', { messages => [ { payload => 1 }, { payload => 2, idempotency_key => '' } ] }, { 'Idempotency-Key' => 'b1' }, 422, '22023' ],
	# expiry: expires_at in sends, message_ttl and on_expire in create and PATCH
	[ 'expiry', 'POST', '/v1/queues/hq/messages', { payload => 1, expires_at => 'never' }, {}, 400, '22007' ],
	[ 'expiry', 'POST', '/v1/queues/hq/messages', { payload => 1, expires_at => { at => 1 } }, {}, 422, '22023' ],
	[ 'expiry', 'POST', '/v1/queues/hq/messages', { payload => 1, expires_at => 1e300 }, {}, 400, '22008' ],
	[ 'expiry', 'POST', '/v1/queues/hq/messages', { payload => 1, expires_at => "2030-01-01'; DROP TABLE deliver.queue; --" }, {}, 400, '22007' ],
	[ 'expiry', 'POST', '/v1/queues/hq/messages/batch', { messages => [ { payload => 1 } ], expires_at => [] }, {}, 422, '22023' ],
	[ 'expiry', 'POST', '/v1/queues/hq/messages/batch', { messages => [ { payload => 1 } ], expires_at => 'x' x 5000 }, {}, 400, '22007' ],
	[ 'expiry', 'POST', '/v1/queues', { name => 'hx', message_ttl => -1 }, {}, 422, '22023' ],
	[ 'expiry', 'POST', '/v1/queues', { name => 'hx', message_ttl => 'forever' }, {}, 400, '22007' ],
	[ 'expiry', 'POST', '/v1/queues', { name => 'hx', on_expire => "drop'; --" }, {}, 422, '22023' ],
	[ 'expiry', 'POST', '/v1/queues', { name => 'hx', on_expire => [ 'drop' ] }, {}, 422, '22023' ],
	[ 'expiry', 'PATCH', '/v1/queues/hq', undef, {}, 400, '' ],
	[ 'expiry', 'PATCH', '/v1/queues/hq', { message_ttl => 1e300 }, {}, 422, '22023' ],
	[ 'expiry', 'PATCH', '/v1/queues/hq', qq({"on_expire": "$bad8"}), {}, 422, '22021' ],
	[ 'expiry', 'PATCH', "/v1/queues/$n200", { message_ttl => 1 }, {}, 400, '42602' ],
	[ 'expiry', 'PATCH', '/v1/queues/nosuch', { message_ttl => 1 }, {}, 404, '42704' ],
	[ 'expiry', 'PATCH', '/v1/queues/hq2', { message_ttl => 1 }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'max_depth', 'POST', '/v1/queues', { name => 'hx', max_depth => 'many' }, {}, 400, '22P02' ],
	[ 'max_depth', 'POST', '/v1/queues', { name => 'hx', max_depth => 1e30 }, {}, 400, '22003' ],
	[ 'max_depth', 'POST', '/v1/queues', { name => 'hx', max_depth => 0.5 }, {}, 400, '22P02' ],
	[ 'max_depth', 'POST', '/v1/queues', { name => 'hx', guarantee => 'at_most_once', overflow => 'drop_oldest' }, {}, 501, '0A000' ],
	[ 'max_depth', 'PATCH', '/v1/queues/hq', { max_depth => -1 }, {}, 422, '22023' ],
	[ 'max_depth', 'PATCH', '/v1/queues/hq', { overflow => { a => 1 } }, {}, 422, '22023' ],
	[ 'ack_commit', 'POST', '/v1/queues', { name => 'hx', ack_commit => "async'; --" }, {}, 422, '22023' ],
	[ 'ack_commit', 'POST', '/v1/queues', { name => 'hx', ack_commit => [ 'async' ] }, {}, 422, '22023' ],
	[ 'ack_commit', 'POST', '/v1/queues', { name => 'hx', ack_commit => 'a' x 5000 }, {}, 422, '22023' ],
	[ 'ack_commit', 'POST', '/v1/queues', { name => 'hx', guarantee => 'exactly_once', ack_commit => 'async' }, {}, 501, '0A000' ],
	[ 'ack_commit', 'PATCH', '/v1/queues/hq', { ack_commit => 1 }, {}, 422, '22023' ],
	[ 'ack_commit', 'PATCH', '/v1/queues/hq2', { ack_commit => 'async' }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	# priorities: a message's priority (an integer from 0 to 9) in a send, a
	# batch and a publish; a queue's priorities (a boolean) in create and PATCH
	(map {
		my ($path, $base) = @$_;
		(
		[ 'priority', 'POST', $path, { %$base, priority => '5' }, {}, 422, '22023' ],
		[ 'priority', 'POST', $path, { %$base, priority => 2.5 }, {}, 400, '22P02' ],
		[ 'priority', 'POST', $path, { %$base, priority => -1 }, {}, 422, '22023' ],
		[ 'priority', 'POST', $path, { %$base, priority => 10 }, {}, 422, '22023' ],
		[ 'priority', 'POST', $path, { %$base, priority => 4294967296 }, {}, 400, '22003' ],
		[ 'priority', 'POST', $path, { %$base, priority => 1e30 }, {}, 400, '22003' ],
		[ 'priority', 'POST', $path, { %$base, priority => JSON::PP::true }, {}, 422, '22023' ],
		[ 'priority', 'POST', $path, { %$base, priority => [ 1 ] }, {}, 422, '22023' ],
		[ 'priority', 'POST', $path, { %$base, priority => "1'; DROP TABLE deliver.queue; --" }, {}, 422, '22023' ],
		[ 'priority', 'POST', $path, { %$base, priority => undef }, {}, 201, '' ],
		)
	} [ '/v1/queues/hp/messages', { payload => 1 } ],
	  [ '/v1/queues/hp/messages/batch', { messages => [ { payload => 1 } ] } ],
	  [ '/v1/publish', { routing_key => 'p.x', payload => 1 } ]),
	[ 'priority', 'POST', '/v1/queues/hq/messages', { payload => 1, priority => 3 }, {}, 409, '55000' ],
	[ 'priority', 'POST', '/v1/queues/hq/messages/batch', { messages => [ { payload => 1 } ], priority => 9 }, {}, 409, '55000' ],
	[ 'priority', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, priority => 1 }, {}, 409, '55000' ],
	[ 'priority', 'POST', '/v1/queues/hp/messages', { payload => 1, priority => 9 }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'priorities', 'POST', '/v1/queues', { name => 'hx', priorities => 'true' }, {}, 422, '22023' ],
	[ 'priorities', 'POST', '/v1/queues', { name => 'hx', priorities => "yes'; --" }, {}, 422, '22023' ],
	[ 'priorities', 'POST', '/v1/queues', { name => 'hx', priorities => 1 }, {}, 422, '22023' ],
	[ 'priorities', 'POST', '/v1/queues', { name => 'hx', priorities => [ JSON::PP::true ] }, {}, 422, '22023' ],
	[ 'priorities', 'POST', '/v1/queues', { name => 'hx', guarantee => 'at_most_once', priorities => JSON::PP::true }, {}, 501, '0A000' ],
	[ 'priorities', 'PATCH', '/v1/queues/hq', { priorities => 'on' }, {}, 422, '22023' ],
	[ 'priorities', 'PATCH', '/v1/queues/hq', { priorities => {} }, {}, 422, '22023' ],
	[ 'priorities', 'PATCH', '/v1/queues/hq2', { priorities => JSON::PP::true }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	# routes and methods
	[ 'route', 'GET', '/v2/queues', undef, {}, 404, '' ],
	[ 'route', 'GET', '/v1/queues/hq/nothing/here/at/all', undef, {}, 404, '' ],
	[ 'route', 'GET', '/v1/queues/hq/deliveries/1/explode', undef, {}, 404, '' ],
	[ 'route', 'GET', '/' . ('a/' x 500), undef, {}, 404, '' ],
	[ 'route', 'GET', '//v1//queues', undef, {}, 200, '' ],
	[ 'method', 'PUT', '/v1/queues/hq', undef, {}, 405, '' ],
	[ 'method', 'GET', '/v1/queues/hq/messages', undef, {}, 405, '' ],
	[ 'method', 'DELETE', '/v1/queues/hq/receive', undef, {}, 405, '' ],
	[ 'method', 'BREW', '/v1/queues', [ 'raw', "BREW /v1/queues HTTP/1.1\r\n$hdr\r\n" ], {}, 405, '' ],
	[ 'method', 'GET', '/healthz HTTP/9.9', [ 'raw', "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n" ], {}, 505, '' ],
	[ 'request line', 'GARBAGE', '', [ 'raw', "\x00\x01\x02 garbage\r\n\r\n" ], {}, 0, '' ],
	# headers
	[ 'oversized header', 'GET', '/v1/queues (X-Big: 100 kB)', [ 'raw', "GET /v1/queues HTTP/1.1\r\n${hdr}X-Big: " . ('b' x 100_000) . "\r\n\r\n" ], {}, 431, '' ],
	[ 'oversized header', 'GET', '/v1/queues (2000 headers)', [ 'raw', "GET /v1/queues HTTP/1.1\r\n$hdr" . join('', map { "X-H$_: v\r\n" } 1 .. 2000) . "\r\n" ], {}, 431, '' ],
	[ 'oversized header', 'POST', '/v1/queues/hq/messages (Authorization 20 kB)', { payload => 1 }, { Authorization => 'Bearer ' . ('t' x 20_000) }, 401, '28000' ],
	[ 'bad header', 'POST', '/v1/queues/hq/messages (Content-Length: -1)', [ 'raw', "POST /v1/queues/hq/messages HTTP/1.1\r\n${hdr}Content-Length: -1\r\n\r\n" ], {}, 400, '' ],
	[ 'bad header', 'POST', '/v1/queues/hq/messages (Content-Length: 10^20)', [ 'raw', "POST /v1/queues/hq/messages HTTP/1.1\r\n${hdr}Content-Length: 99999999999999999999\r\n\r\n" ], {}, 413, '' ],
	[ 'bad header', 'GET', '/v1/queues/hq/stream (Last-Event-ID: -1)', undef, { 'Last-Event-ID' => '-1' }, 400, '' ],
	[ 'bad header', 'GET', '/v1/queues (Authorization: Basic)', undef, { Authorization => 'Basic YTpi' }, 401, '28000' ],
	# token roles: none would run as the gateway's login role; the other
	# reserved names name no role
	(map { [ 'token role', 'GET', "/v1/queues (JWT role \"$_\")", undef, role_jwt($_), 401, '28000' ] }
		'none', 'NONE', 'public', 'PUBLIC', 'current_user', 'session_user', 'current_role', 'CURRENT_ROLE', '',
		'r' x 64, "reader\0x"),
	[ 'token role', 'POST', '/v1/queues/hq/receive (JWT role "none")', undef, role_jwt('none'), 401, '28000' ],
	[ 'token role', 'GET', '/v1/queues (JWT role "ghost")', undef, role_jwt('ghost'), 403, '22023' ],
	[ 'token role', 'GET', '/v1/queues (JWT role "reader")', undef, role_jwt('reader'), 200, '' ],
	# a stream outliving its token: ended by the gateway at exp, with an event saying why
	[ 'token expiry', 'GET', '/v1/queues/hexp/stream (JWT expiring in 2 s)', [ 'raw', sub {
		my $jwt = gw_jwt($secret, role => $super, exp => int(time()) + 2);
		return "GET /v1/queues/hexp/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $jwt\r\n\r\n" } ],
		{}, 200, 'end token_expired' ],
	# a token's exp is any JSON number: far ones are clamped before they
	# bound a long poll (a double beyond long's range does not convert)
	(map { [ 'token expiry', 'POST', "/v1/queues/hexp/receive?wait=1 (JWT exp $_)", undef,
		{ Authorization => 'Bearer ' . gw_jwt($secret, role => $super, exp => $_ + 0) }, 200, '' ] } 1e300, 1e19, 9.3e15),
	[ 'token expiry', 'POST', '/v1/queues/hexp/receive (JWT exp -1e300)', undef,
		{ Authorization => 'Bearer ' . gw_jwt($secret, role => $super, exp => -1e300) }, 401, '28000' ],
	# flow control: pause, resume, rate
	[ 'group name', 'POST', '/v1/queues/hq/groups/' . ('g' x 64) . '/pause', undef, {}, 400, '42602' ],
	[ 'group name', 'POST', "/v1/queues/hq/groups/a'b/pause", undef, {}, 400, '42602' ],
	[ 'group name', 'POST', '/v1/queues/hq/groups/a%2Fb/resume', undef, {}, 400, '42602' ],
	[ 'group name', 'POST', '/v1/queues/hq/groups/nosuch/resume', undef, {}, 404, '42704' ],
	[ 'missing field', 'PUT', '/v1/queues/hq/groups/default/rate', { burst => 5 }, {}, 400, '22P02' ],
	[ 'missing field', 'PUT', '/v1/queues/hq/groups/default/rate', {}, {}, 400, '22P02' ],
	[ 'queue name', 'POST', "/v1/queues/x';--/groups/default/pause", undef, {}, 404, '42704' ],
	[ 'queue name', 'PUT', "/v1/queues/$n200/groups/default/rate", { per_second => 1 }, {}, 400, '42602' ],
	[ 'missing body', 'PUT', '/v1/queues/hq/groups/default/rate', undef, {}, 400, '' ],
	[ 'non-JSON', 'PUT', '/v1/queues/hq/groups/default/rate', 'per_second=1', {}, 400, '22P02' ],
	[ 'deep JSON', 'PUT', '/v1/queues/hq/groups/default/rate', $deep, {}, 400, '22P02' ],
	[ 'number', 'PUT', '/v1/queues/hq/groups/default/rate', { per_second => -1 }, {}, 422, '22023' ],
	[ 'number', 'PUT', '/v1/queues/hq/groups/default/rate', { per_second => 'NaN' }, {}, 422, '22023' ],
	[ 'number', 'PUT', '/v1/queues/hq/groups/default/rate', '{"per_second": 1e400}', {}, 400, '22003' ],
	[ 'number', 'PUT', '/v1/queues/hq/groups/default/rate', { per_second => 1, burst => 99999999999 }, {}, 400, '22003' ],
	[ 'number', 'PUT', '/v1/queues/hq/groups/default/rate', { per_second => {} }, {}, 400, '22P02' ],
	[ 'number', 'PUT', '/v1/queues/hq/groups/default/rate', { per_second => [1] }, {}, 400, '22P02' ],
	[ 'NULL field', 'PUT', '/v1/queues/hq/groups/default/rate', { per_second => undef, burst => 5 }, {}, 422, '22023' ],
	[ 'method', 'DELETE', '/v1/queues/hq/groups/default/pause', undef, {}, 405, '' ],
	[ 'method', 'GET', '/v1/queues/hq/groups/default/rate', undef, {}, 405, '' ],
	[ 'route', 'POST', '/v1/queues/hq/groups/default/explode', undef, {}, 404, '' ],
	[ 'no grant', 'POST', '/v1/queues/hq2/groups/default/pause', undef, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'no grant', 'PUT', '/v1/queues/hq2/groups/default/rate', { per_second => 1 }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'number', 'PUT', '/v1/queues/hq/fifo-key-limit', { max_in_flight_per_key => 1.5 }, {}, 400, '22P02' ],
	[ 'number', 'PUT', '/v1/queues/hq/fifo-key-limit', { max_in_flight_per_key => 99999999999 }, {}, 400, '22003' ],
	[ 'number', 'PUT', '/v1/queues/hq/fifo-key-limit', { max_in_flight_per_key => -1 }, {}, 422, '22023' ],
	[ 'NULL field', 'PUT', '/v1/queues/hq/fifo-key-limit', { max_in_flight_per_key => undef }, {}, 422, '22004' ],
	[ 'missing body', 'PUT', '/v1/queues/hq/fifo-key-limit', undef, {}, 400, '' ],
	[ 'non-JSON', 'PUT', '/v1/queues/hq/fifo-key-limit', 'n=2', {}, 400, '22P02' ],
	[ 'state', 'PUT', '/v1/queues/hq/fifo-key-limit', { max_in_flight_per_key => 2 }, {}, 409, '55000' ],
	[ 'queue name', 'PUT', "/v1/queues/x';--/fifo-key-limit", { max_in_flight_per_key => 2 }, {}, 404, '42704' ],
	[ 'method', 'POST', '/v1/queues/hq/fifo-key-limit', undef, {}, 405, '' ],
	[ 'no grant', 'PUT', '/v1/queues/hq2/fifo-key-limit', { max_in_flight_per_key => 2 }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	# topic routing: /v1/publish, /v1/bindings, /v1/routing
	[ 'missing field', 'POST', '/v1/publish', { payload => 1 }, {}, 422, '22004' ],
	[ 'missing field', 'POST', '/v1/publish', { routing_key => 'r.x' }, {}, 422, '22004' ],
	[ 'NULL field', 'POST', '/v1/publish', { routing_key => undef, payload => 1 }, {}, 422, '22004' ],
	[ 'NULL field', 'POST', '/v1/publish', { routing_key => 'r.x', payload => undef }, {}, 201, '' ],
	[ 'empty body', 'POST', '/v1/publish', '', {}, 400, '' ],
	[ 'non-JSON', 'POST', '/v1/publish', 'routing_key=r.x', {}, 400, '22P02' ],
	[ 'non-JSON', 'POST', '/v1/publish', '[1]', {}, 422, '22004' ],
	[ 'huge body', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 'x' x 5000 }, {}, 413, '54000' ],
	[ 'deep JSON', 'POST', '/v1/publish', '{"routing_key": "r.x", "payload": ' . ('[' x 5000) . (']' x 5000) . '}', {}, 413, '54000' ],
	[ 'invalid UTF-8', 'POST', '/v1/publish', qq({"routing_key": "r.$bad8", "payload": 1}), {}, 422, '22021' ],
	[ 'routing key', 'POST', '/v1/publish', { routing_key => 'r.*', payload => 1 }, {}, 422, '22023' ],
	[ 'routing key', 'POST', '/v1/publish', { routing_key => 'r..x', payload => 1 }, {}, 422, '22023' ],
	[ 'routing key', 'POST', '/v1/publish', { routing_key => 'r' x 256, payload => 1 }, {}, 422, '22023' ],
	[ 'routing key', 'POST', '/v1/publish', { routing_key => 42, payload => 1 }, {}, 201, '' ],
	[ 'routing key', 'POST', '/v1/publish', { routing_key => "r.x'; DROP TABLE deliver.binding; --", payload => 1 }, {}, 201, '' ],
	[ 'routing key', 'POST', '/v1/publish', { routing_key => 'nobody.bound', payload => 1, mandatory => JSON::PP::true }, {}, 404, '42704' ],
	[ 'routing key', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, mandatory => 'yes please' }, {}, 400, '22P02' ],
	[ 'number', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, delay => -5 }, {}, 422, '22023' ],
	[ 'interval', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, delay => {} }, {}, 422, '22023' ],
	# expires_at: read as the send route reads it
	[ 'expiry', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, expires_at => 'never' }, {}, 400, '22007' ],
	[ 'expiry', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, expires_at => { at => 1 } }, {}, 422, '22023' ],
	[ 'expiry', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, expires_at => 1e300 }, {}, 400, '22008' ],
	[ 'expiry', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, expires_at => "2030-01-01'; DROP TABLE deliver.queue; --" }, {}, 400, '22007' ],
	[ 'expiry', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1, expires_at => 'x' x 5000 }, {}, 400, '22007' ],
	[ 'Idempotency-Key', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1 }, { 'Idempotency-Key' => 'k' x 10000 }, 413, '54000' ],
	[ 'no grant', 'POST', '/v1/publish', { routing_key => 'r.x', payload => 1 }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'missing field', 'POST', '/v1/bindings', { queue => 'hq' }, {}, 422, '22004' ],
	[ 'missing field', 'POST', '/v1/bindings', { pattern => 'a' }, {}, 422, '22004' ],
	[ 'empty body', 'POST', '/v1/bindings', '', {}, 400, '' ],
	[ 'empty body', 'DELETE', '/v1/bindings', '', {}, 400, '' ],
	[ 'non-JSON', 'POST', '/v1/bindings', '{"pattern": ', {}, 400, '22P02' ],
	[ 'pattern', 'POST', '/v1/bindings', { pattern => '', queue => 'hq' }, {}, 422, '22023' ],
	[ 'pattern', 'POST', '/v1/bindings', { pattern => 'a.b#', queue => 'hq' }, {}, 422, '22023' ],
	[ 'pattern', 'POST', '/v1/bindings', { pattern => 'a' x 100_000, queue => 'hq' }, {}, 413, '54000' ],
	[ 'pattern', 'POST', '/v1/bindings', { pattern => 'p' x 256, queue => 'hq' }, {}, 422, '22023' ],
	[ 'pattern', 'DELETE', '/v1/bindings', { pattern => 'a..b', queue => 'hq' }, {}, 422, '22023' ],
	[ 'queue name', 'POST', '/v1/bindings', { pattern => 'a', queue => $n200 }, {}, 404, '42704' ],
	[ 'queue name', 'DELETE', '/v1/bindings', { pattern => 'a', queue => "x'; DROP TABLE deliver.queue; --" }, {}, 404, '42704' ],
	[ 'no grant', 'POST', '/v1/bindings', { pattern => 'a', queue => 'hq2' }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'no grant', 'DELETE', '/v1/bindings', { pattern => 'r.*', queue => 'hq2' }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'queue name', 'GET', '/v1/bindings?queue=' . ('q' x 64), undef, {}, 400, '' ],
	[ 'queue name', 'GET', "/v1/bindings?queue=a'b", undef, {}, 200, '' ],
	[ 'routing key', 'GET', '/v1/routing', undef, {}, 400, '' ],
	[ 'routing key', 'GET', '/v1/routing?key=r.%23', undef, {}, 422, '22023' ],
	[ 'routing key', 'GET', '/v1/routing?key=%C3%28', undef, {}, 422, '22021' ],
	[ 'routing key', 'GET', '/v1/routing?key=' . ('a.' x 2000) . 'a', undef, {}, 422, '22023' ],
	[ 'method', 'PUT', '/v1/bindings', undef, {}, 405, '' ],
	[ 'method', 'GET', '/v1/publish', undef, {}, 405, '' ],
	[ 'method', 'POST', '/v1/routing', undef, {}, 405, '' ],
	# inspection: delete a message, reset a group, nack to the dead letters, redrive to another queue
	[ 'message id', 'DELETE', '/v1/queues/hq/messages/abc', undef, {}, 400, '42602' ],
	[ 'message id', 'DELETE', '/v1/queues/hq/messages/99999999999999999999', undef, {}, 400, '42602' ],
	[ 'message id', 'DELETE', '/v1/queues/hq/messages/1.5', undef, {}, 400, '42602' ],
	[ 'queue name', 'DELETE', "/v1/queues/x';--/messages/1", undef, {}, 404, '42704' ],
	[ 'method', 'POST', '/v1/queues/hq/messages/1', undef, {}, 405, '' ],
	[ 'no grant', 'DELETE', '/v1/queues/hq2/messages/1', undef, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'missing field', 'POST', '/v1/queues/hq/groups/default/reset', {}, {}, 422, '22004' ],
	[ 'missing body', 'POST', '/v1/queues/hq/groups/default/reset', undef, {}, 400, '' ],
	[ 'non-JSON', 'POST', '/v1/queues/hq/groups/default/reset', 'to=latest', {}, 400, '22P02' ],
	[ 'deep JSON', 'POST', '/v1/queues/hq/groups/default/reset', $deep, {}, 422, '22004' ],
	[ 'position', 'POST', '/v1/queues/hq/groups/default/reset', { to => 'soon' }, {}, 422, '22023' ],
	[ 'position', 'POST', '/v1/queues/hq/groups/default/reset', { to => {} }, {}, 422, '22023' ],
	[ 'position', 'POST', '/v1/queues/hq/groups/default/reset', { to => '0' }, {}, 422, '22023' ],
	[ 'position', 'POST', '/v1/queues/hq/groups/default/reset', { to => '1900-01-01' }, {}, 422, '22023' ],
	[ 'position', 'POST', '/v1/queues/hq/groups/default/reset', { to => 'x' x 100_000 }, {}, 413, '54000' ],
	[ 'group name', 'POST', '/v1/queues/hq/groups/' . ('g' x 64) . '/reset', { to => 'latest' }, {}, 400, '42602' ],
	# replay of the archive into a group
	[ 'non-JSON', 'POST', '/v1/queues/hq/groups/default/replay', 'since=now', {}, 400, '22P02' ],
	[ 'deep JSON', 'POST', '/v1/queues/hq/groups/default/replay', $deep, {}, 409, '55000' ],
	[ 'time', 'POST', '/v1/queues/hq/groups/default/replay', { since => 'soon' }, {}, 400, '22007' ],
	[ 'time', 'POST', '/v1/queues/hq/groups/default/replay', { since => {} }, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/groups/default/replay', { after_id => 'x' }, {}, 400, '22P02' ],
	[ 'number', 'POST', '/v1/queues/hq/groups/default/replay', { after_id => '99999999999999999999' }, {}, 400, '22003' ],
	[ 'number', 'POST', '/v1/queues/hq/groups/default/replay', { max_messages => 0 }, {}, 422, '22023' ],
	[ 'number', 'POST', '/v1/queues/hq/groups/default/replay', { max_messages => 1e12 }, {}, 400, '22003' ],
	[ 'huge body', 'POST', '/v1/queues/hq/groups/default/replay', { since => 'x' x 100_000 }, {}, 413, '54000' ],
	[ 'group name', 'POST', '/v1/queues/hq/groups/' . ('g' x 64) . '/replay', {}, {}, 400, '42602' ],
	[ 'group name', 'POST', '/v1/queues/hq/groups/nobody/replay', {}, {}, 404, '42704' ],
	[ 'group name', 'POST', "/v1/queues/hq/groups/a'b/reset", { to => 'latest' }, {}, 404, '42704' ],
	[ 'method', 'GET', '/v1/queues/hq/groups/default/reset', undef, {}, 405, '' ],
	[ 'no grant', 'POST', '/v1/queues/hq2/groups/default/reset', { to => 'latest' }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
	[ 'boolean', 'POST', "/v1/queues/hq/deliveries/$d_hq/nack", { dead_letter => 'yes' }, {}, 422, '22023' ],
	[ 'boolean', 'POST', "/v1/queues/hq/deliveries/$d_hq/nack", { dead_letter => 1 }, {}, 422, '22023' ],
	[ 'queue name', 'POST', '/v1/queues/hq/redrive', { to_queue => 'nowhere' }, {}, 404, '42704' ],
	[ 'queue name', 'POST', '/v1/queues/hq/redrive', { to_queue => "x';--" }, {}, 404, '42704' ],
	[ 'queue name', 'POST', '/v1/queues/hq/redrive', { to_queue => 'hq' }, {}, 422, '22023' ],
	[ 'no grant', 'POST', '/v1/queues/hq2/redrive', { to_queue => 'hq' }, { Authorization => 'Bearer reader-token-0123456789' }, 403, '42501' ],
);

my ($pass, $n) = (0, 0);
my $state = query_one($node, $state_sql);
for my $c (@c)
{
	my ($cat, $method, $path, $body, $headers, $want, $want_ss) = @$c;
	$n++;
	my ($st, $b);
	if (ref $body eq 'ARRAY' && $body->[0] eq 'raw')
	{
		($st, $b) = gw_raw($gw, ref $body->[1] eq 'CODE' ? $body->[1]->() : $body->[1]);
		# an event stream the gateway ended: its reason stands for the SQLSTATE
		$b = { sqlstate => "end $1" } if $b =~ /^event: end\r?\ndata: \{"reason":"(\w+)"\}/m;
		$b = eval { JSON::PP->new->decode($b) } // $b;
	}
	else
	{
		my %h = %$headers;
		my %o = (headers => \%h);
		$o{token} = $T unless exists $h{Authorization};
		$o{body} = $body if defined $body;
		(my $p = $path) =~ s/ \(.*\)$//;
		($st, $b) = gw_req($gw, $method, $p, %o);
	}
	my $ss = ref $b eq 'HASH' ? ($b->{sqlstate} // '') : '';
	my $got = $st == 0 ? 'closed' : $ss ne '' ? "$st $ss" : "$st";
	my $want_s = $want == 0 ? 'closed' : $want_ss ne '' ? "$want $want_ss" : "$want";
	my $alive = gw_alive($gw);
	my $after = query_one($node, $state_sql);
	my $clean = $st =~ /^2/ || $after eq $state;
	$state = $after;
	(my $short = "$method $path") =~ s/[^\x20-\x7e]/?/g;
	$short = substr($short, 0, 70) . '...' if length($short) > 73;
	my $bd = !defined $body ? '' : ref $body eq 'ARRAY' ? '' : ref $body ? JSON::PP->new->canonical->encode($body) : $body;
	$bd =~ s/[^\x20-\x7e]/?/g;
	$bd = substr($bd, 0, 40) . '...' if length($bd) > 43;
	$short .= " $bd" if $bd ne '';
	my $hd = join ' ', map { my $v = $headers->{$_}; $v = substr($v, 0, 12) . '...' if length $v > 15; $v =~ s/[^\x20-\x7e]/?/g; "$_: $v" } sort keys %$headers;
	$short .= " [$hd]" if $hd ne '';
	my $verdict = ($got eq $want_s && $alive && $clean) ? 'pass' : 'FAIL';
	ok($verdict eq 'pass', "$cat: $short -> $want_s")
	  or diag("got $got, gateway alive: $alive, state unchanged: $clean" . (ref $b ? '' : ", body: " . substr($b // '', 0, 200)));
	$pass++ if $verdict eq 'pass';
	write_result('hostile.tsv', "gateway: $cat", $short, $want_s, $got, $verdict);
}
note("$pass of $n hostile requests behaved as expected");

# the leases attacked above are intact and ack once
is(query_one($node, "SELECT deliver.ack('hq', $d_hq) AND deliver.ack('hq2', $d_hq2)"), 't',
	'the attacked leases are intact');
is(gw_stop($gw), 0, 'the gateway stops cleanly after the catalogue');
is(gw_sanitizer_reports($gw), '', 'no AddressSanitizer, LeakSanitizer or UBSan reports');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|server process .* exited with exit code [^0]/, 'no backend crashed');
$node->stop;
done_testing();
