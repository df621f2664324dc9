# Shadowing functions and operators never run with deliver's rights.
#
# deliver's functions write a queue's tables as their owner, and the
# maintenance worker runs as a superuser.  A role that may only receive
# (mallory), or a database owner who is not a superuser (dbo), puts
# functions and operators named like the ones deliver's statements use
# (unnest(int[]), array_agg, clock_timestamp, now, pg_current_xact_id, =
# and < on bigint, = on text, ...) in front of pg_catalog on the
# search_path.  Every path that runs as another role is driven: send,
# publish (topic routing), receive (with delayed messages coming due, no
# worker), ack, nack, dead-letter moves, extend_lease, maintain, redrive,
# archived, dead_letters, metrics, alerts, and the worker itself.  No shadowing
# function may run at all (each one logs its call), and no role may become
# superuser.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use DeliverHistory qw(write_result);

my $node = deliver_node('search_path', "deliver.database = 'victim'",
	"deliver.maintenance_interval = '100ms'", "deliver.alert_interval = '100ms'",
	"deliver.rotation_interval = '200ms'");

# The shadows: each logs (name, current_user) into <schema>.pwned, tries to
# make its schema's owner a superuser (which works only when it runs as
# one), and then does what the real one does.
sub shadows
{
	my ($schema, $owner) = @_;
	return qq{
    CREATE TABLE $schema.pwned (fn text, by_role text, at timestamptz DEFAULT now());
    GRANT INSERT, SELECT ON $schema.pwned TO PUBLIC;
    CREATE FUNCTION $schema.gotcha(fn text) RETURNS void LANGUAGE plpgsql AS \$\$
    BEGIN
        INSERT INTO $schema.pwned (fn, by_role) VALUES (fn, current_user);
        BEGIN
            EXECUTE 'ALTER ROLE $owner SUPERUSER';
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END \$\$;
    GRANT EXECUTE ON FUNCTION $schema.gotcha(text) TO PUBLIC;
    CREATE FUNCTION $schema.unnest(int[]) RETURNS SETOF int LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('unnest(int[])'); RETURN QUERY SELECT pg_catalog.unnest(\$1); END \$\$;
    CREATE FUNCTION $schema.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('unnest(bigint[])'); RETURN QUERY SELECT pg_catalog.unnest(\$1); END \$\$;
    CREATE FUNCTION $schema.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(\$1); END \$\$;
    CREATE FUNCTION $schema.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END \$\$;
    CREATE FUNCTION $schema.now() RETURNS timestamptz LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('now'); RETURN pg_catalog.now(); END \$\$;
    CREATE FUNCTION $schema.pg_current_xact_id() RETURNS xid8 LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('pg_current_xact_id'); RETURN pg_catalog.pg_current_xact_id(); END \$\$;
    CREATE FUNCTION $schema.pg_visible_in_snapshot(xid8, pg_snapshot) RETURNS boolean LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('pg_visible_in_snapshot'); RETURN pg_catalog.pg_visible_in_snapshot(\$1, \$2); END \$\$;
    CREATE FUNCTION $schema.min(timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('min'); RETURN \$1; END \$\$;
    CREATE FUNCTION $schema.int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('= bigint'); RETURN \$1 OPERATOR(pg_catalog.=) \$2; END \$\$;
    CREATE OPERATOR $schema.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = $schema.int8eq);
    CREATE FUNCTION $schema.int4eq(int, int) RETURNS boolean LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('= int'); RETURN \$1 OPERATOR(pg_catalog.=) \$2; END \$\$;
    CREATE OPERATOR $schema.= (LEFTARG = int, RIGHTARG = int, FUNCTION = $schema.int4eq);
    CREATE FUNCTION $schema.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('= text'); RETURN \$1 OPERATOR(pg_catalog.=) \$2; END \$\$;
    CREATE OPERATOR $schema.= (LEFTARG = text, RIGHTARG = text, FUNCTION = $schema.texteq);
    CREATE FUNCTION $schema.tslt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('< timestamptz'); RETURN \$1 OPERATOR(pg_catalog.<) \$2; END \$\$;
    CREATE OPERATOR $schema.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = $schema.tslt);
    CREATE FUNCTION $schema.tsle(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('<= timestamptz'); RETURN \$1 OPERATOR(pg_catalog.<=) \$2; END \$\$;
    CREATE OPERATOR $schema.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = $schema.tsle);
    CREATE FUNCTION $schema.tsmi(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('- interval'); RETURN \$1 OPERATOR(pg_catalog.-) \$2; END \$\$;
    CREATE OPERATOR $schema.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = $schema.tsmi);
    CREATE FUNCTION $schema.tspl(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS
        \$\$ BEGIN PERFORM $schema.gotcha('+ interval'); RETURN \$1 OPERATOR(pg_catalog.+) \$2; END \$\$;
    CREATE OPERATOR $schema.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = $schema.tspl);
};
}

# a receive-only role with a schema of its own, in a database without a
# maintenance worker (receive moves delayed messages itself there)
$node->safe_psql('postgres', q{
    CREATE ROLE mallory LOGIN;
    CREATE SCHEMA mallory AUTHORIZATION mallory;
    SELECT deliver.create_queue('sp', max_attempts => 2, retry_base => '0',
                                visibility_timeout => '1 second');
    SELECT deliver.create_queue('sp_eo', 'exactly_once', retry_base => '0');
    SELECT deliver.create_queue('sp_fifo', fifo => true);
    SELECT deliver.grant_queue(q, 'mallory', 'all') FROM unnest(ARRAY['sp', 'sp_eo', 'sp_fifo']) q;
    -- topic routing: publish reads the bindings as the catalog's owner
    SELECT deliver.create_queue('sp_topic');
    SELECT deliver.grant_queue('sp_topic', 'mallory', 'send');
    SELECT deliver.bind('sp.#', 'sp_topic');
    -- administration granted to mallory: those functions run as their owner
    GRANT EXECUTE ON FUNCTION deliver.maintain(text), deliver.redrive(text, bigint[], text, text),
                              deliver.delete_message(text, bigint), deliver.reset_consumer_group(text, text, text),
                              deliver.set_alert(text, text, numeric),
                              deliver.alter_queue(text, interval, int, interval, interval, interval, interval, interval, text, bigint, text, text, boolean)
       TO mallory;
});
$node->safe_psql('postgres', "SET ROLE mallory;\n" . shadows('mallory', 'mallory'));

# everything mallory does runs with her schema first on the search_path
my $as_mallory = "SET ROLE mallory; SET search_path = mallory, pg_catalog;\n";
sub mallory
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $as_mallory . $sql);
	is($rc, 0, "as mallory: $sql") or diag($err);
	return $out;
}

mallory(q{SELECT deliver.send('sp', '{"n": 1}', ordering_key => 'k')});
mallory(q{SELECT deliver.send_batch('sp', ARRAY['{"n": 2}', '{"n": 3}']::jsonb[], ordering_keys => ARRAY['k', 'k2'])});
mallory(q{SELECT deliver.send('sp', '{"n": 4}', delay => '10 milliseconds')});
mallory(q{SELECT deliver.send_batch('sp_eo', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[], idempotency_keys => ARRAY['a', 'a'])});
mallory(q{SELECT deliver.send('sp_eo', '{"n": 3}', idempotency_key => 'a')});
mallory(q{SELECT deliver.send_batch('sp_fifo', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[], ordering_keys => ARRAY['k', 'k'])});
mallory(q{SELECT count(*) FROM deliver.publish('sp.x', '{"n": 1}', ordering_key => 'k', idempotency_key => 'p1')});
mallory(q{SELECT count(*) FROM deliver.test_routing('sp.x')});
# a sleep, not a wait: the delayed message (10 ms) comes due
$node->safe_psql('postgres', 'SELECT pg_sleep(0.05)');
# receive (moving the delayed message that came due), ack, nack, extend
mallory(q{SELECT count(*) FROM deliver.receive('sp', 10) r WHERE r.payload->>'n' OPERATOR(pg_catalog.=) '1' AND deliver.ack('sp', r.delivery_id)});
mallory(q{SELECT count(*) FROM deliver.receive('sp', 10) r WHERE deliver.nack('sp', r.delivery_id, 'no', '0')});
mallory(q{SELECT count(*) FROM deliver.receive('sp', 10) r WHERE deliver.extend_lease('sp', r.delivery_id, '1 s') IS NOT NULL});
mallory(q{SELECT count(*) FROM deliver.receive('sp_eo', 10) r WHERE deliver.ack('sp_eo', r.delivery_id)});
mallory(q{SELECT deliver.ack_batch('sp_fifo', array_agg(delivery_id)) FROM deliver.receive('sp_fifo', 10)});
# a sleep, not a wait: the leases (1 second) run out
$node->safe_psql('postgres', 'SELECT pg_sleep(1.2)');
# leases ran out at attempt 2 (max_attempts 2): receive moves them to the
# dead letters
mallory(q{SELECT count(*) FROM deliver.receive('sp', 10)});
mallory(q{SELECT count(*) FROM deliver.dead_letters('sp')});
mallory(q{SELECT deliver.redrive('sp')});
mallory(q{SELECT deliver.alter_queue('sp', archive_retention => '1 day')});
mallory(q{SELECT count(*) FROM deliver.receive('sp', 10) r WHERE deliver.ack('sp', r.delivery_id)});
mallory(q{SELECT * FROM deliver.maintain('sp')});
mallory(q{SELECT * FROM deliver.maintain()});
mallory(q{SELECT count(*) FROM deliver.archived('sp')});
mallory(q{SELECT count(*) FROM deliver.metrics('sp')});
mallory(q{SELECT count(*) FROM deliver.metrics()});
mallory(q{SELECT deliver.set_alert('sp', 'depth', 0)});
mallory(q{SELECT count(*) FROM deliver.list_grants()});
mallory(q{SELECT deliver.has_queue_privilege('sp', 'all')});
# nack to the dead letters, redrive to another queue, delete_message,
# reset_consumer_group (the last three granted to her, run as the owner)
mallory(q{SELECT deliver.send('sp', '{"n": 5}', ordering_key => 'k5')});
mallory(q{SELECT count(*) FROM deliver.receive('sp', 10) r WHERE deliver.nack('sp', r.delivery_id, 'no', dead_letter => true)});
mallory(q{SELECT deliver.redrive('sp', NULL, NULL, 'sp_fifo')});
mallory(q{SELECT deliver.delete_message('sp', 1)});
mallory(q{SELECT deliver.delete_message('sp', 2)});
mallory(q{SELECT deliver.reset_consumer_group('sp', 'default', 'earliest')});
mallory(q{SELECT deliver.reset_consumer_group('sp', 'default', '2')});
mallory(q{SELECT deliver.reset_consumer_group('sp', 'default', pg_catalog.now()::pg_catalog.text)});
mallory(q{SELECT count(*) FROM deliver.receive('sp', 10)});

my $ran = $node->safe_psql('postgres', 'SELECT count(*) FROM mallory.pwned');
is($ran, '0', 'no shadowing function of the receive-only role ran')
  or diag($node->safe_psql('postgres', 'SELECT fn, by_role FROM mallory.pwned'));
write_result('hostile.tsv', 'escalation',
	'shadowing functions and operators of a receive-only role, every path that runs as the owner',
	'none ran', $ran eq '0' ? 'none ran' : "$ran ran", $ran eq '0' ? 'pass' : 'FAIL');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'mallory is no superuser');

# A database owner who is not a superuser, in the database a maintenance
# worker serves: shadows in schema public (which the database owner owns)
# and public in front of pg_catalog for every session of the database.
$node->safe_psql('postgres', q{
    CREATE ROLE dbo LOGIN;
    CREATE DATABASE victim OWNER dbo;
});
$node->safe_psql('victim', 'CREATE EXTENSION deliver');
$node->safe_psql('victim', q{
    SELECT deliver.create_queue('w', max_attempts => 1, visibility_timeout => '100 ms', retry_base => '0');
    SELECT deliver.alter_queue('w', archive_retention => '1 day');
    SELECT deliver.create_consumer_group('w', 'g2');
    SELECT deliver.set_alert('w', 'depth', 0);
    SELECT deliver.set_alert('w', 'oldest_age', 0);
    SELECT deliver.set_alert('w', 'dead_letters', 0);
    SELECT deliver.send('w', '{"n": 1}', ordering_key => 'k', delay => '300 ms');
    SELECT deliver.send_batch('w', ARRAY['{"n": 2}', '{"n": 3}']::jsonb[]);
    SELECT deliver.send('w', '{"n": 4}', delay => '1 s');
    -- leases that run out: the worker's sweep moves them to the dead letters
    SELECT count(*) FROM deliver.receive('w', 10);
});
$node->safe_psql('victim', "SET ROLE dbo;\n" . shadows('public', 'dbo')
	  . "ALTER DATABASE victim SET search_path = public, pg_catalog;");
ok(wait_for($node, q{SELECT pid IS NOT NULL FROM deliver.worker_status() WHERE database = 'victim'}, 't', 30),
	'the worker serves the victim database');
# several runs of the worker: delayed moves, sweeps with dead-letter moves,
# alerts firing; waited for in the victim database without an operator or
# function the database owner shadows (qualified, or not shadowed)
ok($node->poll_query_until('victim', q{
    SELECT (SELECT w.runs OPERATOR(pg_catalog.>) 5 AND w.dead_total OPERATOR(pg_catalog.>) 0
              FROM deliver.worker_status() w WHERE w.database OPERATOR(pg_catalog.=) 'victim')
       AND (SELECT bool_and(m.delayed OPERATOR(pg_catalog.=) 0) FROM deliver.metrics('w') m)
       AND (SELECT count(*) FILTER (WHERE firing) OPERATOR(pg_catalog.=) 3 FROM deliver.list_alerts('w'))}),
	'the worker moved the delayed messages, swept leases to the dead letters and fired the alerts');
my ($runs, $dead) = split /\|/, $node->safe_psql('postgres',
	q{SELECT runs, dead_total FROM deliver.worker_status() WHERE database = 'victim'});
cmp_ok($runs, '>', 5, "the worker ran ($runs runs)");
cmp_ok($dead, '>', 0, "its sweeps moved messages to the dead letters ($dead)");
is($node->safe_psql('victim', q{SELECT count(*) FILTER (WHERE firing) FROM deliver.list_alerts('w')}), '3',
	'its alert check ran');
$ran = $node->safe_psql('victim', 'SELECT count(*) FROM public.pwned');
is($ran, '0', 'no shadowing function of the database owner ran in the worker')
  or diag($node->safe_psql('victim', 'SELECT fn, by_role FROM public.pwned'));
write_result('hostile.tsv', 'escalation',
	'shadowing functions and operators of a database owner (schema public, ALTER DATABASE SET search_path), maintenance worker',
	'none ran', $ran eq '0' ? 'none ran' : "$ran ran", $ran eq '0' ? 'pass' : 'FAIL');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'dbo'}), 'f',
	'the database owner is no superuser');
# the worker's errors, if any, are not about the shadows
is($node->safe_psql('postgres', q{SELECT coalesce(last_error, '') FROM deliver.worker_status() WHERE database = 'victim'}),
	'', 'the worker had no error');

done_testing();
