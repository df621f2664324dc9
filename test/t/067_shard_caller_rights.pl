# Whose rights a cluster checks (docs/cluster.md, "Whose rights"): every
# call the router makes to a shard through PL/Proxy names the role its
# caller runs as, the router refuses any other name, and the shard runs
# deliver's functions as that role, so a role granted everything on the
# router does on each queue only what the shard lets it.  And on a shard,
# deliver_shard's functions give a role nothing it lacks: naming another
# role is SET ROLE's check, the map is written only by its owner.  One node
# holds a shard database and the router database (PL/Proxy connects as the
# superuser, as scripts/cluster's connection strings do); no cluster is
# started.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = router_shard_node('shard_caller', partitions => 2,
	before => 'CREATE ROLE app NOLOGIN; CREATE ROLE mallory LOGIN;');
my $su = query_one($node, 'SELECT current_user');
$node->safe_psql('router', q{
    SELECT deliver_cluster.create_queue('q');
    SELECT deliver_cluster.create_queue('q2');
    SELECT deliver_cluster.send('q', '"secret"');
});
# app: everything on the router, the widest grant there
router_door($node, 'app');

# run SQL in a database (as role, or the superuser); its output, or its
# error (verbose: with the SQLSTATE)
sub run_sql
{
	my ($db, $sql, %o) = @_;
	$sql = "SET ROLE $o{role}; $sql" if $o{role};
	my ($rc, $out, $err) = $node->psql($db, $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose', $o{user} ? ('-U', $o{user}) : () ]);
	return $rc == 0 ? $out : $err;
}
sub as_app { return run_sql('router', $_[0], role => 'app') }

# ---- through the router, as app ---------------------------------------------
my $shard_denies = sub { qr/42501: .*REMOTE ERROR: permission denied to \Q$_[0]\E queue "q\.p\d"/ };
like(as_app(q{SELECT count(*) FROM deliver_cluster.peek('q', 10)}), $shard_denies->('peek at'),
	'peek: the shard refuses app');
like(as_app(q{SELECT deliver_cluster.send('q', '1')}), $shard_denies->('send to'), 'send: the shard refuses app');
like(as_app(q{SELECT count(*) FROM deliver_cluster.receive('q', 0, 10)}), $shard_denies->('receive from'),
	'receive: the shard refuses app');
like(as_app(q{SELECT count(*) FROM deliver_cluster.metrics('q')}), $shard_denies->('read metrics of'),
	'metrics: the shard refuses app');
like(as_app(q{SELECT deliver_cluster.grant_queue('q', 'app', 'all')}),
	qr/42501: .*REMOTE ERROR: permission denied for function grant_queue/, 'grant_queue: app cannot grant itself');
is(as_app(q{SELECT count(*) FROM deliver_cluster.all_metrics()}), '0', 'all_metrics: no queue is app\'s to see');

my $refused = qr/42501: a call to the shards must run as its caller's role/;
like(as_app(qq{SELECT count(*) FROM deliver_cluster._px_peek('q', 10, NULL, '$su')}), $refused,
	'_px_peek naming the superuser: the router refuses (every shard)');
like(as_app(qq{SELECT deliver_cluster._px_send(0, 0, 'q', '1', NULL, NULL, NULL, NULL, NULL, NULL, caller => '$su')}), $refused,
	'_px_send naming the superuser: refused (one shard)');
like(as_app(qq{SELECT count(*) FROM deliver_cluster._px_ack_batch(ARRAY[0], ARRAY['0:1:1'], 'q', '$su')}), $refused,
	'_px_ack_batch naming the superuser: refused (split by shard)');
like(as_app(q{SELECT count(*) FROM deliver_cluster._px_metrics('q', NULL)}), $refused, 'naming no role: refused');

# granted on q: app uses q through the router (each kind of shard call),
# not q2
is(run_sql('router', q{SELECT deliver_cluster.grant_queue('q', 'app', 'all')}), '2', 'grant_queue q to app: 2 partitions');
like(as_app(q{SELECT deliver_cluster.send('q', '"from app"')}), qr/^\d+:1:\d+$/, 'app sends');
like(as_app(q{SELECT deliver_cluster.send_batch('q', ARRAY['1', '2']::jsonb[])}), qr/^\{\d+:1:\d+,\d+:1:\d+\}$/,
	'app sends a batch');
# a batch's arrays of another length than payloads: the router's 2202E
# (before, PL/Proxy's split check, an internal error XX000)
like(as_app(q{SELECT deliver_cluster.send_batch('q', ARRAY['1', '2']::jsonb[], headers => '{}')}),
	qr/2202E: headers has 0 elements, payloads has 2/, 'send_batch: headers of another length (2202E)');
like(as_app(q{SELECT deliver_cluster.send_batch('q', ARRAY['1']::jsonb[], ordering_keys => '{a,b}')}),
	qr/2202E: ordering_keys has 2 elements, payloads has 1/, 'send_batch: ordering_keys of another length (2202E)');
like(as_app(q{SELECT deliver_cluster.send_batch('q', '{{1},{2}}'::jsonb[])}),
	qr/2202E: payloads must be a one-dimensional array/, 'send_batch: payloads of two dimensions (2202E)');
like(as_app(q{SELECT deliver_cluster.send_batch('q', '[5:5]={5}'::jsonb[], ordering_keys => '[5:5]={k}')}),
	qr/^\{\d+:1:\d+\}$/, 'send_batch: arrays with a lower bound of 5 are taken as they are');
run_sql('router', q{SELECT deliver_cluster.send_batch('q2', ARRAY['1', '2']::jsonb[],
    headers => '[3:4]={"{\"h\": 1}","{\"h\": 2}"}', ordering_keys => '[0:1]={a,b}', idempotency_keys => '[7:8]={i1,i2}')});
is(run_sql('router', q{SELECT string_agg(payload::text || '=' || ordering_key || '/' || headers::text, ',' ORDER BY payload::text)
                         FROM deliver_cluster.peek('q2', 10)}), '1=a/{"h": 1},2=b/{"h": 2}',
	'send_batch: arrays of other lower bounds, each element with its payload');
is(as_app(q{SELECT count(*) FROM deliver_cluster.peek('q', 10)}), '5', 'app peeks at the five messages');
is(as_app(q{SELECT count(*) FROM deliver_cluster.all_metrics() WHERE queue_name = 'q'}), '1', 'all_metrics: q is app\'s');
my @d = split /\n/, as_app(q{SELECT delivery_id FROM deliver_cluster.receive('q', 0, 10)
                              UNION ALL SELECT delivery_id FROM deliver_cluster.receive('q', 1, 10)});
is(scalar(@d), 5, 'app receives the five messages') or diag explain \@d;
like(as_app(qq{SELECT deliver_cluster.extend_lease('q', '$d[0]', '1 minute')}), qr/^\d{4}-/, 'app extends a lease');
is(as_app(qq{SELECT deliver_cluster.ack('q', '$d[0]')}), 't', 'app acks one');
is(as_app(qq{SELECT deliver_cluster.nack('q', '$d[1]', 'no', '0')}), 't', 'app nacks one');
is(as_app(qq{SELECT deliver_cluster.ack_batch('q', ARRAY['$d[2]', '$d[3]'])}), '2', 'app acks a batch');
like(as_app(q{SELECT count(*) FROM deliver_cluster.peek('q2', 10)}),
	qr/42501: .*REMOTE ERROR: permission denied to peek at queue "q2\.p\d"/, 'q2: still refused to app');
like(run_sql('router', q{SELECT deliver_cluster.send('q2', '1')}), qr/^\d+:1:\d+$/,
	'the superuser still sends to q2 (the shard took its role back)');

# ---- on the shard, as mallory (a login role without rights) --------------------
sub as_mallory { return run_sql('shard0', $_[0], user => 'mallory') }
like(as_mallory(qq{SELECT deliver_shard.act_as('$su')}), qr/42501: permission denied to set role "\Q$su\E"/,
	'act_as the superuser: refused (SET ROLE)');
like(as_mallory(qq{SELECT count(*) FROM deliver_shard.peek('q', 10, NULL, '$su')}),
	qr/42501: permission denied to set role/, 'peek naming the superuser: refused');
like(as_mallory(qq{SELECT deliver_shard.act_back('$su')}), qr/42501: permission denied to set role/,
	'act_back to the superuser: refused');
like(as_mallory(q{SELECT deliver_shard.act_as('none')}), qr/22023: invalid caller role "none"/,
	'act_as none (back to the session user): refused');
like(as_mallory(q{SELECT deliver_shard.act_as('')}), qr/22023: invalid caller role ""/, 'act_as an empty name: refused');
like(as_mallory(q{SELECT deliver_shard.act_as('nobody_here')}), qr/22023: role "nobody_here" does not exist/,
	'act_as an unknown role: refused');
like(as_mallory(q{SELECT count(*) FROM deliver_shard.peek('q', 10, NULL)}),
	qr/42501: permission denied to peek at queue "q\.p\d"/, 'peek without a caller: as mallory, refused');
like(as_mallory(q{SELECT deliver_shard.stop_writes(0)}), qr/42501: permission denied for table partition/,
	'stop_writes: the map is not mallory\'s to write');
like(as_mallory(q{SELECT count(*) FROM deliver_shard.create_partitions(ARRAY[0], ARRAY[0], ARRAY[9], 'evil',
    NULL, NULL, NULL, NULL, NULL, NULL, NULL)}), qr/42501: permission denied for function create_queue/,
	'create_partitions: refused to mallory');
like(as_mallory(q{SELECT count(*) FROM deliver_shard.drop_partitions('q')}), qr/42501: permission denied for function drop_queue/,
	'drop_partitions: refused to mallory');
is(as_mallory(q{SELECT count(*) FROM deliver_shard.partition WHERE queue_name = 'q'}), '2',
	'mallory reads the map (which partition is where)');
is(run_sql('shard0', q{SELECT string_agg(queue_name || ':' || partition || ':' || writable, ',' ORDER BY queue_name, partition)
    FROM deliver_shard.partition}), 'q:0:true,q:1:true,q2:0:true,q2:1:true', 'the map is as the router made it');

$node->stop;
done_testing();
