# The router's procedures run with their caller's search_path (a procedure
# that commits can have no SET clause), so whatever they call must resolve
# to pg_catalog whatever a schema on that path holds.  A database owner who
# is not a superuser owns schema public: a pg_sleep(numeric) of theirs
# there is a better match for pg_sleep(0.2) than pg_catalog's
# pg_sleep(double precision), and would run with the rights of the
# superuser finishing a partition move (its effects stay even when the
# move then fails: COPY ... TO PROGRAM, say).  With public first on the
# database's search_path an exact match of theirs wins too: the procedures
# pin their search_path first thing.  One node holds a shard database
# and the router database (owned by such a role); no cluster is started.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = router_shard_node('router_search_path', partitions => 1, before => 'CREATE ROLE dbo LOGIN',
	router_owner => 'dbo');
$node->safe_psql('router', q{
    SELECT deliver_cluster.create_queue('q');
    SELECT deliver_cluster.send('q', '{"n": 1}');
    -- as if a move had begun: partition 0's placement drains, and it is not
    -- drained (a message waits)
    UPDATE deliver_cluster.placement SET state = 'draining';
});

# the database owner's function, on the search_path of the superuser
$node->safe_psql('router', q{
    SET ROLE dbo;
    CREATE FUNCTION public.pg_sleep(numeric) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the pg_sleep of schema public ran as %', current_user;
    END $$;
});

my ($rc, $out, $err) = $node->psql('router', q{CALL deliver_cluster.finish_move(0, '0.5 seconds')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
unlike($err, qr/schema public ran/, "the database owner's pg_sleep did not run with the caller's rights");
like($err, qr/55006: partition 0 is not drained yet/, 'finish_move waited for the drain, then gave up (55006)');

# The owner may also put public before pg_catalog on the path (ALTER
# DATABASE ... SET search_path): then even an exact match of theirs, a
# + (timestamptz, interval), wins over pg_catalog's, here in the
# procedures' first line (the deadline).  They pin the path before that.
$node->safe_psql('router', q{
    SET ROLE dbo;
    CREATE FUNCTION public.ts_plus(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the + of schema public ran as %', current_user;
    END $$;
    CREATE OPERATOR public.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.ts_plus);
    ALTER DATABASE router SET search_path = public, pg_catalog;
});
($rc, $out, $err) = $node->psql('router', q{CALL deliver_cluster.finish_move(0, '0.5 seconds')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
unlike($err, qr/schema public ran/, "with public first on the path: the owner's + did not run in finish_move");
like($err, qr/55006: partition 0 is not drained yet/, 'finish_move still waited, then gave up');
($rc, $out, $err) = $node->psql('router', q{CALL deliver_cluster.move_partition(0, 's0', '0.5 seconds')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
unlike($err, qr/schema public ran/, "nor in move_partition");
like($err, qr/partition 0 has no active placement/, 'move_partition got as far as its first check');
is($node->safe_psql('router', 'SHOW search_path'), 'public, pg_catalog',
	'and the caller\'s search_path is as it was after the calls');
# a finish_move with nothing to do, in the caller's transaction, gives the
# caller's search_path back (a pin of its own would last the transaction)
is($node->safe_psql('router', q{BEGIN; CALL deliver_cluster.finish_move(7); SHOW search_path; COMMIT;}),
	'public, pg_catalog', 'a finish_move with nothing to drain leaves the caller\'s transaction its search_path');

$node->stop;
done_testing();
