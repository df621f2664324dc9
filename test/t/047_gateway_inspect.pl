# deliverd routes of inspection: nack to the dead letters ({"dead_letter":
# true}), redrive to another queue ({"to_queue": ...}) and DELETE
# /v1/queues/{queue}/messages/{message_id}, reset and replay of a group:
# success, bad input, rights.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use GatewayTest;

my $node = deliver_node('gw_inspect');
my $super = query_one($node, 'SELECT current_user');
$node->safe_psql('postgres', q{
    CREATE ROLE app_reader NOLOGIN;
    SELECT deliver.create_queue('iq');
    SELECT deliver.create_queue('iq_to');
    SELECT deliver.grant_queue('iq', 'app_reader', 'receive');
});
my $secret = 'test-secret-0123456789-0123456789-abcdef';
my $gw = gateway_start($node, tokens => { 'static-token-for-the-reader' => 'app_reader' },
	env => { DELIVERD_JWT_SECRET => $secret });
ok(gw_alive($gw), 'deliverd starts');
my $admin = gw_jwt($secret, role => $super, exp => time() + 3600);
my $reader = 'static-token-for-the-reader';
sub req { return gw_req($gw, @_); }

# nack to the dead letters
$node->safe_psql('postgres', q{SELECT deliver.send('iq', '{"n": 1}', ordering_key => 'k')});
my ($st, $b) = req('POST', '/v1/queues/iq/receive?max=1', token => $reader);
is($st, 200, 'receive');
my $d = ref $b eq 'ARRAY' && $b->[0] ? $b->[0]{delivery_id} : 'none';
($st, $b) = req('POST', "/v1/queues/iq/deliveries/$d/nack", token => $reader,
	body => { error => 'cannot parse', dead_letter => JSON::PP::true });
is($st, 200, 'nack with dead_letter: 200');
is(ref $b eq 'HASH' && $b->{nacked} ? 'yes' : 'no', 'yes', 'nacked: true');
is(query_one($node, q{SELECT format('%s/%s/%s', message_id, reason, last_error) FROM deliver.dead_letters('iq')}),
	'1/rejected/cannot parse', 'the message is a dead letter at once, reason rejected');
($st, $b) = req('POST', "/v1/queues/iq/deliveries/$d/nack", token => $reader, body => { dead_letter => JSON::PP::true });
is($st, 409, 'the nacked delivery is not current any more: 409');
$node->safe_psql('postgres', q{SELECT deliver.send('iq', '{"n": 2}')});
($st, $b) = req('POST', '/v1/queues/iq/receive?max=1', token => $reader);
$d = ref $b eq 'ARRAY' && $b->[0] ? $b->[0]{delivery_id} : 'none';
($st, $b) = req('POST', "/v1/queues/iq/deliveries/$d/nack", token => $reader, body => { dead_letter => 'yes' });
is($st, 422, 'dead_letter that is no boolean: 422');
is(ref $b eq 'HASH' ? $b->{sqlstate} : '', '22023', 'sqlstate 22023');
($st, $b) = req('POST', "/v1/queues/iq/deliveries/$d/nack", token => $reader,
	body => { dead_letter => JSON::PP::true, retry_after => 5 });
is($st, 422, 'dead_letter with retry_after: 422');
($st, $b) = req('POST', "/v1/queues/iq/deliveries/$d/nack", token => $reader, body => { dead_letter => JSON::PP::false });
is($st, 200, 'dead_letter false: a plain nack');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('iq')}), '1', 'and no dead letter');

# redrive to another queue
($st, $b) = req('POST', '/v1/queues/iq/redrive', token => $reader, body => { to_queue => 'iq_to' });
is($st, 403, 'redrive as a role without EXECUTE on it: 403');
($st, $b) = req('POST', '/v1/queues/iq/redrive', token => $admin, body => { to_queue => 'nowhere' });
is($st, 404, 'redrive to a queue that does not exist: 404');
($st, $b) = req('POST', '/v1/queues/iq/redrive', token => $admin, body => { to_queue => 'iq' });
is($st, 422, 'redrive to the queue itself: 422');
($st, $b) = req('POST', '/v1/queues/iq/redrive', token => $admin, body => { to_queue => 'iq_to' });
is($st, 200, 'redrive to another queue: 200');
is(ref $b eq 'HASH' ? $b->{redriven} : '', 1, 'one dead letter redriven');
is(query_one($node, q{SELECT format('%s/%s', payload, ordering_key) FROM deliver.receive('iq_to')}),
	'{"n": 1}/k', 'the message is in the other queue, its ordering key kept');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('iq')}), '0', 'and no dead letter is left');

# DELETE a message
my $m = query_one($node, q{SELECT deliver.send('iq', '{"n": 3}')});
($st, $b) = req('DELETE', "/v1/queues/iq/messages/$m", token => $reader);
is($st, 403, 'delete_message as a role without EXECUTE on it: 403');
($st, $b) = req('DELETE', "/v1/queues/iq/messages/$m", token => $admin);
is($st, 200, 'DELETE a message: 200');
is(ref $b eq 'HASH' && $b->{deleted} ? 'yes' : 'no', 'yes', 'deleted: true');
($st, $b) = req('DELETE', "/v1/queues/iq/messages/$m", token => $admin);
is(ref $b eq 'HASH' && !$b->{deleted} ? 'no' : 'yes', 'no', 'deleted again: false');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('iq', 10) WHERE payload->>'n' = '3'}), '0',
	'the deleted message is not received');
($st, $b) = req('DELETE', '/v1/queues/iq/messages/abc', token => $admin);
is($st, 400, 'a message id that is no integer: 400');
($st, $b) = req('DELETE', '/v1/queues/iq/messages/99999999999999999999', token => $admin);
is($st, 400, 'a message id beyond bigint: 400');
($st, $b) = req('DELETE', '/v1/queues/nowhere/messages/1', token => $admin);
is($st, 404, 'a queue that does not exist: 404');
($st, $b) = req('POST', "/v1/queues/iq/messages/$m", token => $admin, body => {});
is($st, 405, 'POST on a message: 405');
($st, $b) = req('DELETE', "/v1/queues/iq/messages/$m");
is($st, 401, 'without a token: 401');

# POST .../groups/{group}/reset
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('iseek');
    SELECT deliver.send('iseek', '{"n": 1}');
    SELECT deliver.send('iseek', '{"n": 2}');
    SELECT deliver.send('iseek', '{"n": 3}');
    SELECT deliver.ack('iseek', delivery_id) FROM deliver.receive('iseek', 10);
});
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $admin, body => { to => 'earliest' });
is($st, 200, 'reset to earliest: 200');
is(ref $b eq 'HASH' && $b->{reset} ? 'yes' : 'no', 'yes', 'reset: true');
is(query_one($node, q{SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM deliver.receive('iseek', 10)}),
	'1,2,3', 'every stored message is delivered again');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $admin, body => { to => 2 });
is($st, 200, 'reset to a message id given as a number: 200');
is(query_one($node, q{SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM deliver.receive('iseek', 10)}),
	'2,3', 'from that message on');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $admin, body => { to => 'latest' });
is($st, 200, 'reset to latest: 200');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('iseek', 10)}), '0', 'nothing stored is delivered again');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $admin, body => { to => 'someday' });
is($st, 422, 'a position that is none: 422');
is(ref $b eq 'HASH' ? $b->{sqlstate} : '', '22023', 'sqlstate 22023');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $admin, body => { to => '0' });
is($st, 422, 'a message id older than what is stored: 422');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $admin, body => {});
is($st, 422, 'no "to": 422');
is(ref $b eq 'HASH' ? $b->{sqlstate} : '', '22004', 'sqlstate 22004');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $admin);
is($st, 400, 'no body: 400');
($st, $b) = req('POST', '/v1/queues/iseek/groups/nobody/reset', token => $admin, body => { to => 'latest' });
is($st, 404, 'an unknown group: 404');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/reset', token => $reader, body => { to => 'latest' });
is($st, 403, 'as a role without EXECUTE on reset_consumer_group: 403');
($st, $b) = req('GET', '/v1/queues/iseek/groups/default/reset', token => $admin);
is($st, 405, 'GET on reset: 405');
($st, $b) = req('POST', '/v1/queues/iseek/groups/default/rewind', token => $admin, body => {});
is($st, 404, 'another action on a group: 404');

# POST .../groups/{group}/replay: the archive sent again to one group.  The
# archive is filled here as maintenance fills it when it truncates a segment
# (pgTAP archive.sql goes through maintenance).
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('ireplay');
    SELECT deliver.create_consumer_group('ireplay', 'audit');
    SELECT deliver.grant_queue('ireplay', 'app_reader', 'receive');
});
($st, $b) = req('POST', '/v1/queues/ireplay/groups/audit/replay', token => $admin, body => {});
is($st, 409, 'replay of a queue that keeps no archive: 409');
is(ref $b eq 'HASH' ? $b->{sqlstate} : '', '55000', 'sqlstate 55000');
$node->safe_psql('postgres', q{
    SELECT deliver.alter_queue('ireplay', archive_retention => '1 day');
    DO $$ BEGIN
        EXECUTE format('INSERT INTO deliver.%I (message_id, enqueued_at, ordering_key, payload) '
                       'VALUES (7, now() - interval ''1 hour'', ''k'', ''{"n": 7}''), (8, now(), NULL, ''{"n": 8}'')',
                       (SELECT format('q%s_archive', queue_id) FROM deliver.queue WHERE queue_name = 'ireplay'));
    END $$;
});
($st, $b) = req('POST', '/v1/queues/ireplay/groups/audit/replay', token => $admin, body => { max_messages => 1 });
is($st, 200, 'replay: 200');
is(ref $b eq 'HASH' ? "$b->{replayed}/$b->{last_id}" : '', '1/7', 'one message replayed, the last id as a string');
($st, $b) = req('POST', '/v1/queues/ireplay/groups/audit/replay', token => $admin,
	body => { after_id => '7', since => time() - 7200 });
is(ref $b eq 'HASH' ? "$b->{replayed}/$b->{last_id}" : '', '1/8', 'going on after_id 7 (a Unix time as since)');
($st, $b) = req('POST', '/v1/queues/ireplay/groups/audit/replay', token => $admin, body => { after_id => 8 });
is(ref $b eq 'HASH' && $b->{replayed} == 0 && !defined $b->{last_id} ? 'none' : 'some', 'none',
	'nothing after the last: last_id null');
($st, $b) = req('POST', '/v1/queues/ireplay/receive?max=10&group=audit', token => $reader);
is(ref $b eq 'ARRAY' ? join(',', map { $_->{payload}{n} } @$b) : '', '7,8', 'the group receives the replayed messages');
($st, $b) = req('POST', '/v1/queues/ireplay/receive?max=10', token => $reader);
is(ref $b eq 'ARRAY' ? scalar(@$b) : -1, 0, 'the default group gets nothing');
($st, $b) = req('POST', '/v1/queues/ireplay/groups/audit/replay', token => $admin, body => { since => '2000-01-01' });
is($st, 422, 'since older than the archive keeps: 422');
($st, $b) = req('POST', '/v1/queues/ireplay/groups/audit/replay', token => $admin, body => { max_messages => 0 });
is($st, 422, 'max_messages 0: 422');
($st, $b) = req('POST', '/v1/queues/ireplay/groups/nobody/replay', token => $admin, body => {});
is($st, 404, 'replay to an unknown group: 404');
($st, $b) = req('POST', '/v1/queues/ireplay/groups/audit/replay', token => $reader, body => {});
is($st, 403, 'as a role without EXECUTE on replay_archive: 403');

# described in openapi.json
($st, $b) = req('GET', '/openapi.json');
ok(ref $b eq 'HASH' && $b->{paths}{'/v1/queues/{queue}/messages/{message_id}'}{delete},
	'openapi.json describes DELETE /v1/queues/{queue}/messages/{message_id}');
ok(ref $b eq 'HASH'
	  && $b->{paths}{'/v1/queues/{queue}/redrive'}{post}{requestBody}{content}{'application/json'}{schema}{properties}{to_queue},
	'and redrive\'s to_queue');
ok(ref $b eq 'HASH' && $b->{paths}{'/v1/queues/{queue}/groups/{group}/reset'}{post},
	'and POST /v1/queues/{queue}/groups/{group}/reset');
ok(ref $b eq 'HASH' && $b->{paths}{'/v1/queues/{queue}/groups/{group}/replay'}{post},
	'and POST /v1/queues/{queue}/groups/{group}/replay');

gw_stop($gw);
is(gw_sanitizer_reports($gw), '', 'no sanitizer report');
done_testing();
