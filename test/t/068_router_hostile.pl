# The router's functions against hostile input from a role granted all of
# them (and the map, and the PL/Proxy server) but no queue: every function
# of deliver_cluster is called with each argument in turn set to a hostile
# value (NULL, empty, 100 kB, negative, out of range, infinite, bad ids,
# another role's name as caller), the others valid.  Each call must end in
# a proper SQLSTATE (never an internal error XX..., a system error 58...,
# or a RAISE without a code, P0001), the server must stay up, and nothing
# may change: the router's map, the queues and their messages.  One node
# holds a shard database and the router database (as 067); no cluster is
# started.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = router_shard_node('router_hostile', partitions => 2, before => 'CREATE ROLE app NOLOGIN');
$node->safe_psql('router', q{
    SELECT deliver_cluster.create_queue('q');
    SELECT deliver_cluster.send('q', '"kept"', ordering_key => 'k');
    SELECT deliver_cluster.bind('a.*', 'q');
});
router_door($node, 'app');

# what must not change
my $state_sql = q{SELECT concat_ws(' | ',
    (SELECT string_agg(concat_ws(':', partition, epoch, shard_id, state), ',' ORDER BY partition, epoch) FROM deliver_cluster.placement),
    (SELECT string_agg(concat_ws(':', shard_id, name, conninfo), ',' ORDER BY shard_id) FROM deliver_cluster.shard),
    (SELECT string_agg(queue_name, ',' ORDER BY queue_name) FROM deliver_cluster.queue),
    (SELECT string_agg(pattern || '>' || queue_name, ',' ORDER BY pattern) FROM deliver_cluster.binding),
    (SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM deliver_cluster.setting),
    (SELECT array_to_string(srvoptions, ',') FROM pg_foreign_server WHERE srvname = 'deliver'))};
my $shard_sql = q{SELECT concat_ws(' | ',
    (SELECT string_agg(concat_ws(':', queue_name, partition, epoch, writable), ',' ORDER BY queue_name, partition) FROM deliver_shard.partition),
    (SELECT string_agg(queue_name, ',' ORDER BY queue_name) FROM deliver.list_queues()),
    (SELECT sum(depth) FROM deliver.metrics()))};
my $router_before = $node->safe_psql('router', $state_sql);
my $shard_before = $node->safe_psql('shard0', $shard_sql);
like($shard_before, qr/^q:0:1:t,q:1:1:t \| q\.p0,q\.p1 \| 1$/, 'the shard: two partitions, one message');

# every function called as app, one hostile argument at a time
$node->safe_psql('router', q{
CREATE TABLE public.hostile_result (fn text, arg int, val text, sqlstate text, message text, n bigint);
GRANT INSERT, SELECT ON public.hostile_result TO app;

CREATE FUNCTION public.hostile_values(t regtype) RETURNS text[] LANGUAGE sql IMMUTABLE AS $f$
SELECT CASE t
    WHEN 'text'::regtype THEN ARRAY['NULL', $$''$$, $$repeat('x', 100000)$$, $$'q'$$, $$'0:1:1'$$,
                                    $$'99999:1:1'$$, $$'#.*.#'$$, $$'none'$$, $$E'a\\b"''c'$$]
    WHEN 'integer'::regtype THEN ARRAY['NULL', '-1', '0', '1', '2147483647', '(-2147483647 - 1)']
    WHEN 'bigint'::regtype THEN ARRAY['NULL', '-1', '0', '9223372036854775807']
    WHEN 'interval'::regtype THEN ARRAY['NULL', $$'-1 day'$$, $$'0'$$, $$'178000000 years'$$]
    WHEN 'jsonb'::regtype THEN ARRAY['NULL', $$'null'$$, $$'{"a": [1, 2]}'$$, $$to_jsonb(repeat('y', 100000))$$]
    WHEN 'boolean'::regtype THEN ARRAY['NULL', 'true', 'false']
    WHEN 'timestamp with time zone'::regtype THEN ARRAY['NULL', $$'infinity'$$, $$'-infinity'$$, $$'2000-01-01'$$]
    WHEN 'double precision'::regtype THEN ARRAY['NULL', $$'NaN'$$, '-1', $$'Infinity'$$, '1e-300', '1e300']
    WHEN 'text[]'::regtype THEN ARRAY['NULL', $$'{}'$$, $$'{NULL}'$$, $$ARRAY[repeat('x', 100000)]$$,
                                      $$'{0:1:1,1:1:1,bad}'$$, $$array_fill('0:1:1'::text, ARRAY[10000])$$]
    WHEN 'integer[]'::regtype THEN ARRAY['NULL', $$'{}'$$, $$'{NULL}'$$, $$'{-1,0,1,2147483647}'$$, $$'[5:6]={0,1}'$$]
    WHEN 'bigint[]'::regtype THEN ARRAY['NULL', $$'{}'$$, $$'{NULL}'$$, $$'{-1,0}'$$]
    WHEN 'jsonb[]'::regtype THEN ARRAY['NULL', $$'{}'$$, $$'{NULL}'$$, $$ARRAY['1'::jsonb, NULL]$$]
    ELSE ARRAY['NULL'] END
$f$;

-- a valid value of each type (the caller argument: the role itself)
CREATE FUNCTION public.valid_value(t regtype, name text) RETURNS text LANGUAGE sql STABLE AS $f$
SELECT CASE WHEN name = 'caller' THEN quote_literal(current_user) ELSE CASE t
    WHEN 'text'::regtype THEN $$'q'$$
    WHEN 'integer'::regtype THEN '0'
    WHEN 'bigint'::regtype THEN '1'
    WHEN 'interval'::regtype THEN $$'1 second'$$
    WHEN 'jsonb'::regtype THEN $$'1'$$
    WHEN 'boolean'::regtype THEN 'false'
    WHEN 'timestamp with time zone'::regtype THEN 'now()'
    WHEN 'double precision'::regtype THEN '1'
    WHEN 'text[]'::regtype THEN $$'{0:1:1}'$$
    WHEN 'integer[]'::regtype THEN $$'{0}'$$
    WHEN 'bigint[]'::regtype THEN $$'{1}'$$
    WHEN 'jsonb[]'::regtype THEN $$ARRAY['1'::jsonb]$$
    ELSE 'NULL' END END
$f$;
GRANT EXECUTE ON FUNCTION public.hostile_values(regtype), public.valid_value(regtype, text) TO app;
});

my ($rc, $out, $err) = $node->psql('router', q{
SET ROLE app;
SET statement_timeout = '300s';
DO $do$
DECLARE
    f record;
    i int;
    v text;
    args text[];
    st text;
    msg text;
    cnt bigint;
BEGIN
    FOR f IN SELECT p.proname, p.proargnames AS names,
                    ARRAY(SELECT x::regtype FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(x, n) ORDER BY n) AS types
               FROM pg_proc p
              WHERE p.pronamespace = 'deliver_cluster'::regnamespace AND p.prokind = 'f'
              ORDER BY 1 LOOP
        FOR i IN 1 .. greatest(cardinality(f.types), 1) LOOP
            FOREACH v IN ARRAY CASE WHEN cardinality(f.types) = 0 THEN ARRAY['-']
                                    ELSE public.hostile_values(f.types[i]) END LOOP
                args := ARRAY(SELECT CASE WHEN j = i THEN v ELSE public.valid_value(f.types[j], f.names[j]) END
                                FROM generate_subscripts(f.types, 1) j ORDER BY j);
                st := '00000';
                msg := NULL;
                cnt := NULL;
                BEGIN
                    EXECUTE format('SELECT count(*) FROM deliver_cluster.%I(%s)', f.proname,
                                   array_to_string(args, ', ')) INTO cnt;
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
                END;
                INSERT INTO public.hostile_result VALUES (f.proname, i, left(v, 60), st, left(msg, 300), cnt);
            END LOOP;
        END LOOP;
    END LOOP;
END $do$;
}, extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($rc, 0, 'every call ran (as app)') or diag $err;

my $calls = $node->safe_psql('router', q{SELECT count(*) FROM public.hostile_result});
my $functions = $node->safe_psql('router', q{SELECT count(DISTINCT fn) FROM public.hostile_result});
my $expected = $node->safe_psql('router',
	q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'deliver_cluster'::regnamespace AND prokind = 'f'});
is($functions, $expected, "every function of deliver_cluster was called ($expected)");
cmp_ok($calls, '>', 1000, "with many hostile arguments ($calls calls)");
# (PL/Proxy's own check of the arrays it splits is an XX000: the internal
# _px_ functions called directly with arrays of different lengths; the
# front door checks them first, as send_batch does)
my $split = q{fn ~ '^_px_' AND sqlstate = 'XX000'
    AND message ~ '^PL/Proxy function deliver_cluster\._px_\w+\(\d+\): split arrays must be of identical lengths$'};
my $bad = $node->safe_psql('router', qq{
    SELECT string_agg(format('%s(arg %s = %s): %s %s', fn, arg, val, sqlstate, message), E'\n' ORDER BY fn, arg)
      FROM public.hostile_result WHERE (sqlstate ~ '^(XX|58)' OR sqlstate = 'P0001') AND NOT ($split)});
is($bad, '', 'no internal error, system error or code-less RAISE (but PL/Proxy\'s split check of a _px_ call)');
note('PL/Proxy split checks: ' . $node->safe_psql('router', "SELECT count(*) FROM public.hostile_result WHERE $split"));
# the refusals are the shard's and the router's own, each with its code
my $refused = $node->safe_psql('router', q{
    SELECT count(*) FROM public.hostile_result
     WHERE sqlstate = '42501' AND message ~ '^(a call to the shards must run as its caller''s role|permission denied)'});
cmp_ok($refused, '>', 100, "refusals to app: 42501 ($refused)");
# a call that went through (nothing to do: an unknown queue, no ids, a
# routing key no binding matches) read nothing of a queue (what writes is
# seen below: the state of the router and of the shard)
my $read = $node->safe_psql('router', q{
    SELECT string_agg(format('%s(arg %s = %s): %s rows', fn, arg, val, n), E'\n' ORDER BY fn, arg)
      FROM public.hostile_result
     WHERE sqlstate = '00000' AND n > 0
       AND fn ~ '^(_px_)?(peek|receive|dead_letters|metrics|all_metrics)$'});
is($read, '', 'no call read a message or a metric as app');

# the procedures (they commit, so not from the DO block): refused to app
for my $call ("CALL deliver_cluster.move_partition(0, 's0', '1 second')",
	"CALL deliver_cluster.move_partition(1, 'nowhere', NULL)", "CALL deliver_cluster.finish_move(0, '1 second')",
	"CALL deliver_cluster.finish_move(NULL, NULL)")
{
	my ($prc, $pout, $perr) = $node->psql('router', "SET ROLE app; $call", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my ($st) = $perr =~ /ERROR:  ([0-9A-Z]{5})/;
	ok($prc != 0 && defined $st && $st !~ /^(XX|58)/ && $st ne 'P0001', "$call: refused with a proper SQLSTATE (" . ($st // 'none') . ')')
	  or diag $perr;
}

is($node->safe_psql('router', $state_sql), $router_before, "the router's map, queues, bindings and server are as they were");
is($node->safe_psql('shard0', $shard_sql), $shard_before, "the shard's partitions, queues and the message are as they were");
is($node->safe_psql('router', q{SELECT payload FROM deliver_cluster.peek('q', 10)}), '"kept"', 'the message is still there');

$node->stop;
done_testing();
