# The hostile-input catalogue: every SQL function of deliver called with bad
# input (NULLs, empty and huge payloads, deep JSON, invalid UTF-8, names
# with quotes, semicolons, dots and 200 characters, negative and huge
# numbers, unknown ids, another queue's or group's delivery id) and by roles
# without grants.  Each call must end with the expected outcome (a SQLSTATE,
# or ok), no call may crash a backend, and a call that fails must leave
# nothing behind: the row count of every table in schema deliver, the
# relations in it and the in-flight counts are compared before and after.
# The catalogue is written to hostile.tsv (see scripts/reliability-doc).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use DeliverHistory;

my $node = deliver_node('hostile');
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('h', visibility_timeout => '1 hour', retry_base => '0');
    SELECT deliver.create_queue('h2', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('heo', 'exactly_once');
    SELECT deliver.create_queue('hamo', 'at_most_once');
    SELECT deliver.create_consumer_group('h', 'g2', start_from => 'earliest');
    SELECT deliver.send_batch('h', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 20) i));
    SELECT deliver.send_batch('h2', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 5) i));
    CREATE ROLE stranger LOGIN;
    CREATE ROLE sender LOGIN;
    CREATE ROLE reader LOGIN;
    SELECT deliver.grant_queue('h', 'sender', 'send');
    SELECT deliver.grant_queue('h2', 'reader', 'receive');
    -- escalation: a role that may receive, with shadowing functions and
    -- operators in a schema of its own (no worker here: receive moves
    -- delayed messages that came due itself, as the queue's owner)
    CREATE ROLE mallory LOGIN;
    CREATE SCHEMA mallory AUTHORIZATION mallory;
    SELECT deliver.create_queue('hd', max_attempts => 2, retry_base => '0');
    SELECT deliver.grant_queue('hd', 'mallory', 'all');
    SELECT deliver.send_batch('hd', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 150) i));
    SELECT deliver.send('hd', '{"late": true}', delay => '1 millisecond');
    -- topic routing: hr.* keys go to h and h2, hd.* keys to hd
    SELECT deliver.bind('hr.#', 'h');
    SELECT deliver.bind('hr.*', 'h2');
    SELECT deliver.bind('hd.#', 'hd');
    -- a queue at its max_depth
    SELECT deliver.create_queue('hfull', max_depth => 1);
    SELECT deliver.send('hfull', '{}');
    SELECT deliver.grant_queue('hfull', 'sender', 'send');
    -- a queue with priorities (h has none)
    SELECT deliver.create_queue('hp', priorities => true, visibility_timeout => '1 hour');
    SELECT deliver.grant_queue('hp', 'sender', 'send');
    SELECT deliver.grant_queue('hp', 'reader', 'receive');
    SELECT deliver.bind('hp.#', 'hp');
});
$node->safe_psql('postgres', q{
    SET ROLE mallory;
    CREATE FUNCTION mallory.unnest(int[]) RETURNS SETOF int LANGUAGE plpgsql AS
        $$ BEGIN ALTER ROLE mallory SUPERUSER; RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
    CREATE FUNCTION mallory.evil_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
        $$ BEGIN ALTER ROLE mallory SUPERUSER; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
    CREATE OPERATOR mallory.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = mallory.evil_eq);
    CREATE FUNCTION mallory.now() RETURNS timestamptz LANGUAGE plpgsql AS
        $$ BEGIN ALTER ROLE mallory SUPERUSER; RETURN pg_catalog.now(); END $$;
});
# crash: every message of hd out of attempts (nacked twice), more than a
# receive of one takes
$node->safe_psql('postgres', q{SELECT count(*) FROM deliver.receive('hd', 150) r WHERE deliver.nack('hd', r.delivery_id, 'again', '0')})
  for 1 .. 2;
my ($hid, $h2id) = map { query_one($node, "SELECT queue_id FROM deliver.queue WHERE queue_name = '$_'") } qw(h h2);
my $shadowed = "SET search_path = mallory, pg_catalog;
";

# delivery ids leased by the owner: of queue h (default group and g2) and h2
my ($d_h, $d_g2, $d_h2) = map {
	$node->safe_psql('postgres', "SELECT delivery_id FROM deliver.receive($_)")
} ("'h', 1", "'h', 1, consumer_group => 'g2'", "'h2', 1");
like("$d_h $d_g2 $d_h2", qr/^\d+ \d+ \d+$/, 'three leases to play with');

# Everything a failed call must not change.
my $state_sql = q{
    SELECT string_agg(format('%s=%s', c.relname,
             (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM deliver.%I', c.relname), false, true, '')))[1]::text),
             ',' ORDER BY c.relname)
      || '|' || (SELECT string_agg(format('%s:%s', q, m.consumer_group || '/' || m.in_flight), ',' ORDER BY q, m.consumer_group)
                   FROM unnest(ARRAY['h', 'h2', 'heo', 'hamo']) q, deliver.metrics(q) m)
      || '|' || (SELECT count(*) FROM pg_prepared_xacts)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'deliver' AND c.relkind IN ('r', 'p')};

my $deep = '[' x 5000 . ']' x 5000;
my $name200 = 'n' x 200;
my $big = 'x' x (1024 * 1024 + 10);

# [category, call, expected outcome, role]
my @catalogue = (
	# NULLs and empty values
	[ 'NULL', q{SELECT deliver.send('h', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.send(NULL, '{}')}, '22004' ],
	[ 'NULL', q{SELECT deliver.send_batch('h', ARRAY[NULL]::jsonb[])}, '22004' ],
	[ 'NULL', q{SELECT deliver.ack('h', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.ack_batch('h', ARRAY[NULL]::bigint[])}, '22004' ],
	[ 'NULL', q{SELECT deliver.nack('h', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.extend_lease('h', NULL, '1 s')}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.receive('h', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.create_queue(NULL)}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.metrics(NULL)}, 'ok' ],    # NULL: every queue the role may see
	[ 'NULL', q{SELECT deliver.send('heo', '{}')}, '22004' ],
	[ 'empty', q{SELECT deliver.send('', '{}')}, '42704' ],
	[ 'empty', q{SELECT deliver.send_batch('h2', ARRAY[]::jsonb[])}, '22023' ],
	[ 'empty', q{SELECT deliver.ack_batch('h', ARRAY[]::bigint[])}, 'ok' ],
	[ 'empty', q{SELECT deliver.send('h2', '{}', ordering_key => '')}, 'ok' ],
	[ 'empty', q{SELECT deliver.send('heo', '{}', idempotency_key => '')}, '22023' ],
	[ 'empty', q{SELECT deliver.send('h2', '""')}, 'ok' ],
	[ 'empty', q{SELECT deliver.send('h2', 'null'::jsonb)}, 'ok' ],
	# sizes
	[ 'huge', qq{SELECT deliver.send('h2', to_jsonb(repeat('x', 1024 * 1024 + 10)))}, '54000' ],
	[ 'huge', qq{SELECT deliver.send('h2', '{}', headers => jsonb_build_object('h', repeat('x', 1024 * 1024 + 10)))}, '54000' ],
	[ 'huge', q{SELECT deliver.send_batch('h2', array_fill('{}'::jsonb, ARRAY[10001]))}, '54000' ],
	[ 'huge', q{SELECT deliver.ack_batch('h', array_fill(1::bigint, ARRAY[10001]))}, '54000' ],
	[ 'huge', q{SELECT deliver.send('h2', '{}', ordering_key => repeat('k', 513))}, '54000' ],
	[ 'huge', q{SELECT deliver.send('heo', '{}', idempotency_key => repeat('k', 513))}, '54000' ],
	[ 'huge', q{SELECT * FROM deliver.receive('h2', 10001)}, '22023' ],
	[ 'huge', q{SELECT deliver.send('h2', to_jsonb(repeat('x', 1000 * 1000)))}, 'ok' ],
	# JSON
	[ 'deep JSON', "SELECT deliver.send('h2', '$deep')", 'ok' ],
	[ 'deep JSON', "SELECT deliver.send('h2', '{}', headers => '$deep')", '22023' ],
	[ 'JSON', q{SELECT deliver.send('h2', '{}', headers => '[1, 2]')}, '22023' ],
	[ 'JSON', q{SELECT deliver.send('h2', '{}', headers => '"text"')}, '22023' ],
	[ 'JSON', q{SELECT deliver.send('h2', '{"a": "\u0000"}')}, '22P05' ],
	[ 'invalid UTF-8', q{SELECT deliver.send('h2', to_jsonb(convert_from('\xc328'::bytea, 'UTF8')))}, '22021' ],
	[ 'invalid UTF-8', q{SELECT deliver.send(convert_from('\xff'::bytea, 'UTF8'), '{}')}, '22021' ],
	[ 'invalid UTF-8', q{SELECT deliver.send('h2', '{}', ordering_key => convert_from('\xe282'::bytea, 'UTF8'))}, '22021' ],
	# names
	[ 'name', q{SELECT deliver.create_queue('x''; DROP TABLE deliver.queue; --')}, '42602' ],
	[ 'name', q{SELECT deliver.create_queue('x"; DROP TABLE deliver.queue; --')}, '42602' ],
	[ 'name', q{SELECT deliver.create_queue('semi;colon')}, '42602' ],
	[ 'name', q{SELECT deliver.create_queue('..')}, '42602' ],
	[ 'name', q{SELECT deliver.create_queue('.hidden')}, '42602' ],
	[ 'name', qq{SELECT deliver.create_queue('$name200')}, '42602' ],
	[ 'name', qq{SELECT deliver.send('$name200', '{}')}, '42704' ],
	[ 'name', q{SELECT deliver.create_consumer_group('h', 'a"b')}, '42602' ],
	[ 'name', qq{SELECT * FROM deliver.receive('h', 1, consumer_group => '$name200')}, '42704' ],
	[ 'name', q{SELECT * FROM deliver.receive('h', 1, consumer_group => 'g.none')}, '42704' ],
	[ 'name', q{SELECT deliver.grant_queue('h', 'x"; DROP ROLE postgres; --', 'send')}, '42704' ],
	[ 'name', q{SELECT deliver.grant_queue('h', 'stranger', 'send; DROP TABLE deliver.queue')}, '22023' ],
	[ 'name', q{SELECT deliver.create_queue('a.b-c_9')}, 'ok' ],
	[ 'name', q{SELECT deliver.drop_queue('a.b-c_9')}, 'ok' ],
	# numbers
	[ 'number', q{SELECT * FROM deliver.receive('h2', 0)}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.receive('h2', -1)}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.receive('h2', 1, visibility_timeout => '-1 s')}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.receive('h2', 1, visibility_timeout => 'infinity')}, '22007' ],
	[ 'number', q{SELECT * FROM deliver.receive('h2', 1, wait => '-1 s')}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.receive('h2', 1, wait => '100000 years')}, '22023' ],
	[ 'number', q{SELECT deliver.send('h2', '{}', delay => '-1 day')}, '22023' ],
	[ 'number', q{SELECT deliver.send('h2', '{}', delay => 'infinity')}, '22007' ],
	[ 'number', q{SELECT deliver.send('h2', '{}', delay => '100000 years')}, '22023' ],
	[ 'number', qq{SELECT deliver.nack('h', $d_h, retry_after => '-1 s')}, '22023' ],
	[ 'number', qq{SELECT deliver.extend_lease('h', $d_h, '-5 minutes')}, '22023' ],
	[ 'number', qq{SELECT deliver.extend_lease('h', $d_h, 'infinity')}, '22007' ],
	[ 'number', q{SELECT deliver.create_queue('hn', max_attempts => -1)}, '22023' ],
	[ 'number', q{SELECT deliver.create_queue('hn', max_attempts => 2147483647)}, '22023' ],
	[ 'number', q{SELECT deliver.create_queue('hn', visibility_timeout => '-1 s')}, '22023' ],
	[ 'number', q{SELECT deliver.create_queue('hn', dedup_window => '1000000 years')}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.dead_letters('h', NULL, -1)}, '22023' ],
	[ 'number', q{SELECT deliver.alter_queue('h2', visibility_timeout => '-1 s')}, '22023' ],
	[ 'number', q{SELECT deliver.alter_queue('h2', max_attempts => 0)}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.archived('h', -1)}, '22023' ],
	[ 'NULL', q{SELECT deliver.alter_queue(NULL)}, '22004' ],
	[ 'name', qq{SELECT deliver.alter_queue('$name200')}, '42704' ],
	# ids
	[ 'id', q{SELECT deliver.ack('h', 0)}, '55000' ],
	[ 'id', q{SELECT deliver.ack('h', -1)}, '55000' ],
	[ 'id', q{SELECT deliver.ack('h', 9223372036854775807)}, '55000' ],
	[ 'id', q{SELECT deliver.ack('h', -9223372036854775808)}, '55000' ],
	[ 'id', q{SELECT deliver.ack('h', 1048575)}, '55000' ],
	[ 'id', qq{SELECT deliver.ack('h', $d_h2 + 1)}, '55000' ],
	[ 'id', qq{SELECT deliver.ack('h', $d_h + 1048576)}, '55000' ],
	[ 'id', qq{SELECT deliver.ack('h', $d_h2)}, '55000' ],
	[ 'id', qq{SELECT deliver.ack('h2', $d_h)}, '55000' ],
	[ 'id', qq{SELECT deliver.ack_batch('h2', ARRAY[$d_h2, $d_h])}, '55000' ],
	[ 'id', qq{SELECT deliver.nack('h2', $d_h)}, '55000' ],
	[ 'id', qq{SELECT deliver.extend_lease('h2', $d_h, '1 minute')}, '55000' ],
	[ 'id', qq{SELECT deliver.ack('heo', $d_h)}, '55000' ],
	[ 'id', q{SELECT deliver.redrive('h', ARRAY[-1, 0, 9223372036854775807])}, 'ok' ],
	[ 'id', q{SELECT deliver._group_state(-1)}, '42704' ],
	[ 'id', q{SELECT deliver._group_state(2147483647)}, '42704' ],
	[ 'id', q{SELECT deliver.create_consumer_group('h', 'g3', 'yesterday')}, '22023' ],
	# privileges: a role without grants
	[ 'no grant', q{SELECT deliver.send('h', '{}')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.send_batch('h', ARRAY['{}']::jsonb[])}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.receive('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.receive('hamo')}, '42501', 'stranger' ],
	[ 'no grant', qq{SELECT deliver.ack('h', $d_h)}, '42501', 'stranger' ],
	[ 'no grant', qq{SELECT deliver.ack_batch('h', ARRAY[$d_h])}, '42501', 'stranger' ],
	[ 'no grant', qq{SELECT deliver.nack('h', $d_h)}, '42501', 'stranger' ],
	[ 'no grant', qq{SELECT deliver.extend_lease('h', $d_h, '1 minute')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.dead_letters('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.metrics('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.drop_queue('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.purge_queue('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.create_queue('mine')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.create_consumer_group('h', 'spy', 'earliest')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.drop_consumer_group('h', 'g2')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.grant_queue('h', 'stranger')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.revoke_queue('h', 'sender')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.redrive('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.maintain('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver._move_due('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver._catalog_changed(1, 'forget')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver._checkpoint_groups(1, ARRAY[]::xid8[])}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.q1_s0}, '42501', 'stranger' ],
	[ 'no grant', q{INSERT INTO deliver.queue (queue_name) VALUES ('x')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT count(*) FROM deliver.list_queues()}, 'ok', 'stranger' ],
	[ 'no grant', q{SELECT deliver.alter_queue('h', max_attempts => 1)}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.archived('h')}, '42501', 'stranger' ],
	# privileges: partial grants
	[ 'send grant', q{SELECT deliver.send('h', '{"from": "sender"}')}, 'ok', 'sender' ],
	[ 'send grant', q{SELECT * FROM deliver.receive('h')}, '42501', 'sender' ],
	[ 'send grant', qq{SELECT deliver.ack('h', $d_h)}, '42501', 'sender' ],
	[ 'send grant', q{SELECT deliver.send('h2', '{}')}, '42501', 'sender' ],
	[ 'receive grant', q{SELECT deliver.send('h2', '{}')}, '42501', 'reader' ],
	[ 'receive grant', qq{SELECT deliver.ack('h2', $d_h)}, '55000', 'reader' ],
	[ 'receive grant', qq{SELECT deliver.ack('h', $d_h)}, '42501', 'reader' ],
	[ 'receive grant', q{SELECT * FROM deliver.receive('h')}, '42501', 'reader' ],
	[ 'receive grant', q{SELECT * FROM deliver.receive('h2', 1, consumer_group => 'nogroup')}, '42704', 'reader' ],
	[ 'receive grant', q{SELECT deliver.drop_queue('h2')}, '42501', 'reader' ],
	# bypass: grantees hold no privilege on deliver's tables
	[ 'bypass', qq{INSERT INTO deliver.q${h2id}_done0 (group_id, kind, message_ids) VALUES (1, 'a', ARRAY[1, 2, 3])},
	  '42501', 'reader' ],
	[ 'bypass', qq{INSERT INTO deliver.q${h2id}_s0 (txid, message_id, enqueued_at, payload) VALUES (pg_current_xact_id(), 1, now(), '{}')},
	  '42501', 'reader' ],
	[ 'bypass', qq{DELETE FROM deliver.q${h2id}_dead}, '42501', 'reader' ],
	[ 'bypass', qq{SELECT * FROM deliver.q${h2id}_s0}, '42501', 'reader' ],
	[ 'bypass', qq{INSERT INTO deliver.q${hid}_dedup VALUES ('k', 1, 'infinity')}, '42501', 'sender' ],
	[ 'bypass', qq{UPDATE deliver.q${hid}_dedup SET expires_at = 'infinity'}, '42501', 'sender' ],
	[ 'bypass', qq{INSERT INTO deliver.q${hid}_s0 (txid, message_id, enqueued_at, ordering_key, payload) VALUES (pg_current_xact_id(), 1, now(), repeat('k', 65541), '{}')},
	  '42501', 'sender' ],
	[ 'bypass', qq{SELECT nextval('deliver.q${hid}_seq')}, '42501', 'sender' ],
	[ 'bypass', qq{TRUNCATE deliver.q${hid}_s0}, '42501', 'sender' ],
	# escalation: shadowing functions and operators on the caller's search_path
	[ 'escalation', $shadowed . q{SELECT count(*) FROM deliver.receive('hd', 5)}, 'ok', 'mallory' ],
	[ 'escalation', $shadowed . q{SELECT deliver.send('hd', '{}', delay => '1 hour')}, 'ok', 'mallory' ],
	[ 'escalation', $shadowed . q{SELECT * FROM deliver.metrics('hd')}, 'ok', 'mallory' ],
	[ 'escalation', $shadowed . q{SELECT * FROM deliver.dead_letters('hd')}, 'ok', 'mallory' ],
	# crash: more messages out of attempts than the receive takes
	[ 'crash', q{SELECT count(*) FROM deliver.receive('hd', 1)}, 'ok', 'mallory' ],
	# nack to the dead letters, redrive to another queue, delete_message
	[ 'NULL', q{SELECT deliver.nack('h', NULL, dead_letter => true)}, '22004' ],
	[ 'NULL', q{SELECT deliver.delete_message('h', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.delete_message(NULL, 1)}, '22004' ],
	[ 'NULL', q{SELECT deliver.redrive('h', ARRAY[-1]::bigint[], NULL, NULL)}, 'ok' ],
	[ 'number', qq{SELECT deliver.nack('h', $d_h, NULL, '1 s', dead_letter => true)}, '22023' ],
	[ 'id', qq{SELECT deliver.nack('h2', $d_h, dead_letter => true)}, '55000' ],
	[ 'id', q{SELECT deliver.nack('h', 9223372036854775807, dead_letter => true)}, '55000' ],
	[ 'id', q{SELECT deliver.delete_message('h', -1)}, 'ok' ],
	[ 'id', q{SELECT deliver.delete_message('h', 9223372036854775807)}, 'ok' ],
	[ 'id', q{SELECT deliver.delete_message('h', -9223372036854775808)}, 'ok' ],
	[ 'name', q{SELECT deliver.redrive('h', NULL, NULL, 'h')}, '22023' ],
	[ 'name', q{SELECT deliver.redrive('h', NULL, NULL, '')}, '42704' ],
	[ 'name', qq{SELECT deliver.redrive('h', NULL, NULL, '$name200')}, '42704' ],
	[ 'name', q{SELECT deliver.redrive('h', NULL, NULL, 'x''; DROP TABLE deliver.queue; --')}, '42704' ],
	[ 'name', qq{SELECT deliver.delete_message('$name200', 1)}, '42704' ],
	[ 'invalid UTF-8', q{SELECT deliver.redrive('h', NULL, NULL, convert_from('\xff'::bytea, 'UTF8'))}, '22021' ],
	[ 'no grant', q{SELECT deliver.delete_message('h', 1)}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.redrive('h', NULL, NULL, 'h2')}, '42501', 'stranger' ],
	[ 'receive grant', q{SELECT deliver.delete_message('h2', 1)}, '42501', 'reader' ],
	[ 'no grant', qq{SELECT deliver.nack('h', $d_h, dead_letter => true)}, '42501', 'stranger' ],
	[ 'NULL', q{SELECT deliver.reset_consumer_group('h', 'g2', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.reset_consumer_group('h', NULL, 'latest')}, '22004' ],
	[ 'name', q{SELECT deliver.reset_consumer_group('h', 'x''; DROP TABLE deliver.queue; --', 'latest')}, '42704' ],
	[ 'name', qq{SELECT deliver.reset_consumer_group('h', '$name200', 'latest')}, '42704' ],
	[ 'number', q{SELECT deliver.reset_consumer_group('h', 'g2', '-9223372036854775808')}, '22023' ],
	[ 'number', q{SELECT deliver.reset_consumer_group('h', 'g2', '99999999999999999999')}, '22023' ],
	[ 'number', q{SELECT deliver.reset_consumer_group('h', 'g2', '1900-01-01')}, '22023' ],
	[ 'number', q{SELECT deliver.reset_consumer_group('h', 'g2', 'soon')}, '22023' ],
	[ 'huge', q{SELECT deliver.reset_consumer_group('h', 'g2', repeat('9', 100000))}, '22023' ],
	[ 'invalid UTF-8', q{SELECT deliver.reset_consumer_group('h', 'g2', convert_from('\xff'::bytea, 'UTF8'))}, '22021' ],
	# replay_archive
	[ 'NULL', q{SELECT * FROM deliver.replay_archive('h', NULL)}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.replay_archive(NULL, 'g2')}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.replay_archive('h', 'g2', after_id => NULL)}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.replay_archive('h', 'g2', max_messages => NULL)}, '22004' ],
	[ 'name', q{SELECT * FROM deliver.replay_archive('h', 'x''; DROP TABLE deliver.queue; --')}, '42704' ],
	[ 'name', qq{SELECT * FROM deliver.replay_archive('h', '$name200')}, '42704' ],
	[ 'number', q{SELECT * FROM deliver.replay_archive('h', 'g2', max_messages => 0)}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.replay_archive('h', 'g2', max_messages => 2147483647)}, '22023' ],
	[ 'number', q{SELECT * FROM deliver.replay_archive('h', 'g2', after_id => -9223372036854775808)}, '55000' ],
	[ 'archive', q{SELECT * FROM deliver.replay_archive('h', 'g2', since => '-infinity')}, '55000' ],
	[ 'no grant', q{SELECT deliver.reset_consumer_group('h', 'g2', 'latest')}, '42501', 'stranger' ],
	# UTF-8: a nack's error cut to the limit on a character boundary
	[ 'invalid UTF-8', qq{SELECT deliver.nack('h', $d_h, repeat('é', 100), '1 hour')}, 'ok' ],
	# flow control: pause, resume, rate limit
	[ 'NULL', q{SELECT deliver.pause_consumer_group(NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.resume_consumer_group('h', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.set_consumer_group_rate('h', NULL, 1)}, '22004' ],
	[ 'name', q{SELECT deliver.pause_consumer_group('h', 'a"b')}, '42602' ],
	[ 'name', qq{SELECT deliver.resume_consumer_group('h', '$name200')}, '42602' ],
	[ 'name', q{SELECT deliver.set_consumer_group_rate('h', 'g.none', 1)}, '42704' ],
	[ 'name', qq{SELECT deliver.pause_consumer_group('$name200')}, '42704' ],
	[ 'name', q{SELECT deliver.pause_consumer_group('x''; DROP TABLE deliver.queue; --')}, '42704' ],
	[ 'id', q{SELECT deliver.set_consumer_group_rate('h', 'g2', 0)}, '22023' ],
	[ 'id', q{SELECT deliver.set_consumer_group_rate('h', 'g2', -1e300)}, '22023' ],
	[ 'id', q{SELECT deliver.set_consumer_group_rate('h', 'g2', 'NaN')}, '22023' ],
	[ 'id', q{SELECT deliver.set_consumer_group_rate('h', 'g2', 'Infinity')}, '22023' ],
	[ 'huge', q{SELECT deliver.set_consumer_group_rate('h', 'g2', 1e300)}, '22023' ],
	[ 'huge', q{SELECT deliver.set_consumer_group_rate('h', 'g2', 1, 1000001)}, '22023' ],
	[ 'huge', q{SELECT deliver.set_consumer_group_rate('h', 'g2', 1, 2147483648)}, '42883' ],
	[ 'id', q{SELECT deliver.set_consumer_group_rate('h', 'g2', 1, -1)}, '22023' ],
	[ 'id', q{SELECT deliver.set_consumer_group_rate('h', 'g2', NULL, 1)}, '22023' ],
	[ 'no grant', q{SELECT deliver.pause_consumer_group('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.resume_consumer_group('h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.set_consumer_group_rate('h', 'default', 1)}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver._flow_group(q, 'default') FROM deliver.queue q}, '42501', 'stranger' ],
	[ 'no grant', q{UPDATE deliver.consumer_group SET paused = true}, '42501', 'stranger' ],
	[ 'receive grant', q{SELECT deliver.pause_consumer_group('h2')}, '42501', 'reader' ],
	[ 'receive grant', q{SELECT deliver.set_consumer_group_rate('h2', 'default', NULL)}, '42501', 'reader' ],
	[ 'flow', q{SELECT deliver.pause_consumer_group('h2') AND NOT deliver.pause_consumer_group('h2')}, 'ok' ],
	[ 'flow', q{SELECT count(*) = 0 FROM deliver.receive('h2', 10)}, 'ok', 'reader' ],
	[ 'flow', q{SELECT deliver.resume_consumer_group('h2')}, 'ok' ],
	[ 'flow', q{SELECT deliver.set_consumer_group_rate('h2', 'default', 1000000, 1000000)}, 'ok' ],
	[ 'flow', q{SELECT deliver.set_consumer_group_rate('h2', 'default', NULL)}, 'ok' ],
	# FIFO: messages of a key in flight at once
	[ 'NULL', q{SELECT deliver.set_fifo_key_limit(NULL, 2)}, '22004' ],
	[ 'NULL', q{SELECT deliver.set_fifo_key_limit('h', NULL)}, '22004' ],
	[ 'id', q{SELECT deliver.set_fifo_key_limit('h', 0)}, '22023' ],
	[ 'id', q{SELECT deliver.set_fifo_key_limit('h', -2147483648)}, '22023' ],
	[ 'huge', q{SELECT deliver.set_fifo_key_limit('h', 2147483647)}, '22023' ],
	[ 'id', q{SELECT deliver.set_fifo_key_limit('h', 2)}, '55000' ],
	[ 'name', qq{SELECT deliver.set_fifo_key_limit('$name200', 2)}, '42704' ],
	[ 'no grant', q{SELECT deliver.set_fifo_key_limit('h', 2)}, '42501', 'stranger' ],
	[ 'receive grant', q{SELECT deliver.set_fifo_key_limit('h2', 2)}, '42501', 'reader' ],
	# topic routing: bind, unbind, test_routing, publish
	[ 'NULL', q{SELECT deliver.bind(NULL, 'h')}, '22004' ],
	[ 'NULL', q{SELECT deliver.bind('a', NULL)}, '22004' ],
	[ 'NULL', q{SELECT deliver.unbind(NULL, 'h')}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.test_routing(NULL)}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.publish(NULL, '{}')}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.publish('hr.x', NULL)}, '22004' ],
	[ 'NULL', q{SELECT * FROM deliver.publish('hr.x', '{}', mandatory => NULL)}, '22004' ],
	[ 'empty', q{SELECT deliver.bind('', 'h')}, '22023' ],
	[ 'empty', q{SELECT * FROM deliver.test_routing('')}, 'ok' ],
	[ 'empty', q{SELECT * FROM deliver.publish('', '{}')}, 'ok' ],
	[ 'pattern', q{SELECT deliver.bind('a..b', 'h')}, '22023' ],
	[ 'pattern', q{SELECT deliver.bind('.', 'h')}, '22023' ],
	[ 'pattern', q{SELECT deliver.bind('a.b#', 'h')}, '22023' ],
	[ 'pattern', q{SELECT deliver.bind('**', 'h')}, '22023' ],
	[ 'pattern', q{SELECT deliver.unbind('a.', 'h')}, '22023' ],
	[ 'pattern', q{SELECT * FROM deliver.test_routing('a.*')}, '22023' ],
	[ 'pattern', q{SELECT * FROM deliver.publish('hr.#', '{}')}, '22023' ],
	[ 'pattern', q{SELECT * FROM deliver.publish('hr..x', '{}')}, '22023' ],
	[ 'pattern', q{SELECT deliver.bind('x''; DROP TABLE deliver.binding; --', 'h')}, 'ok' ],
	[ 'pattern', q{SELECT deliver.unbind('x''; DROP TABLE deliver.binding; --', 'h')}, 'ok' ],
	[ 'name', qq{SELECT deliver.bind('a', '$name200')}, '42704' ],
	[ 'name', q{SELECT deliver.unbind('a', 'x"; DROP TABLE deliver.queue; --')}, '42704' ],
	[ 'huge', q{SELECT deliver.bind(repeat('a', 256), 'h')}, '22023' ],
	[ 'huge', q{SELECT deliver.bind(repeat('a', 100000), 'h')}, '22023' ],
	[ 'huge', q{SELECT * FROM deliver.test_routing(repeat('a.', 5000) || 'a')}, '22023' ],
	[ 'huge', q{SELECT * FROM deliver.publish(repeat('a', 256), '{}')}, '22023' ],
	[ 'huge', qq{SELECT * FROM deliver.publish('hr.x', to_jsonb(repeat('x', 1024 * 1024 + 10)))}, '54000' ],
	[ 'huge', q{SELECT * FROM deliver.publish('hr.x', '{}', ordering_key => repeat('k', 513))}, '54000' ],
	[ 'number', q{SELECT * FROM deliver.publish('hr.x', '{}', delay => '-1 s')}, '22023' ],
	[ 'JSON', q{SELECT * FROM deliver.publish('hr.x', '{}', headers => '[1]')}, '22023' ],
	[ 'invalid UTF-8', q{SELECT deliver.bind(convert_from('\xff'::bytea, 'UTF8'), 'h')}, '22021' ],
	[ 'invalid UTF-8', q{SELECT * FROM deliver.publish(convert_from('\xe282'::bytea, 'UTF8'), '{}')}, '22021' ],
	[ 'id', q{SELECT * FROM deliver.publish('nobody.bound', '{}', mandatory => true)}, '42704' ],
	# a pattern of 128 "#" and a key of 128 words: matched without backtracking
	[ 'crash', q{SELECT deliver.bind(repeat('#.', 127) || '#', 'h')}, 'ok' ],
	[ 'crash', q{SELECT count(*) FROM deliver.publish(repeat('a.', 127) || 'a', '{}')}, 'ok' ],
	[ 'crash', q{SELECT deliver.unbind(repeat('#.', 127) || '#', 'h')}, 'ok' ],
	[ 'no grant', q{SELECT deliver.bind('x', 'h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT deliver.unbind('hr.#', 'h')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT * FROM deliver.publish('hr.x', '{}')}, '42501', 'stranger' ],
	[ 'no grant', q{SELECT count(*) FROM deliver.test_routing('hr.x')}, 'ok', 'stranger' ],
	[ 'no grant', q{SELECT count(*) FROM deliver.list_bindings()}, 'ok', 'stranger' ],
	[ 'no grant', q{INSERT INTO deliver.binding (pattern, queue_id) VALUES ('#', 1)}, '42501', 'stranger' ],
	[ 'no grant', q{DELETE FROM deliver.binding}, '42501', 'stranger' ],
	# send on h but not on h2, both matched: refused, nothing sent to h either
	[ 'send grant', q{SELECT * FROM deliver.publish('hr.x', '{}')}, '42501', 'sender' ],
	[ 'send grant', q{SELECT * FROM deliver.publish('hr.x.y', '{}')}, 'ok', 'sender' ],
	[ 'bypass', q{INSERT INTO deliver.binding (pattern, queue_id) VALUES ('#', 1)}, '42501', 'sender' ],
	[ 'escalation', $shadowed . q{SELECT count(*) FROM deliver.publish('hd.x', '{}')}, 'ok', 'mallory' ],
	[ 'escalation', $shadowed . q{SELECT count(*) FROM deliver.test_routing('hd.x')}, 'ok', 'mallory' ],
	# expiry: expires_at (any time, NULL) and the queue's message_ttl and on_expire
	[ 'expiry', q{SELECT deliver.send('h', '{}', expires_at => '-infinity')}, 'ok', 'sender' ],
	[ 'expiry', q{SELECT deliver.send('h', '{}', expires_at => 'infinity')}, 'ok', 'sender' ],
	[ 'expiry', q{SELECT deliver.send_batch('h', ARRAY['{}']::jsonb[], expires_at => '4713-01-01 BC')}, 'ok', 'sender' ],
	[ 'expiry', q{SELECT deliver.send('h', '{}', delay => '1 hour', expires_at => '294276-12-31')}, 'ok', 'sender' ],
	[ 'expiry', q{SELECT deliver.send('h', '{}', expires_at => 'tomorrow')}, '42501', 'stranger' ],
	[ 'expiry', q{SELECT deliver.send_batch('h2', ARRAY['{}']::jsonb[], expires_at => now())}, '42501', 'sender' ],
	[ 'expiry', q{SELECT deliver.send('h', '{}', expires_at => 'soon')}, '22007', 'sender' ],
	# publish's expires_at: taken as send takes it, for every matched queue
	[ 'expiry', q{SELECT count(*) FROM deliver.publish('hr.x.y', '{}', expires_at => '-infinity')}, 'ok', 'sender' ],
	[ 'expiry', q{SELECT count(*) FROM deliver.publish('hr.x.y', '{}', expires_at => '4713-01-01 BC')}, 'ok', 'sender' ],
	[ 'expiry', q{SELECT count(*) FROM deliver.publish('hr.x.y', '{}', delay => '1 hour', expires_at => '294276-12-31')}, 'ok', 'sender' ],
	[ 'expiry', q{SELECT * FROM deliver.publish('hr.x.y', '{}', expires_at => 'soon')}, '22007', 'sender' ],
	[ 'expiry', q{SELECT * FROM deliver.publish('hr.x.y', '{}', expires_at => '294277-01-01')}, '22008', 'sender' ],
	[ 'expiry', q{SELECT * FROM deliver.publish('hr.x.y', '{}', expires_at => 'tomorrow')}, '42501', 'stranger' ],
	[ 'expiry', q{SELECT * FROM deliver.publish('hr.x', '{}', expires_at => now())}, '42501', 'sender' ],
	[ 'expiry', q{SELECT * FROM deliver.publish('hr.x.y', NULL, expires_at => now())}, '22004', 'sender' ],
	# priorities: 0-9 on a queue with priorities, 0 (or NULL) anywhere
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => 9)}, 'ok', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => NULL)}, 'ok', 'sender' ],
	[ 'priority', q{SELECT deliver.send('h', '{}', priority => 0)}, 'ok', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => 10)}, '22023', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => -1)}, '22023', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => -2147483648)}, '22023', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => 2147483647)}, '22023', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => 99999999999)}, '42883', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => '5x')}, '22P02', 'sender' ],
	[ 'priority', q{SELECT deliver.send('h', '{}', priority => 1)}, '55000', 'sender' ],
	[ 'priority', q{SELECT deliver.send('h', '{}', delay => '1 hour', priority => 1)}, '55000', 'sender' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => 5)}, '42501', 'stranger' ],
	[ 'priority', q{SELECT deliver.send('hp', '{}', priority => 5)}, '42501', 'reader' ],
	[ 'priority', q{SELECT deliver.send_batch('hp', ARRAY['{}', '{}']::jsonb[], priority => 3)}, 'ok', 'sender' ],
	[ 'priority', q{SELECT deliver.send_batch('hp', ARRAY['{}']::jsonb[], priority => 10)}, '22023', 'sender' ],
	[ 'priority', q{SELECT deliver.send_batch('h', ARRAY['{}']::jsonb[], priority => 2)}, '55000', 'sender' ],
	[ 'priority', q{SELECT deliver.send_batch('hp', ARRAY[NULL]::jsonb[], priority => 2)}, '22004', 'sender' ],
	[ 'priority', q{SELECT count(*) FROM deliver.publish('hp.x', '{}', priority => 4)}, 'ok', 'sender' ],
	[ 'priority', q{SELECT * FROM deliver.publish('hp.x', '{}', priority => 10)}, '22023', 'sender' ],
	[ 'priority', q{SELECT * FROM deliver.publish('hr.x.y', '{}', priority => 1)}, '55000', 'sender' ],
	[ 'priority', q{SELECT count(*) FROM deliver.receive('hp', 10)}, 'ok', 'reader' ],
	[ 'priority', q{SELECT deliver.create_queue('hx', 'at_most_once', priorities => true)}, '0A000' ],
	[ 'priority', q{SELECT deliver.create_queue('hx', priorities => true)}, '42501', 'sender' ],
	[ 'priority', q{SELECT deliver.alter_queue('hamo', priorities => true)}, '0A000' ],
	[ 'priority', q{SELECT deliver.alter_queue('hp', priorities => false)}, '42501', 'sender' ],
	[ 'priority', q{SELECT deliver.alter_queue('h', priorities => NULL)}, 'ok' ],
	[ 'expiry', q{SELECT deliver.create_queue('hx', message_ttl => '-1 second')}, '22023' ],
	[ 'expiry', q{SELECT deliver.create_queue('hx', message_ttl => '178000000 years')}, '22023' ],
	[ 'expiry', q{SELECT deliver.create_queue('hx', message_ttl => 'infinity')}, '22007' ],
	[ 'expiry', q{SELECT deliver.create_queue('hx', on_expire => 'x''; DROP TABLE deliver.queue; --')}, '22023' ],
	[ 'expiry', qq{SELECT deliver.create_queue('hx', on_expire => '$name200')}, '22023' ],
	[ 'expiry', q{SELECT deliver.create_queue('hx', on_expire => 'drop', message_ttl => '1 hour')}, '42501', 'stranger' ],
	[ 'expiry', q{SELECT deliver.alter_queue('h', message_ttl => '366 days')}, '22023' ],
	[ 'expiry', q{SELECT deliver.alter_queue('h', on_expire => E'drop\n')}, '22023' ],
	[ 'expiry', q{SELECT deliver.alter_queue('h', message_ttl => '1 second')}, '42501', 'sender' ],
	[ 'expiry', q{SELECT deliver.alter_queue('h', on_expire => 'drop')}, '42501', 'reader' ],
	# depth limits: a full queue refuses every send, nothing written
	[ 'max_depth', q{SELECT deliver.send('hfull', '{}')}, '53400', 'sender' ],
	[ 'max_depth', q{SELECT deliver.send_batch('hfull', array_fill('{}'::jsonb, ARRAY[10000]))}, '53400', 'sender' ],
	[ 'max_depth', q{SELECT deliver.send('hfull', '{}', delay => '1 hour', expires_at => 'infinity')}, '53400', 'sender' ],
	[ 'max_depth', q{SELECT deliver.send('hfull', '{}')}, '42501', 'stranger' ],
	[ 'max_depth', q{SELECT deliver.create_queue('hx', max_depth => -1)}, '22023' ],
	[ 'max_depth', q{SELECT deliver.create_queue('hx', max_depth => 9223372036854775807)}, '22023' ],
	[ 'max_depth', q{SELECT deliver.create_queue('hx', 'at_most_once', overflow => 'drop_oldest')}, '0A000' ],
	[ 'max_depth', q{SELECT deliver.alter_queue('hamo', overflow => 'drop_oldest')}, '0A000' ],
	[ 'max_depth', q{SELECT deliver.create_queue('hx', overflow => 'x''; DROP TABLE deliver.queue; --')}, '22023' ],
	[ 'max_depth', q{SELECT deliver.alter_queue('hfull', max_depth => 100)}, '42501', 'sender' ],
	[ 'max_depth', q{SELECT deliver.alter_queue('hfull', max_depth => -100)}, '22023' ],
	# ack_commit: 'durable' or 'async', async on at_least_once queues only
	[ 'ack_commit', q{SELECT deliver.create_queue('hx', ack_commit => 'x''; DROP TABLE deliver.queue; --')}, '22023' ],
	[ 'ack_commit', q{SELECT deliver.create_queue('hx', ack_commit => repeat('a', 100000))}, '22023' ],
	[ 'ack_commit', q{SELECT deliver.create_queue('hx', ack_commit => E'async\n')}, '22023' ],
	[ 'ack_commit', q{SELECT deliver.create_queue('hx', 'exactly_once', ack_commit => 'async')}, '0A000' ],
	[ 'ack_commit', q{SELECT deliver.create_queue('hx', 'at_most_once', ack_commit => 'async')}, '0A000' ],
	[ 'ack_commit', q{SELECT deliver.alter_queue('heo', ack_commit => 'async')}, '0A000' ],
	[ 'ack_commit', q{SELECT deliver.alter_queue('hamo', ack_commit => 'async')}, '0A000' ],
	[ 'ack_commit', q{SELECT deliver.alter_queue('h', ack_commit => '')}, '22023' ],
	[ 'ack_commit', q{SELECT deliver.alter_queue('h', ack_commit => 'async')}, '42501', 'sender' ],
	[ 'ack_commit', q{SELECT deliver.alter_queue('h', ack_commit => 'async')}, '42501', 'reader' ],
	[ 'ack_commit', q{SELECT deliver.create_queue('hx', ack_commit => 'async')}, '42501', 'stranger' ],
);

my ($pass, $n) = (0, 0);
my $state = query_one($node, $state_sql);
for my $c (@catalogue)
{
	my ($cat, $call, $want, $role) = @$c;
	$n++;
	my $sql = ($role ? "SET ROLE $role;\n" : '') . "$call;";
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-v', 'VERBOSITY=sqlstate' ]);
	my $got = $rc == 0 ? 'ok' : ($err =~ /ERROR:\s+([0-9A-Z]{5})/ ? $1 : "failed: $err");
	my $alive = $node->psql('postgres', 'SELECT 1') == 0;
	my $after = query_one($node, $state_sql);
	my $clean = $got eq 'ok' || $after eq $state;
	$state = $after;
	my $short = $call;
	$short = substr($short, 0, 57) . '...' if length($short) > 60;
	$short =~ s/\s+/ /g;
	my $verdict = ($got eq $want && $alive && $clean) ? 'pass' : 'FAIL';
	ok($verdict eq 'pass', "$cat: $short" . ($role ? " (as $role)" : '') . " -> $want")
	  or diag("got $got, server alive: $alive, state unchanged: $clean");
	$pass++ if $verdict eq 'pass';
	write_result('hostile.tsv', $cat, $short . ($role ? " (as $role)" : ''), $want, $got, $verdict);
}

# the owner's leases survived every hostile ack: each is still current (but
# the one nacked with a long error above)
is($node->safe_psql('postgres', "SELECT deliver.ack('h', $d_g2) AND deliver.ack('h2', $d_h2)"),
	't', 'the leases attacked above are intact and ack once');
is(query_one($node, q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'no shadowing function ran with deliver\'s rights: mallory is no superuser');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('hd', max_messages => 1000)}), '150',
	'the receives moved every message out of attempts to the dead letters');

# every SECURITY DEFINER function pins search_path
my @unpinned = query_list($node, q{
    SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'deliver' AND p.prosecdef
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)});
is(scalar(@unpinned), 0, 'every SECURITY DEFINER function sets search_path = pg_catalog, pg_temp')
  or diag("@unpinned");
my $secdef = query_one($node, q{
    SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'deliver' AND p.prosecdef});
# and none of them is executable by PUBLIC
my @public = query_list($node, q{
    SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'deliver' AND p.prosecdef
       AND has_function_privilege('stranger', p.oid, 'EXECUTE')});
is(scalar(@public), 0, 'no SECURITY DEFINER function is executable by a role without grants')
  or diag("@public");
write_result('hostile.tsv', 'SECURITY DEFINER', "$secdef functions: search_path pinned, not executable by PUBLIC",
	'pinned', (@unpinned || @public) ? 'unpinned or public' : 'pinned', (@unpinned || @public) ? 'FAIL' : 'pass');

# no backend crashed during the whole catalogue
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|server process .* exited with exit code [^0]/, 'no backend crashed');
note("$pass of $n hostile calls behaved as expected");

$node->stop;
done_testing();
