# ALTER EXTENSION deliver UPDATE from 0.1: the queues, their messages and
# who may use them survive; the grants on the queues' tables (which let
# grantees write them) become the queues' acl and are revoked; the result is
# the same as a fresh install of the new version.
#
# The library here is the new one: until the update, the functions that
# look a queue up refuse to work, with a hint to update (messages stored
# under 0.1 are written into a segment directly, as 0.1 stored them).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('upgrade', "deliver.database = 'postgres'");
my $version = query_one($node, q{SELECT default_version FROM pg_available_extensions WHERE name = 'deliver'});

$node->safe_psql('postgres', q{
    DROP EXTENSION deliver;
    CREATE EXTENSION deliver VERSION '0.1';
    CREATE ROLE sender LOGIN;
    CREATE ROLE reader LOGIN;
    CREATE ROLE both_ LOGIN;
    SELECT deliver.create_queue('u1', retry_base => '0');
    SELECT deliver.create_queue('u2', 'exactly_once');
    SELECT deliver.create_consumer_group('u1', 'g2');
    SELECT deliver.grant_queue('u1', 'sender', 'send');
    SELECT deliver.grant_queue('u1', 'reader', 'receive');
    SELECT deliver.grant_queue('u2', 'both_', 'all');
});
is(query_one($node, q{SELECT extversion FROM pg_extension WHERE extname = 'deliver'}), '0.1', 'version 0.1 installed');
# messages as 0.1 stored them
my $qid = query_one($node, q{SELECT queue_id FROM deliver.queue WHERE queue_name = 'u1'});
$node->safe_psql('postgres', qq{
    INSERT INTO deliver.q${qid}_s0 (txid, message_id, enqueued_at, ordering_key, payload)
    SELECT pg_current_xact_id(), nextval('deliver.q${qid}_seq'), now(), 'k', jsonb_build_object('old', i)
      FROM generate_series(1, 5) i;
});
# 0.1's table grants: a receiver may write the done tables
ok(query_one($node, qq{SELECT has_table_privilege('reader', 'deliver.q${qid}_done0', 'INSERT')}) eq 't',
	'under 0.1 a receiver may insert into a done table');

my ($rc, $out, $err) = $node->psql('postgres', q{SELECT deliver.send('u1', '{}')});
like($err, qr/the extension in this database is version 0\.1, the library is version \Q$version\E.*\n.*ALTER EXTENSION deliver UPDATE/,
	'before the update, the new library refuses with a hint to update');

$node->safe_psql('postgres', 'ALTER EXTENSION deliver UPDATE');
is(query_one($node, q{SELECT extversion FROM pg_extension WHERE extname = 'deliver'}), $version,
	"ALTER EXTENSION deliver UPDATE goes to $version");

is(query_one($node, q{SELECT string_agg(format('%s %s %s', queue_name, role_name, privilege), ', ')
                        FROM deliver.list_grants()}),
	'u1 reader receive, u1 sender send, u2 both_ receive, u2 both_ send', 'the grants became the queues\' acl');
is(query_one($node, q{
    SELECT count(*) FROM pg_class c, aclexplode(c.relacl) e
     WHERE c.relnamespace = 'deliver'::regnamespace AND e.grantee IN ('sender'::regrole, 'reader'::regrole, 'both_'::regrole)}),
	'0', 'no grantee keeps a privilege on any of deliver\'s tables');

# the queues work, with the rights they had
is($node->safe_psql('postgres', q{SET ROLE reader; SELECT string_agg(payload->>'old', ',' ORDER BY message_id)
                                   FROM deliver.receive('u1', 10) r WHERE deliver.ack('u1', r.delivery_id)}),
	'1,2,3,4,5', 'the messages stored under 0.1 are received after the update');
is($node->safe_psql('postgres', q{SELECT count(*) FROM deliver.receive('u1', 10, consumer_group => 'g2')}),
	'5', 'by every consumer group');
is($node->safe_psql('postgres', q{SET ROLE sender; SELECT deliver.send('u1', '{"new": 1}') > 5}), 't',
	'the sender sends');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE sender; SELECT * FROM deliver.receive('u1')});
like($err, qr/permission denied to receive from queue "u1"/, 'but may not receive');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE reader; SELECT deliver.send('u1', '{}')});
like($err, qr/permission denied to send to queue "u1"/, 'the reader may not send');
is($node->safe_psql('postgres', q{SET ROLE both_; SELECT count(*) FROM deliver.receive('u2', 1, wait => '0')
                                   WHERE deliver.send('u2', '{}', idempotency_key => 'x') > 0 OR true}),
	'0', 'a role granted all on u2 sends and receives');
ok(wait_for($node, q{SELECT runs > 0 AND last_error IS NULL FROM deliver.worker_status()}, 't', 30),
	'the worker maintains the queues after the update');

# the same objects as a fresh install
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION deliver');
my $objects = q{
    SELECT string_agg(x, E'\n' ORDER BY x) FROM (
        SELECT pg_get_functiondef(p.oid) || coalesce(array_to_string(p.proacl, ','), '') AS x
          FROM pg_proc p WHERE p.pronamespace = 'deliver'::regnamespace
        UNION ALL
        SELECT format('%s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                      a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'deliver'::regnamespace AND c.relname !~ '^q\d+_' AND c.relkind = 'r'
        UNION ALL
        SELECT format('%s acl %s', c.relname, c.relacl)
          FROM pg_class c WHERE c.relnamespace = 'deliver'::regnamespace AND c.relname !~ '^q\d+_') t};
my $upgraded = $node->safe_psql('postgres', $objects);
my $fresh = $node->safe_psql('fresh', $objects);
ok(length($fresh) > 1000, 'the fresh install has its objects');
is($upgraded, $fresh, 'the updated extension has exactly the functions, tables and privileges of a fresh install')
  or do {
	  my @u = split /\n/, $upgraded;
	  my %f = map { $_ => 1 } split /\n/, $fresh;
	  diag("only after the update: $_") for grep { !$f{$_} } @u;
  };

done_testing();
