# CREATE EXTENSION and ALTER EXTENSION UPDATE run their scripts as a
# superuser, with public on the search_path.  A database owner who is not
# a superuser owns schema public: an operator of theirs there that matches
# two types exactly (float8 > int4, numeric >= int4, oid = regclass) wins
# over pg_catalog's, which needs a cast.  Bound into a CHECK constraint it
# would run as whoever writes the table (the maintenance worker, a
# superuser, for alerts); in a DO block of an upgrade it would run at once.
# The scripts run with pg_catalog only: every statement below works, and no
# object of deliver depends on anything in public.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('install_shadows');
$node->safe_psql('postgres', q{
    CREATE ROLE dbo LOGIN;
    CREATE ROLE app NOLOGIN;
    CREATE DATABASE fresh OWNER dbo;
    CREATE DATABASE upgraded OWNER dbo;
});

# the database owner's operators, each raising when it runs
my $shadows = join "\n", map {
	my ($op, $l, $r, $f) = @$_;
	qq{CREATE FUNCTION public.$f(a $l, b $r) RETURNS boolean LANGUAGE plpgsql AS \$\$
        BEGIN RAISE EXCEPTION 'the $op of schema public ran as %', current_user; END \$\$;
       CREATE OPERATOR public.$op (LEFTARG = $l, RIGHTARG = $r, FUNCTION = public.$f);}
} ([ '>', 'float8', 'int4', 'f8gt' ], [ '<=', 'float8', 'int4', 'f8le' ], [ '>=', 'numeric', 'int4', 'numge' ],
	[ '=', 'oid', 'regclass', 'oideqclass' ], [ '=', 'oid', 'regnamespace', 'oideqns' ],
	[ '<>', 'oid', 'int4', 'oidne4' ], [ '=', 'oid', 'int4', 'oideq4' ]);
$node->safe_psql($_, "SET ROLE dbo; $shadows") for qw(fresh upgraded);

# what depends on an operator or function outside pg_catalog and deliver
# (this test's own statements run with pg_catalog only: the shadows are on
# its search_path too)
my $foreign = q{
    SET search_path = pg_catalog, pg_temp;
    SELECT coalesce(string_agg(DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
                               || ' -> ' || n.nspname, '; '), '')
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_operator o ON d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
                                   AND o.oid = d.refobjid
      JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'deliver')
};
# every table that has a constraint with an operator: writes to it
my $use = q{
    SELECT deliver.create_queue('q1');
    SELECT deliver.grant_queue('q1', 'app', 'all');
    SELECT deliver.create_consumer_group('q1', 'g1');
    SELECT deliver.set_consumer_group_rate('q1', 'g1', 10.5, 5);
    SELECT deliver.set_alert('q1', 'depth', 3);
    SELECT deliver.send('q1', '{"n": 1}');
    SELECT count(*) FROM deliver.receive('q1');
};

# ---- a fresh install
my ($rc, $out, $err) = $node->psql('fresh', 'CREATE EXTENSION deliver; SHOW search_path');
is($rc, 0, 'CREATE EXTENSION with the owner\'s operators in public') or diag($err);
is($out, '"$user", public', 'the session\'s search_path is as it was after it (the script\'s is its own)');
is($node->safe_psql('fresh', $foreign), '', 'no object of deliver uses an operator of public');
($rc, $out, $err) = $node->psql('fresh', $use);
is($rc, 0, 'queues, groups, rates and alerts are made and used') or diag($err);
is($node->safe_psql('fresh', q{SELECT count(*) FROM deliver.consumer_group WHERE rate_per_second = 10.5}), '1',
	'the rate is there');

# ---- 0.1, then the update to 0.2 (its DO blocks compare oids with regclass)
($rc, $out, $err) = $node->psql('upgraded', q{
    CREATE EXTENSION deliver VERSION '0.1';
    SELECT deliver.create_queue('old');
});
is($rc, 0, 'deliver 0.1 with the owner\'s operators in public') or diag($err);
($rc, $out, $err) = $node->psql('upgraded', 'ALTER EXTENSION deliver UPDATE; SHOW search_path');
is($rc, 0, 'ALTER EXTENSION deliver UPDATE with them') or diag($err);
is($out, '"$user", public', 'the session\'s search_path is as it was after it');
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'deliver'}),
	'0.2', 'to 0.2');
is($node->safe_psql('upgraded', $foreign), '', 'no object of deliver uses an operator of public');
($rc, $out, $err) = $node->psql('upgraded', $use);
is($rc, 0, 'queues, groups, rates and alerts are made and used') or diag($err);

is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'dbo'}), 'f',
	'the database owner is no superuser');
$node->stop;
done_testing();
