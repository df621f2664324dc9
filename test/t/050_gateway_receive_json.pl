# deliverd writes a receive's answer from its rows (gateway/src/received.c)
# rather than with json_agg in the database: the bytes must be those
# json_agg gives for the same messages, whatever their payloads, headers
# and ordering keys hold (escapes, control characters, non-ASCII), and []
# when there is nothing.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use GatewayTest;

my $node = deliver_node('gw_receive_json');
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{SELECT deliver.create_queue('rj')});
my $gw = gateway_start($node, tokens => { 'token-of-the-owner' => $super });
ok(gw_alive($gw), 'deliverd starts');
my $tok = 'token-of-the-owner';

my ($st, $b, $r) = gw_req($gw, 'POST', '/v1/queues/rj/receive?max=10', token => $tok);
is($st, 200, 'receive from an empty queue: 200');
is($r->{content}, '[]', 'and exactly []');

# messages whose JSON needs every kind of escape
$node->safe_psql('postgres', q{
    SELECT deliver.send('rj', '{"a": "é\u0001x\n", "b": [1, 2.50, null, true], "c": {"d": "\"\\\\"}}',
        headers => '{"h": 1, "u": "\u2028"}', ordering_key => 'k"' || chr(92) || chr(10) || chr(127)
            || chr(8) || chr(12) || chr(13) || chr(9) || chr(31) || 'é/ ');
    SELECT deliver.send('rj', '"just a string"');
    SELECT deliver.send('rj', 'null', ordering_key => '');
    SELECT deliver.send('rj', '[1, {"q": "x"}]', headers => '{}', ordering_key => chr(1) || chr(2));
    SELECT deliver.send('rj', '12345678901234567890.5');
});

# the old way, in a transaction rolled back (the messages come back at once)
my $old = $node->safe_psql('postgres', q{
    BEGIN;
    SELECT coalesce(json_agg(x), '[]') FROM (SELECT r.message_id::text AS message_id,
        r.delivery_id::text AS delivery_id, r.payload, r.headers, r.ordering_key, r.attempt,
        r.enqueued_at, r.lease_expires_at FROM deliver.receive('rj', 10) r) x;
    ROLLBACK;
});
($st, $b, $r) = gw_req($gw, 'POST', '/v1/queues/rj/receive?max=10', token => $tok);
is($st, 200, 'receive: 200');
is(ref $b eq 'ARRAY' ? scalar @$b : -1, 5, 'five messages');

# what differs between two receives of the same messages: the delivery,
# its lease, its attempt
sub norm
{
	my ($s) = @_;
	$s =~ s/"delivery_id":"\d+"/"delivery_id":"D"/g;
	$s =~ s/"lease_expires_at":"[^"]*"/"lease_expires_at":"L"/g;
	$s =~ s/"attempt":\d+/"attempt":A/g;
	return $s;
}
is(norm($r->{content}), norm($old), 'the same bytes as json_agg');
like($r->{content}, qr/"ordering_key":"k\\"\\\\\\n\x7f\\b\\f\\r\\t\\u001f\xc3\xa9\/ "/,
	'ordering_key escaped as Postgres escapes JSON');
like($r->{content}, qr/"delivery_id":"\d+"/, 'delivery ids are strings');

# the ids handed out are those of the leases: ack them all
my @ids = map { $_->{delivery_id} } @$b;
($st, $b) = gw_req($gw, 'POST', '/v1/queues/rj/ack', token => $tok, body => { delivery_ids => \@ids });
is($st, 200, 'ack of the delivery ids received');
is(ref $b eq 'HASH' ? $b->{acked} : -1, 5, 'all five acked');

gw_stop($gw);
is(gw_sanitizer_reports($gw), '', 'no sanitizer report');
done_testing();
