# Queue settings, flow control and inspection on a partitioned queue of a
# deliver cluster (scripts/cluster: two shards of a primary and a
# synchronous standby, a router, deliverd in cluster mode, 4 partitions),
# through the router's SQL functions and through the gateway:
#   1. create_queue / POST /v1/queues with message_ttl, on_expire,
#      max_depth, overflow, ack_commit; alter_queue / PATCH /v1/queues/{q}:
#      set on every partition's queue (max_depth is each partition's); a
#      batch's expires_at; priorities: the queue's switch on every
#      partition, a message's priority (send, send_batch, publish) passed
#      to its partition's queue, kept by a move;
#   2. pause / resume of a consumer group, its rate, the FIFO key limit, on
#      every partition;
#   3. peek (merged from the partitions), delete a message by its id, reset
#      of a consumer group;
#   4. the console's routes: every queue's metrics merged over its
#      partitions, each shard's workers, alerts and push subscriptions;
#   5. the shards check the caller's rights: a role granted every function
#      of the router does on each queue only what the shards' deliver lets
#      it, and cannot name another role to the shards.
# Bad input, unknown queues and a role without the administration rights
# get 4xx answers (the router's SQLSTATEs), and the sanitizers report
# nothing.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use ClusterTest qw(cluster cluster_start cluster_stop);
use GatewayTest qw(gw_is_error);

my $dir = PostgreSQL::Test::Utils::tempdir();
# ports from 30000 to 30800: away from 030's (20000 to 29999) and 031's
# (31000 on)
my $c = cluster_start(dir => $dir, base => 30000, bases => 4, gateway => 1);
my (undef, $token) = cluster('token', 'postgres', 3600);
my (undef, $app_token) = cluster('token', 'app', 3600);
chomp($token, $app_token);
my $router = $c->{router};
my @shard = @{ $c->{shards} };

# psql -c SQL: its output, or (with may_fail) "ERROR SQLSTATE" when it failed
sub psql
{
	my ($conn, $sql, %opt) = @_;
	my ($o, $e) = ('', '');
	my $r = IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-d', $conn,
			'-c', $sql ], '>', \$o, '2>', \$e);
	chomp $o;
	return "ERROR $1" if !$r && $opt{may_fail} && $e =~ /ERROR:\s+([0-9A-Z]{5})/;
	die "psql failed: $e" if !$r;
	return $o;
}
sub sql_error
{
	my ($sql, $sqlstate, $name) = @_;
	is(psql($router, $sql, may_fail => 1), "ERROR $sqlstate", "$name: $sqlstate");
	return;
}
# a query on both shards, the lines of both, sorted
sub on_shards
{
	my ($sql) = @_;
	return join("\n", sort map { split /\n/, psql($_, $sql) } @shard);
}

my $json = JSON::PP->new->canonical;
my $gw = $c->{gw};
my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 1);
sub req
{
	my ($method, $path, $body, %o) = @_;
	my $r = $http->request($method, "$gw$path",
		{ headers => { Authorization => 'Bearer ' . ($o{token} // $token), 'Content-Type' => 'application/json' },
		  defined $body ? (content => ref $body ? $json->encode($body) : $body) : () });
	my $d = eval { $json->decode($r->{content}) };
	return ($r->{status}, $d);
}

# a role without the administration rights (it may use the queues it is
# granted), on the router and on both shards
psql($_, 'CREATE ROLE app NOLOGIN; GRANT app TO CURRENT_USER') for ($router, @shard);

# keys of each partition (k<partition>-<n>)
my %key_of;
for my $i (0 .. 199)
{
	my $p = psql($router, "SELECT deliver_cluster.partition_of('key$i')");
	push @{ $key_of{$p} }, "key$i";
}
is(scalar(keys %key_of), 4, 'keys for each of the 4 partitions');
my @k = map { $key_of{$_}[0] } 0 .. 3;

my $settings = q{SELECT queue_name || ' ' || coalesce(message_ttl::text, '-') || ' ' || on_expire || ' '
    || coalesce(max_depth::text, '-') || ' ' || overflow || ' ' || ack_commit FROM deliver.list_queues()};

# ---- 1. queue settings ----------------------------------------------------
is(psql($router, q{SELECT deliver_cluster.create_queue('sq', message_ttl => '1 hour', on_expire => 'drop',
    max_depth => 2, overflow => 'reject', ack_commit => 'async')}), 4, 'create_queue with the settings: 4 partitions');
is(on_shards("$settings WHERE queue_name LIKE 'sq.%'"),
	join("\n", map { "sq.p$_ 01:00:00 drop 2 reject async" } 0 .. 3), 'every partition has them');
# max_depth is each partition's
psql($router, "SELECT deliver_cluster.send('sq', '1', ordering_key => '$k[0]') FROM generate_series(1, 2)");
sql_error("SELECT deliver_cluster.send('sq', '1', ordering_key => '$k[0]')", '53400',
	'a third message in one partition of max_depth 2');
like(psql($router, "SELECT deliver_cluster.send('sq', '1', ordering_key => '$k[1]')"), qr/^1:1:\d+$/,
	'another partition takes it');
is(psql($router, q{SELECT deliver_cluster.alter_queue('sq', max_depth => 3, message_ttl => '0', on_expire => 'dead_letter')}),
	4, 'alter_queue: 4 partitions');
is(on_shards("$settings WHERE queue_name LIKE 'sq.%'"),
	join("\n", map { "sq.p$_ - dead_letter 3 reject async" } 0 .. 3), 'every partition altered (message_ttl 0: none)');
like(psql($router, "SELECT deliver_cluster.send('sq', '1', ordering_key => '$k[0]')"), qr/^0:1:\d+$/,
	'the third message now fits');
sql_error(q{SELECT deliver_cluster.alter_queue('sq', overflow => 'explode')}, '22023', 'alter_queue: a bad overflow');
sql_error(q{SELECT deliver_cluster.alter_queue('sq', max_depth => -1)}, '22023', 'alter_queue: a negative max_depth');
sql_error(q{SELECT deliver_cluster.alter_queue('nope', max_depth => 1)}, '42704', 'alter_queue: an unknown queue');
sql_error(q{SELECT deliver_cluster.create_queue('sq2', on_expire => 'explode')}, '22023', 'create_queue: a bad on_expire');
sql_error(q{SET ROLE app; SELECT deliver_cluster.alter_queue('sq', max_depth => 1)}, '42501', 'alter_queue: not for app');

# a batch's expires_at (a time passed: never handed out, dead letters with reason expired)
psql($router, q{SELECT deliver_cluster.create_queue('xq')});
my $ids = psql($router, q{SELECT deliver_cluster.send_batch('xq', ARRAY['1', '2', '3']::jsonb[],
    expires_at => '2000-01-01')});
like($ids, qr/^\{\d+:1:\d+,\d+:1:\d+,\d+:1:\d+\}$/, 'send_batch with expires_at: 3 ids');
like(psql($router, q{SELECT deliver_cluster.send('xq', '4', expires_at => 'infinity')}), qr/^\d+:1:\d+$/,
	'send with expires_at');
my @got = grep { length } map { psql($router, "SELECT string_agg(payload::text, ',') FROM deliver_cluster.receive('xq', $_, 10)") }
	0 .. 3;
is(join(',', @got), '4', 'only the message without a deadline passed is received');
is(psql($router, q{SELECT string_agg(DISTINCT reason, ',') || ' ' || count(*) FROM deliver_cluster.dead_letters('xq')}),
	'expired 3', 'the expired ones are dead letters (reason expired)');

# through the gateway
my ($st, $b) = req('POST', '/v1/queues', { name => 'gq', fifo => JSON::PP::true, message_ttl => 60,
	on_expire => 'dead_letter', max_depth => 10, overflow => 'reject', ack_commit => 'durable' });
is($st, 201, 'POST /v1/queues with the settings: 201') or diag explain $b;
is($b->{partitions}, 4, 'in 4 partitions');
is(on_shards("$settings WHERE queue_name LIKE 'gq.%'"),
	join("\n", map { "gq.p$_ 00:01:00 dead_letter 10 reject durable" } 0 .. 3), 'every partition has them');
($st, $b) = req('PATCH', '/v1/queues/gq', { max_depth => 20, message_ttl => '2 minutes' });
is($st, 200, 'PATCH /v1/queues/gq: 200') or diag explain $b;
is_deeply($b, { queue_name => 'gq', altered => JSON::PP::true, partitions => 4 }, 'PATCH: 4 partitions');
is(on_shards("$settings WHERE queue_name LIKE 'gq.%'"),
	join("\n", map { "gq.p$_ 00:02:00 dead_letter 20 reject durable" } 0 .. 3), 'every partition altered');
gw_is_error([ req('PATCH', '/v1/queues/gq', { overflow => 'explode' }) ], 422, '22023', 'PATCH: a bad overflow');
gw_is_error([ req('PATCH', '/v1/queues/gq', { max_depth => 'many' }) ], 400, '22P02', 'PATCH: max_depth not a number');
gw_is_error([ req('PATCH', '/v1/queues/gq', '{"max_depth": ') ], 400, '22P02', 'PATCH: not JSON');
gw_is_error([ req('PATCH', '/v1/queues/nope', { max_depth => 1 }) ], 404, '42704', 'PATCH: an unknown queue');
gw_is_error([ req('PATCH', '/v1/queues/gq', { max_depth => 1 }, token => $app_token) ], 403, '42501', 'PATCH: not for app');
gw_is_error([ req('POST', '/v1/queues', { name => 'gq2', overflow => 'explode' }) ], 422, '22023',
	'POST /v1/queues: a bad overflow');
($st, $b) = req('POST', '/v1/queues/gq/messages/batch',
	{ messages => [ { payload => 1, ordering_key => $k[0] }, { payload => 2, ordering_key => $k[1] } ],
	  expires_at => '2000-01-01T00:00:00Z' });
is($st, 201, 'a batch with expires_at: 201') or diag explain $b;
($st, $b) = req('POST', '/v1/queues/gq/messages/batch',
	{ messages => [ { payload => 3, ordering_key => $k[2] } ], expires_at => time() + 3600 });
is($st, 201, 'a batch with expires_at in an hour (a Unix time): 201');
($st, $b) = req('POST', '/v1/queues/gq/receive?max=10');
is(join(',', map { $_->{payload} } @{ $b // [] }), '3', 'only the batch whose deadline has not passed is received');
req('POST', '/v1/queues/gq/ack', { delivery_ids => [ map { $_->{delivery_id} } @$b ] });
gw_is_error([ req('POST', '/v1/queues/gq/messages/batch', { messages => [ { payload => 1 } ], expires_at => 'soon' }) ],
	400, '22007', 'a batch with expires_at not a time');
# priorities: the router's create_queue and alter_queue set the switch on
# every partition's queue; send, send_batch and publish pass a message's
# priority to its partition's queue, where a receive hands out the higher
# first; deliver's own errors come back from the shards
my $prio_of = q{SELECT queue_name || ' ' || priorities FROM deliver.list_queues() WHERE queue_name LIKE };
is(psql($router, q{SELECT deliver_cluster.create_queue('prq', priorities => true)}), 4,
	'create_queue with priorities: 4 partitions');
is(on_shards("$prio_of 'prq.%'"), join("\n", map { "prq.p$_ true" } 0 .. 3), 'every partition has priorities');
my @i0 = @{ $key_of{0} }[ 5 .. 9 ];    # idempotency keys of partition 0
psql($router, "SELECT deliver_cluster.send('prq', '\"s1\"', idempotency_key => '$i0[0]', priority => 1)");
like(psql($router, "SELECT deliver_cluster.send_batch('prq', ARRAY['\"b5\"', '\"b5b\"']::jsonb[],
    idempotency_keys => ARRAY['$i0[1]', '$i0[2]'], priority => 5)"), qr/^\{0:1:\d+,0:1:\d+\}$/,
	'send_batch with priority 5 (partition 0)');
psql($router, q{SELECT deliver_cluster.bind('prio.#', 'prq')});
is(psql($router, "SELECT queue_name FROM deliver_cluster.publish('prio.x', '\"p9\"', idempotency_key => '$i0[3]', priority => 9)"),
	'prq', 'publish with priority 9');
psql($router, "SELECT deliver_cluster.send('prq', '\"s0\"', idempotency_key => '$i0[4]')");
is(psql($router, q{SELECT string_agg(payload #>> '{}', ',') FROM deliver_cluster.receive('prq', 0, 10)}),
	'p9,b5,b5b,s1,s0', 'partition 0 hands them out by priority, equal ones in commit order');
sql_error(q{SELECT deliver_cluster.send('prq', '1', priority => 10)}, '22023', 'send with priority 10');
sql_error(q{SELECT deliver_cluster.send_batch('prq', ARRAY['1']::jsonb[], priority => -1)}, '22023',
	'send_batch with priority -1');
sql_error(q{SELECT deliver_cluster.publish('prio.x', '1', priority => 10)}, '22023', 'publish with priority 10');
psql($router, q{SELECT deliver_cluster.unbind('prio.#', 'prq')});
# a queue as a node shows it: partition 0's settings and groups, and the partitions
is(psql($router, q{SELECT concat_ws(' ', queue_name, guarantee, priorities, fifo, max_attempts, consumer_groups, partitions,
    created_at = (SELECT created_at FROM deliver_cluster.list_queues() WHERE queue_name = 'prq'))
    FROM deliver_cluster.queue_settings('prq')}), 'prq at_least_once t f 5 {default} 4 t',
	'queue_settings: partition 0\'s settings, groups, the partitions');
is(psql($router, q{SELECT count(*) FROM deliver_cluster.queue_settings('nope')}), '0', 'queue_settings of no queue: no row');
sql_error(q{SELECT deliver_cluster.publish('prio.x', '1', priority => 10)}, '22023',
	'publish with priority 10 that matches no queue');
is(psql($router, q{SELECT deliver_cluster.alter_queue('prq', priorities => false)}), 4, 'alter_queue priorities false');
is(on_shards("$prio_of 'prq.%'"), join("\n", map { "prq.p$_ false" } 0 .. 3), 'every partition without priorities');
sql_error(q{SELECT deliver_cluster.send('prq', '1', priority => 3)}, '55000',
	'a priority to a queue without priorities');
sql_error(q{SELECT deliver_cluster.create_queue('pq_fast', guarantee => 'at_most_once', priorities => true)}, '0A000',
	'create_queue: priorities on an at_most_once queue');
is(psql($router, q{SELECT count(*) FROM deliver_cluster.list_queues() WHERE queue_name = 'pq_fast'}), '0',
	'and no queue of that name');
is(psql($router, q{SELECT deliver_cluster.alter_queue('prq', priorities => true)}), 4, 'alter_queue priorities true');
sql_error(q{SET ROLE app; SELECT deliver_cluster.alter_queue('prq', priorities => false)}, '42501',
	'alter_queue priorities: not for app');

# ... and through the gateway
gw_is_error([ req('POST', '/v1/queues/gq/messages', { payload => 1, ordering_key => $k[0], priority => 3 }) ],
	409, '55000', 'a priority to a partition without priorities: the shard refuses it');
gw_is_error([ req('POST', '/v1/queues/gq/messages', { payload => 1, priority => 10 }) ], 422, '22023', 'priority 10');
gw_is_error([ req('POST', '/v1/queues/gq/messages', { payload => 1, priority => '3' }) ], 422, '22023',
	'a priority that is a string');
($st, $b) = req('POST', '/v1/queues', { name => 'gq_prio', priorities => JSON::PP::true });
is($st, 201, 'POST /v1/queues with priorities: 201') or diag explain $b;
($st, $b) = req('GET', '/v1/queues/gq_prio');
is($st, 200, 'GET /v1/queues/gq_prio: 200') or diag explain $b;
is(join(' ', map { $b->{$_} // '-' } qw(queue_name guarantee priorities max_depth partitions)),
	'gq_prio at_least_once 1 - 4', 'its settings as a node answers them, and its partitions');
is_deeply($b->{consumer_groups}, ['default'], 'and its consumer groups');
gw_is_error([ req('GET', '/v1/queues/no_such_q') ], 404, '42704', 'GET /v1/queues of no queue');
is(on_shards("$prio_of 'gq\\_prio.%'"), join("\n", map { "gq_prio.p$_ true" } 0 .. 3),
	'every partition of it has priorities');
gw_is_error([ req('PATCH', '/v1/queues/gq', { priorities => 'yes' }) ], 422, '22023', 'PATCH priorities not a boolean');
($st, $b) = req('PATCH', '/v1/queues/gq', { priorities => JSON::PP::true });
is($st, 200, 'PATCH priorities true: 200') or diag explain $b;
is(on_shards("$prio_of 'gq.%'"), join("\n", map { "gq.p$_ true" } 0 .. 3), 'every partition of gq has priorities');
($st, $b) = req('POST', '/v1/queues/gq/messages', { payload => 'p6', ordering_key => $k[0], priority => 6 });
is($st, 201, 'a send with priority 6') or diag explain $b;
($st, $b) = req('POST', '/v1/queues/gq/messages/batch',
	{ messages => [ { payload => 'p2', ordering_key => $k[1] } ], priority => 2 });
is($st, 201, 'a batch with priority 2') or diag explain $b;
psql($router, q{SELECT deliver_cluster.bind('gprio.#', 'gq')});
($st, $b) = req('POST', '/v1/publish', { routing_key => 'gprio.x', payload => 'p1', ordering_key => $k[2], priority => 1 });
is($st, 201, 'a publish with priority 1') or diag explain $b;
my %stored;    # priority => how many of gq's messages carry it, over both shards
for my $sh (@shard)
{
	for (split /\n/, psql($sh, q{SELECT v || ' ' || coalesce(sum((xpath('/row/c/text()', query_to_xml(format(
          'SELECT count(*) AS c FROM deliver.%I WHERE priority = %s', format('q%s_s%s', q.queue_id, g), v),
          false, true, '')))[1]::text::int), 0)
        FROM deliver.queue q, generate_series(0, q.segments - 1) g, unnest(ARRAY[1, 2, 6]) v
        WHERE q.queue_name LIKE 'gq.%' GROUP BY v}))
	{
		my ($v, $n) = split / /;
		$stored{$v} += $n;
	}
}
is(join(',', map { "$_=$stored{$_}" } sort keys %stored), '1=1,2=1,6=1', 'each stored with its priority on its partition');
gw_is_error([ req('POST', '/v1/queues/gq/messages/batch', { messages => [ { payload => 1 } ], priority => 10 }) ],
	422, '22023', 'a batch with priority 10');
gw_is_error([ req('POST', '/v1/queues/gq/messages/batch', { messages => [ { payload => 1 } ], priority => 1.5 }) ],
	400, '22P02', 'a batch with a priority that is no integer');
gw_is_error([ req('POST', '/v1/publish', { routing_key => 'gprio.x', payload => 1, priority => 10 }) ],
	422, '22023', 'a publish with priority 10');
($st, $b) = req('POST', '/v1/queues/gq/messages/batch',
	{ messages => [ { payload => 'p0', ordering_key => $k[3] } ], priority => 0 });
is($st, 201, 'a batch with priority 0: 201') or diag explain $b;
($st, $b) = req('PATCH', '/v1/queues/gq', { priorities => JSON::PP::false, max_depth => 20 });
is($st, 200, 'PATCH priorities false: 200') or diag explain $b;
is(on_shards("$prio_of 'gq.%'"), join("\n", map { "gq.p$_ false" } 0 .. 3), 'every partition of gq without');
($st, $b) = req('POST', '/v1/queues/gq/receive?max=10');
is(join(',', sort map { $_->{payload} } @{ $b // [] }), 'p0,p1,p2,p6', 'what was sent: the four, nothing refused');
req('POST', '/v1/queues/gq/ack', { delivery_ids => [ map { $_->{delivery_id} } @$b ] });
psql($router, q{SELECT deliver_cluster.unbind('gprio.#', 'gq')});

# ---- 2. flow control ------------------------------------------------------
($st, $b) = req('POST', '/v1/queues/gq/groups/default/pause');
is($st, 200, 'pause: 200') or diag explain $b;
is_deeply($b, { paused => JSON::PP::true, partitions => 4 }, 'pause: paused on 4 partitions');
is(on_shards(q{SELECT queue_name || ' ' || paused FROM deliver.consumer_group g JOIN deliver.queue q USING (queue_id)
    WHERE q.queue_name LIKE 'gq.%'}), join("\n", map { "gq.p$_ true" } 0 .. 3), 'the group is paused on every partition');
(undef, $b) = req('POST', '/v1/queues/gq/groups/default/pause');
is_deeply($b, { paused => JSON::PP::false, partitions => 0 }, 'pause again: paused nowhere new');
req('POST', '/v1/queues/gq/messages', { payload => 10 + $_, ordering_key => $k[$_] }) for 0 .. 3;
($st, $b) = req('POST', '/v1/queues/gq/receive?max=10');
is_deeply($b, [], 'a paused group receives nothing');
($st, $b) = req('POST', '/v1/queues/gq/groups/default/resume');
is_deeply($b, { resumed => JSON::PP::true, partitions => 4 }, 'resume: on 4 partitions');
gw_is_error([ req('POST', '/v1/queues/gq/groups/nogroup/pause') ], 404, '42704', 'pause: an unknown group');
gw_is_error([ req('POST', '/v1/queues/nope/groups/default/pause') ], 404, '42704', 'pause: an unknown queue');
gw_is_error([ req('POST', '/v1/queues/gq/groups/default/pause', undef, token => $app_token) ], 403, '42501',
	'pause: not for app');
is(psql($router, q{SELECT deliver_cluster.pause_consumer_group('sq')}), 4, 'pause_consumer_group (SQL): 4');
is(psql($router, q{SELECT deliver_cluster.resume_consumer_group('sq')}), 4, 'resume_consumer_group (SQL): 4');

($st, $b) = req('PUT', '/v1/queues/gq/groups/default/rate', { per_second => 2.5, burst => 3 });
is($st, 200, 'rate: 200') or diag explain $b;
is_deeply($b, { consumer_group => 'default', rate_per_second => 2.5, rate_burst => 3, partitions => 4 },
	'rate: set on 4 partitions');
is(on_shards(q{SELECT queue_name || ' ' || rate_per_second || ' ' || rate_burst FROM deliver.consumer_group g
    JOIN deliver.queue q USING (queue_id) WHERE q.queue_name LIKE 'gq.%'}),
	join("\n", map { "gq.p$_ 2.5 3" } 0 .. 3), 'each partition has the rate');
gw_is_error([ req('PUT', '/v1/queues/gq/groups/default/rate', { per_second => -1 }) ], 422, '22023', 'rate: negative');
gw_is_error([ req('PUT', '/v1/queues/gq/groups/default/rate', { burst => 3 }) ], 400, '22P02', 'rate: no per_second');
($st, $b) = req('PUT', '/v1/queues/gq/groups/default/rate', { per_second => undef });
is_deeply($b, { consumer_group => 'default', rate_per_second => undef, rate_burst => undef, partitions => 4 },
	'rate null: no limit');
is(psql($router, q{SELECT deliver_cluster.set_consumer_group_rate('sq', 'default', 100)}), 4,
	'set_consumer_group_rate (SQL): 4');
sql_error(q{SELECT deliver_cluster.set_consumer_group_rate('sq', 'default', NULL, 5)}, '22023',
	'set_consumer_group_rate: a burst without a rate');

($st, $b) = req('PUT', '/v1/queues/gq/fifo-key-limit', { max_in_flight_per_key => 3 });
is_deeply($b, { queue_name => 'gq', fifo_key_limit => 3, partitions => 4 }, 'fifo-key-limit: on 4 partitions')
  or diag explain $b;
is(on_shards(q{SELECT queue_name || ' ' || fifo_key_limit FROM deliver.queue WHERE queue_name LIKE 'gq.%'}),
	join("\n", map { "gq.p$_ 3" } 0 .. 3), 'each partition has it');
gw_is_error([ req('PUT', '/v1/queues/gq/fifo-key-limit', { max_in_flight_per_key => 0 }) ], 422, '22023',
	'fifo-key-limit: 0');
sql_error(q{SELECT deliver_cluster.set_fifo_key_limit('sq', 2)}, '55000', 'set_fifo_key_limit: not a FIFO queue');
sql_error(q{SELECT deliver_cluster.set_fifo_key_limit('nope', 2)}, '42704', 'set_fifo_key_limit: an unknown queue');
sql_error(q{SET ROLE app; SELECT deliver_cluster.set_fifo_key_limit('gq', 2)}, '42501', 'set_fifo_key_limit: not for app');

# ---- 3. inspection --------------------------------------------------------
# gq holds 10 .. 13, one in each partition (sent in that order)
($st, $b) = req('GET', '/v1/queues/gq/peek?max=10');
is($st, 200, 'peek: 200') or diag explain $b;
is(join(',', map { $_->{payload} } @$b), '10,11,12,13', 'peek: every partition, oldest first');
is(join(',', map { $_->{partition} } @$b), '0,1,2,3', 'peek: their partitions');
like($b->[0]{message_id}, qr/^0:1:\d+$/, 'peek: global ids');
($st, $b) = req('GET', '/v1/queues/gq/peek?max=2');
is(join(',', map { $_->{payload} } @$b), '10,11', 'peek max=2: the two oldest');
gw_is_error([ req('GET', '/v1/queues/gq/peek?max=x') ], 400, undef, 'peek: max not a number');
gw_is_error([ req('GET', '/v1/queues/nope/peek') ], 404, '42704', 'peek: an unknown queue');
is(psql($router, q{SELECT string_agg(payload::text, ',') FROM deliver_cluster.peek('gq', 3)}), '10,11,12',
	'peek (SQL)');

(undef, $b) = req('GET', '/v1/queues/gq/peek?max=10');
my $victim = $b->[1]{message_id};
($st, $b) = req('DELETE', "/v1/queues/gq/messages/$victim");
is($st, 200, 'delete a message by its id: 200') or diag explain $b;
is_deeply($b, { deleted => JSON::PP::true }, 'deleted');
(undef, $b) = req('DELETE', "/v1/queues/gq/messages/$victim");
is_deeply($b, { deleted => JSON::PP::false }, 'deleted again: false');
(undef, $b) = req('GET', '/v1/queues/gq/peek?max=10');
is(join(',', map { $_->{payload} } @$b), '10,12,13', 'the deleted message is gone');
gw_is_error([ req('DELETE', '/v1/queues/gq/messages/5') ], 400, '42602', 'delete: a plain integer id');
gw_is_error([ req('DELETE', '/v1/queues/gq/messages/0:99:5') ], 409, '55000', 'delete: an id of no placement');
gw_is_error([ req('DELETE', '/v1/queues/gq/messages/0:1:99999999999999999999') ], 400, '42602', 'delete: a local id over a bigint');
gw_is_error([ req('DELETE', '/v1/queues/gq/messages/0:1:-5') ], 400, '42602', 'delete: a negative id');
gw_is_error([ req('DELETE', '/v1/queues/gq/messages/99999:1:5') ], 409, '55000', 'delete: an id of no partition');
gw_is_error([ req('DELETE', '/v1/queues/nope/messages/0:1:5') ], 404, '42704', 'delete: an unknown queue');
gw_is_error([ req('GET', '/v1/queues/gq/peek?group=' . ('g' x 100)) ], 400, undef, 'peek: a group name too long');
gw_is_error([ req('GET', '/v1/queues/gq/peek?group=nogroup') ], 404, '42704', 'peek: an unknown group');
gw_is_error([ req('DELETE', "/v1/queues/gq/messages/$victim", undef, token => $app_token) ], 403, '42501',
	'delete: not for app');
is(psql($router, q{SELECT deliver_cluster.delete_message('sq', '1:1:999999')}), 'f', 'delete_message (SQL): not there');
sql_error(q{SELECT deliver_cluster.delete_message('sq', 'x')}, '22P02', 'delete_message: a bad id');
sql_error(q{SELECT deliver_cluster.delete_message('nope', '1:1:1')}, '42704', 'delete_message: an unknown queue');

# reset: received and acked, then delivered again from earliest
($st, $b) = req('POST', '/v1/queues/gq/receive?max=10');
is(scalar(@$b), 3, 'the 3 messages received');
req('POST', '/v1/queues/gq/ack', { delivery_ids => [ map { $_->{delivery_id} } @$b ] });
(undef, $b) = req('GET', '/v1/queues/gq/peek');
is_deeply($b, [], 'and acked');
($st, $b) = req('POST', '/v1/queues/gq/groups/default/reset', { to => 'earliest' });
is($st, 200, 'reset to earliest: 200') or diag explain $b;
is_deeply($b, { consumer_group => 'default', reset => JSON::PP::true, partitions => 4 }, 'reset: 4 partitions');
(undef, $b) = req('GET', '/v1/queues/gq/peek?max=20');
is(join(',', sort grep { $_ >= 3 } map { $_->{payload} } @$b), '10,12,13,3',
	'every stored message is there again (the expired ones aside)');
($st, $b) = req('POST', '/v1/queues/gq/groups/default/reset', { to => 'latest' });
(undef, $b) = req('GET', '/v1/queues/gq/peek');
is_deeply($b, [], 'reset to latest: nothing left');
gw_is_error([ req('POST', '/v1/queues/gq/groups/default/reset', { to => '0:1:1' }) ], 422, '22023',
	'reset to a message id: refused');
gw_is_error([ req('POST', '/v1/queues/gq/groups/default/reset', { to => 'someday' }) ], 422, '22023', 'reset: not a position');
gw_is_error([ req('POST', '/v1/queues/gq/groups/nogroup/reset', { to => 'latest' }) ], 404, '42704', 'reset: unknown group');
gw_is_error([ req('POST', '/v1/queues/gq/groups/default/reset', { to => 'latest' }, token => $app_token) ], 403, '42501',
	'reset: not for app');
is(psql($router, q{SELECT deliver_cluster.reset_consumer_group('sq', 'default', 'latest')}), 4,
	'reset_consumer_group (SQL): 4');
sql_error(q{SELECT deliver_cluster.reset_consumer_group('sq', 'default', '2000-01-01')}, '22023',
	'reset_consumer_group to a time before what a partition stores');
sql_error(q{SELECT deliver_cluster.reset_consumer_group('sq', 'default', '3')}, '22023',
	'reset_consumer_group to a message id');

# ---- a database owner's functions in schema public -----------------------
# deliverd's statements name Postgres' functions without a schema and run
# as the caller's role; its connections pin search_path, so a
# json_build_object(text, boolean) in schema public, a better match for an
# ack's answer than pg_catalog's, is never the one called
psql($_, q{CREATE FUNCTION public.json_build_object(text, boolean) RETURNS json LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the json_build_object of schema public ran as %', current_user; END $$})
  for ($router, @shard);
($st, $b) = req('POST', '/v1/queues', { name => 'pathq' });
is($st, 201, 'a queue made with a json_build_object in schema public') or diag explain $b;
($st, $b) = req('POST', '/v1/queues/pathq/messages', { payload => 1, ordering_key => 'k' });
is($st, 201, 'a message sent') or diag explain $b;
(undef, $b) = req('POST', '/v1/queues/pathq/receive?max=1');
my $pd = ref $b eq 'ARRAY' && @$b ? $b->[0]{delivery_id} : 'none';
($st, $b) = req('POST', "/v1/queues/pathq/deliveries/$pd/ack");
is($st, 200, 'its ack: 200 (pg_catalog\'s json_build_object made the answer)') or diag explain $b;
is_deeply($b, { acked => JSON::PP::true }, 'acked');
psql($_, q{DROP FUNCTION public.json_build_object(text, boolean)}) for ($router, @shard);

# a partition moved keeps its queues' settings (the new place is created
# with them) and flow control (the FIFO key limit, a group's pause and rate)
psql($router, q{SELECT deliver_cluster.purge_queue(q) FROM unnest(ARRAY['sq', 'xq', 'gq', 'prq']) q});
req('POST', '/v1/queues/gq/groups/default/pause');
req('PUT', '/v1/queues/sq/groups/default/rate', { per_second => 7, burst => 2 });
psql($router, q{CALL deliver_cluster.move_partition(0, 'shard1', '60 seconds')});
is(psql($router, q{SELECT shard FROM deliver_cluster.partition_map() WHERE partition = 0 AND state = 'active'}),
	'shard1', 'partition 0 moved to shard1');
is(join("\n", sort split /\n/, psql($shard[1], "$settings WHERE queue_name IN ('sq.p0', 'gq.p0')")),
	"gq.p0 00:02:00 dead_letter 20 reject durable\nsq.p0 - dead_letter 3 reject async",
	'its new place has the settings of each queue');
is(psql($shard[1], q{SELECT priorities FROM deliver.list_queues() WHERE queue_name = 'prq.p0'}), 't',
	'and a queue with priorities has them there');
is(psql($shard[1], q{SELECT string_agg(q.queue_name || ' ' || q.fifo_key_limit || ' ' || g.paused || ' '
    || coalesce(g.rate_per_second || '/' || g.rate_burst, '-'), ', ' ORDER BY q.queue_name)
    FROM deliver.queue q JOIN deliver.consumer_group g USING (queue_id) WHERE q.queue_name IN ('sq.p0', 'gq.p0')}),
	'gq.p0 3 true -, sq.p0 1 false 7/2', 'and their flow control: the FIFO key limit, the pause, the rate');

# ---- a move keeps archive_retention; dead letters deleted and redriven to
# another queue over the partitions -----------------------------------------
is(psql($router, q{SELECT deliver_cluster.alter_queue('sq', archive_retention => '2 days')}), 4,
	'archive_retention on every partition');
# dead letters in every partition of dq (two in partition 1), made before
# partition 1 moves: those two stay at its old place
psql($router, q{SELECT deliver_cluster.create_queue(q) FROM unnest(ARRAY['dq', 'dq2']) q});
psql($router, "SELECT deliver_cluster.send('dq', '$_', ordering_key => '$k[$_]')") for 0 .. 3;
psql($router, "SELECT deliver_cluster.send('dq', '4', ordering_key => '$k[1]')");
# (a nack to the dead letters at once, as its transaction commits)
sub nack_dead
{
	my ($q, @parts) = @_;
	for my $p (@parts)
	{
		req('POST', "/v1/queues/$q/deliveries/$_/nack", { dead_letter => JSON::PP::true })
		  for split /\n/, psql($router, "SELECT delivery_id FROM deliver_cluster.receive('$q', $p, 10)");
	}
	return;
}
nack_dead('dq', 0 .. 3);
is(psql($router, q{SELECT string_agg(payload::text || '@' || partition, ',' ORDER BY payload::text)
    FROM deliver_cluster.dead_letters('dq')}), '0@0,1@1,2@2,3@3,4@1', 'five dead letters in the 4 partitions');
psql($router, q{CALL deliver_cluster.move_partition(1, 'shard0', '60 seconds')});
is(psql($router, q{SELECT shard FROM deliver_cluster.partition_map() WHERE partition = 1 AND state = 'active'}),
	'shard0', 'partition 1 moved to shard0');
is(psql($shard[0], q{SELECT archive_retention FROM deliver.list_queues() WHERE queue_name = 'sq.p1'}), '2 days',
	'its new place has the archive_retention of the queue');
my %dl = map { split /=/ } split /\n/,
	psql($router, q{SELECT payload::text || '=' || message_id FROM deliver_cluster.dead_letters('dq')});
like($dl{1}, qr/^1:1:\d+$/, 'the dead letters of partition 1 keep their old placement');

# delete
($st, $b) = req('DELETE', '/v1/queues/dq/dead-letters', { message_ids => [ $dl{0} ] });
is($st, 200, 'DELETE dead-letters: 200') or diag explain $b;
is_deeply($b, { deleted => 1 }, 'one deleted');
(undef, $b) = req('DELETE', '/v1/queues/dq/dead-letters', { message_ids => [ $dl{0} ] });
is_deeply($b, { deleted => 0 }, 'deleted again: 0');
is(psql($router, "SELECT deliver_cluster.delete_dead_letters('dq', ARRAY['$dl{3}', '3:1:999999'], 'default')"), 1,
	'delete_dead_letters (SQL): one of two');
gw_is_error([ req('DELETE', '/v1/queues/dq/dead-letters', {}) ], 422, '22004', 'DELETE dead-letters without ids');
gw_is_error([ req('DELETE', '/v1/queues/dq/dead-letters', { message_ids => ['7'] }) ], 400, '22P02',
	'DELETE dead-letters: a plain integer id');
gw_is_error([ req('DELETE', '/v1/queues/dq/dead-letters', { message_ids => ['0:99:1'] }) ], 409, '55000',
	'DELETE dead-letters: an id of no placement');
gw_is_error([ req('DELETE', '/v1/queues/nope/dead-letters', { message_ids => ['0:1:1'] }) ], 404, '42704',
	'DELETE dead-letters: an unknown queue');
gw_is_error([ req('DELETE', '/v1/queues/dq/dead-letters', { message_ids => [ $dl{2} ] }, token => $app_token) ], 403,
	'42501', 'DELETE dead-letters: not for app');
gw_is_error([ req('DELETE', '/v1/queues/dq/dead-letters', { message_ids => [ $dl{2} ], consumer_group => 'nogroup' }) ],
	404, '42704', 'DELETE dead-letters: an unknown group');
sql_error(q{SELECT deliver_cluster.delete_dead_letters('dq', NULL)}, '22004', 'delete_dead_letters: ids NULL');

# redrive to another queue: each to the same partition of dq2 (its key's)
gw_is_error([ req('POST', '/v1/queues/dq/redrive', { message_ids => [ $dl{1} ], to_queue => 'dq2' }) ], 409, '55000',
	'redrive of a dead letter at the place its partition moved away from: refused');
gw_is_error([ req('POST', '/v1/queues/dq/redrive', { to_queue => 'nope' }) ], 404, '42704', 'redrive to an unknown queue');
gw_is_error([ req('POST', '/v1/queues/dq/redrive', { to_queue => 'dq2' }, token => $app_token) ], 403, '42501',
	'redrive to another queue: not for app');
is(psql($router, "SELECT deliver_cluster.redrive('dq', ARRAY['$dl{2}'], to_queue => 'dq2')"), 1,
	'redrive by id to dq2 (SQL): 1');
($st, $b) = req('POST', '/v1/queues/dq/redrive', { to_queue => 'dq2' });
is($st, 200, 'redrive all to dq2: 200') or diag explain $b;
is_deeply($b, { redriven => 0 }, 'nothing left where partitions take new messages (1 and 4 are at the old place)');
is(psql($router, q{SELECT string_agg(payload::text || '@' || partition || ' ' || ordering_key, ',' ORDER BY payload::text)
    FROM deliver_cluster.peek('dq2', 10)}), "2\@2 $k[2]", 'dq2 has it in the partition of its key, with its key');
is(psql($router, q{SELECT string_agg(payload::text, ',' ORDER BY payload::text) FROM deliver_cluster.dead_letters('dq')}),
	'1,4', 'the dead letters left: those at the old place');
# new dead letters where partitions take messages, then all of them to dq2
psql($router, "SELECT deliver_cluster.send('dq', '5', ordering_key => '$k[1]')");
psql($router, "SELECT deliver_cluster.send('dq', '6', ordering_key => '$k[3]')");
nack_dead('dq', 1, 3);
($st, $b) = req('POST', '/v1/queues/dq/redrive', { to_queue => 'dq2' });
is_deeply($b, { redriven => 2 }, 'redrive all to dq2: the two new ones') or diag explain $b;
is(psql($router, q{SELECT string_agg(payload::text || '@' || partition, ',' ORDER BY payload::text)
    FROM deliver_cluster.peek('dq2', 10)}), '2@2,5@1,6@3', 'dq2 has them, each in its partition');
like(psql($router, q{SELECT string_agg(message_id, ',') FROM deliver_cluster.peek('dq2', 10) WHERE partition = 1}),
	qr/^1:2:\d+$/, 'partition 1 of dq2 at its new place');
is(psql($router, "SELECT deliver_cluster.delete_dead_letters('dq', ARRAY['$dl{1}', '$dl{4}'])"), 2,
	'the dead letters at the old place can be deleted');
is(psql($router, q{SELECT count(*) FROM deliver_cluster.dead_letters('dq')}), 0, 'no dead letter left');

# replay of the archive into a group over the partitions: positions are per
# partition ("after", the global ids the last call answered)
psql($router, q{SELECT deliver_cluster.create_queue('rq'); SELECT deliver_cluster.create_consumer_group('rq', 'audit')});
sql_error(q{SELECT deliver_cluster.replay_archive('rq', 'audit')}, '55000', 'replay_archive: the queue keeps no archive');
psql($router, q{SELECT deliver_cluster.alter_queue('rq', archive_retention => '1 day')});
# the archive filled as maintenance fills it when it truncates a segment:
# two messages of partition 0 (on shard1 since it moved), one of partition 2
for my $s (@shard)
{
	psql($s, q{DO $$ DECLARE t record; BEGIN
        FOR t IN SELECT queue_name, format('q%s_archive', queue_id) AS tab FROM deliver.queue
                  WHERE queue_name IN ('rq.p0', 'rq.p2') LOOP
            IF t.queue_name = 'rq.p0' THEN
                EXECUTE format('INSERT INTO deliver.%I (message_id, enqueued_at, ordering_key, payload) VALUES '
                               '(7, now() - interval ''1 hour'', ''k'', ''{"n": 7}''), (8, now(), NULL, ''{"n": 8}'')', t.tab);
            ELSE
                EXECUTE format('INSERT INTO deliver.%I (message_id, enqueued_at, ordering_key, payload) VALUES '
                               '(5, now(), NULL, ''{"n": 5}'')', t.tab);
            END IF;
        END LOOP;
    END $$});
}
($st, $b) = req('POST', '/v1/queues/rq/groups/audit/replay', { max_messages => 1 });
is($st, 200, 'replay: 200') or diag explain $b;
is_deeply($b, { replayed => 2, after => [ '0:2:7', '2:1:5' ] }, 'one from each partition with an archive, their positions');
($st, $b) = req('POST', '/v1/queues/rq/groups/audit/replay', { max_messages => 1, after => $b->{after} });
is_deeply($b, { replayed => 1, after => [ '0:2:8', '2:1:5' ] }, 'going on after the positions');
($st, $b) = req('POST', '/v1/queues/rq/groups/audit/replay', { after => $b->{after}, since => time() - 7200 });
is_deeply($b, { replayed => 0, after => [ '0:2:8', '2:1:5' ] }, 'then nothing more (since a Unix time)');
is(join(',', map { psql($router, "SELECT string_agg(payload->>'n', ',') FROM deliver_cluster.receive('rq', $_, 10,
    consumer_group => 'audit')") } 0, 2), '7,8,5', 'the group receives the replayed messages from their partitions');
is(psql($router, q{SELECT count(*) FROM deliver_cluster.peek('rq', 10)}), 0, 'the other group does not');
gw_is_error([ req('POST', '/v1/queues/rq/groups/audit/replay', { after_id => 7 }) ], 422, '22023',
	'replay with after_id: refused');
gw_is_error([ req('POST', '/v1/queues/rq/groups/audit/replay', { after => ['7'] }) ], 400, '22P02',
	'replay after a plain integer');
gw_is_error([ req('POST', '/v1/queues/rq/groups/audit/replay', { after => '0:2:7' }) ], 422, '22023',
	'replay: after not an array');
gw_is_error([ req('POST', '/v1/queues/rq/groups/audit/replay', { since => '2000-01-01' }) ], 422, '22023',
	'replay since before what the archive keeps');
gw_is_error([ req('POST', '/v1/queues/rq/groups/nobody/replay', {}) ], 404, '42704', 'replay to an unknown group');
gw_is_error([ req('POST', '/v1/queues/nope/groups/audit/replay', {}) ], 404, '42704', 'replay of an unknown queue');
gw_is_error([ req('POST', '/v1/queues/rq/groups/audit/replay', {}, token => $app_token) ], 403, '42501',
	'replay: not for app');
is(psql($router, q{SELECT replayed || ' ' || positions::text FROM deliver_cluster.replay_archive('rq', 'audit',
    after => ARRAY['0:2:7'], max_messages => 10)}), '2 {0:2:8,2:1:5}', 'replay_archive (SQL) after a position');
sql_error(q{SELECT deliver_cluster.replay_archive('rq', NULL)}, '22004', 'replay_archive: the group NULL');
sql_error(q{SELECT deliver_cluster.replay_archive('rq', 'audit', max_messages => 0)}, '22023',
	'replay_archive: max_messages 0');

# topic routing: the bindings in the router, a publish's copies all in one
# partition (so on one shard, one transaction there)
psql($router, q{SELECT deliver_cluster.create_queue(q) FROM unnest(ARRAY['tq1', 'tq2']) q});
psql($router, q{SELECT deliver_cluster.create_queue('tzq', guarantee => 'exactly_once')});
($st, $b) = req('POST', '/v1/bindings', { pattern => 'orders.*', queue => 'tq1' });
is($st, 200, 'POST /v1/bindings: 200') or diag explain $b;
is_deeply($b, { pattern => 'orders.*', queue => 'tq1', created => JSON::PP::true }, 'bound');
(undef, $b) = req('POST', '/v1/bindings', { pattern => 'orders.*', queue => 'tq1' });
is($b->{created}, JSON::PP::false, 'bound again: not new');
is(psql($router, q{SELECT deliver_cluster.bind('orders.#', 'tq2')::text || deliver_cluster.bind('#.eu', 'tq1')::text
    || deliver_cluster.bind('strict.#', 'tq1')::text || deliver_cluster.bind('strict.#', 'tzq')::text}),
	'truetruetruetrue', 'bind (SQL)');
($st, $b) = req('GET', '/v1/routing?key=orders.eu');
is_deeply([ map { "$_->{queue} $_->{pattern}" } @{ $b // [] } ], [ 'tq1 #.eu', 'tq1 orders.*', 'tq2 orders.#' ],
	'GET /v1/routing: every matching binding');
is(psql($router, q{SELECT string_agg(queue_name || ' ' || pattern, ', ') FROM deliver_cluster.test_routing('orders')}),
	'tq2 orders.#', 'test_routing: "#" matches no word, "*" needs one');
is(psql($router, q{SELECT string_agg(queue_name, ',') FROM deliver_cluster.test_routing('a.b.eu')}), 'tq1',
	'test_routing: "#" matches several words');
is(psql($router, q{SELECT count(*) FROM deliver_cluster.test_routing('')}), 0, 'test_routing: the empty key');
($st, $b) = req('GET', '/v1/bindings?queue=tq1');
is_deeply([ map { $_->{pattern} } @{ $b // [] } ], [ '#.eu', 'orders.*', 'strict.#' ], 'GET /v1/bindings?queue=tq1');
($st, $b) = req('POST', '/v1/publish', { routing_key => 'orders.eu', payload => { n => 1 }, ordering_key => $k[2] });
is($st, 201, 'publish: 201') or diag explain $b;
is_deeply([ map { $_->{queue} } @{ $b // [] } ], [ 'tq1', 'tq2' ], 'a copy to each matched queue, once');
like(join(' ', map { $_->{message_id} } @{ $b // [] }), qr/^2:1:\d+ 2:1:\d+$/, 'both in the partition of the key');
is(psql($router, q{SELECT string_agg(q || ' ' || p.partition || ' ' || p.payload::text, ', ' ORDER BY q)
    FROM unnest(ARRAY['tq1', 'tq2']) q, deliver_cluster.peek(q, 10) p}), 'tq1 2 {"n": 1}, tq2 2 {"n": 1}',
	'each queue has it');
(undef, $b) = req('POST', '/v1/publish', { routing_key => 'orders.eu', payload => 2 });
my %pp = map { split / / } map { "$_->{queue} $_->{message_id}" } @{ $b // [] };
is(join(',', map { (split /:/, $pp{$_})[0] } 'tq1', 'tq2') =~ /^(\d+),\1$/ ? 'one' : 'two', 'one',
	'a publish without a key: one partition for every copy');
($st, $b) = req('POST', '/v1/publish', { routing_key => 'nobody.listens', payload => 1 });
is_deeply([ $st, $b ], [ 201, [] ], 'publish matching nothing: no copies');
gw_is_error([ req('POST', '/v1/publish', { routing_key => 'nobody.listens', payload => 1, mandatory => JSON::PP::true }) ],
	404, '42704', 'publish mandatory matching nothing');
gw_is_error([ req('POST', '/v1/publish', { routing_key => 'strict.x', payload => 1 }) ], 422, '22004',
	'publish to tq1 and an exactly-once queue without an idempotency key');
is(psql($router, q{SELECT count(*) FROM deliver_cluster.peek('tq1', 10)}), 2,
	'nothing sent to tq1 either (its copy was sent first, in the same transaction)');
my $first = psql($router, q{SELECT string_agg(queue_name || '=' || message_id, ',') FROM deliver_cluster.publish('strict.x',
    '3', idempotency_key => 'once')});
like($first, qr/^tq1=(\d+:\d+):\d+,tzq=\1:\d+$/, 'publish (SQL) with an idempotency key');
is(psql($router, q{SELECT string_agg(queue_name || '=' || message_id, ',') FROM deliver_cluster.publish('strict.x',
    '3', idempotency_key => 'once')}), $first, 'published again with the key: the first ids, nothing new');
gw_is_error([ req('POST', '/v1/publish', { routing_key => 'a..b', payload => 1 }) ], 422, '22023', 'publish: an empty word');
gw_is_error([ req('POST', '/v1/publish', { routing_key => 'a.*', payload => 1 }) ], 422, '22023',
	'publish: a wildcard in a routing key');
gw_is_error([ req('POST', '/v1/bindings', { pattern => 'a.b*', queue => 'tq1' }) ], 422, '22023',
	'bind: a wildcard inside a word');
gw_is_error([ req('POST', '/v1/bindings', { pattern => '', queue => 'tq1' }) ], 422, '22023', 'bind: the empty pattern');
gw_is_error([ req('POST', '/v1/bindings', { pattern => 'x' x 256, queue => 'tq1' }) ], 422, '22023', 'bind: over 255 bytes');
gw_is_error([ req('POST', '/v1/bindings', { pattern => 'a', queue => 'nope' }) ], 404, '42704', 'bind: an unknown queue');
gw_is_error([ req('POST', '/v1/bindings', { queue => 'tq1' }) ], 422, '22004', 'bind: no pattern');
gw_is_error([ req('POST', '/v1/bindings', { pattern => 'a', queue => 'tq1' }, token => $app_token) ], 403, '42501',
	'bind: not for app');
gw_is_error([ req('POST', '/v1/publish', { routing_key => 'orders.eu', payload => 1 }, token => $app_token) ], 403, '42501',
	'publish: not for app');
gw_is_error([ req('GET', '/v1/routing') ], 400, undef, 'GET /v1/routing without a key');
gw_is_error([ req('GET', '/v1/routing?key=a.%23') ], 422, '22023', 'GET /v1/routing: a wildcard in the key');
($st, $b) = req('DELETE', '/v1/bindings', { pattern => 'orders.*', queue => 'tq1' });
is_deeply($b, { pattern => 'orders.*', queue => 'tq1', removed => JSON::PP::true }, 'DELETE /v1/bindings: removed')
  or diag explain [ $st, $b ];
is(psql($router, q{SELECT deliver_cluster.unbind('orders.*', 'tq1')}), 'f', 'unbind (SQL) again: false');
psql($router, q{SELECT deliver_cluster.drop_queue('tq2')});
is(psql($router, q{SELECT string_agg(queue_name || ' ' || pattern, ', ') FROM deliver_cluster.list_bindings()}),
	'tq1 #.eu, tq1 strict.#, tzq strict.#', 'drop_queue removes its bindings');

# ---- the console's routes: GET /v1/metrics, /v1/workers, /v1/alerts, /v1/push-subscriptions ----
# cq: 1 message in partition 0 (k[0]), 2 in partition 1 (k[1]), one of them leased
psql($router, q{SELECT deliver_cluster.create_queue('cq')});
psql($router, "SELECT deliver_cluster.send('cq', '1', ordering_key => '$_')") for ($k[0], $k[1], $k[1]);
is(psql($router, q{SELECT count(*) FROM deliver_cluster.receive('cq', 1, 1)}), 1, 'cq: one message leased');
my $merged = q{SELECT string_agg(concat_ws(' ', queue_name, consumer_group, d, i, dl, s, a, n), ', '
    ORDER BY queue_name, consumer_group) FROM (SELECT q.queue_name, m.consumer_group, sum(m.depth) d,
    sum(m.in_flight) i, sum(m.dead_letters) dl, sum(m.sent_total) s, sum(m.acked_total) a,
    count(DISTINCT m.partition) n FROM deliver_cluster.list_queues() q, deliver_cluster.metrics(q.queue_name) m
    WHERE q.queue_name = 'cq' GROUP BY 1, 2) x};
my $expect = psql($router, $merged);
my $groups = join(', ', sort split /\n/, psql($router, q{SELECT DISTINCT q.queue_name || ' ' || m.consumer_group
    FROM deliver_cluster.list_queues() q, deliver_cluster.metrics(q.queue_name) m}));
($st, $b) = req('GET', '/v1/metrics');
is($st, 200, 'GET /v1/metrics: 200') or diag explain $b;
is(join(', ', sort map { "$_->{queue_name} $_->{consumer_group}" } @{ $b // [] }), $groups,
	'every queue and consumer group of the cluster, once');
is(join(', ', map { join(' ', @$_{qw(queue_name consumer_group depth in_flight dead_letters sent_total acked_total partitions)}) }
		grep { $_->{queue_name} eq 'cq' } @{ $b // [] }), $expect,
	'cq merged over its partitions as deliver_cluster.metrics has them');
my ($cm) = grep { $_->{queue_name} eq 'cq' && $_->{consumer_group} eq 'default' } @{ $b // [] };
is(join(' ', map { $cm->{$_} // '-' } qw(sent_total in_flight partitions)), '3 1 4',
	'cq: 3 sent, 1 in flight, over 4 partitions');
is(join(' ', sort keys %{ $cm // {} }),
	'acked_total consumer_group dead_letters dead_total delayed depth in_flight oldest_age oldest_age_seconds '
	  . 'partitions queue_name sent_total worker_errors worker_lag worker_lag_seconds worker_last_run',
	"a single node's fields, and partitions");
ok(defined $cm->{oldest_age_seconds} && $cm->{oldest_age_seconds} =~ /^[0-9.e+-]+$/ && !ref $cm->{oldest_age_seconds},
	'oldest_age_seconds is a number');
is(psql($router, q{SELECT count(*) FROM deliver_cluster.all_metrics() WHERE queue_name = 'cq'}), 1,
	'all_metrics (SQL): one row for cq');
gw_is_error([ req('GET', '/v1/metrics', undef, token => $app_token) ], 403, '42501', 'GET /v1/metrics: not for app');
sql_error(q{SET ROLE app; SELECT * FROM deliver_cluster.all_metrics()}, '42501', 'all_metrics: not for app');

# workers: every shard's primary's, with the shard's name
my $names = psql($router, q{SELECT string_agg(name, ',' ORDER BY name) FROM deliver_cluster.shard});
my $nworkers = 0;
$nworkers += psql($_, q{SELECT count(*) FROM deliver.worker_status()}) for @shard;
($st, $b) = req('GET', '/v1/workers');
is($st, 200, 'GET /v1/workers: 200') or diag explain $b;
is(scalar(@{ $b // [] }), $nworkers, "one row per worker of the shards ($nworkers)");
ok($nworkers >= 2, 'each shard has its worker (deliver.database)');
is(join(',', sort keys %{ { map { ($_->{shard} // '?') => 1 } @{ $b // [] } } }), $names, 'rows of every shard, named');
ok(!grep({ !defined $_->{database} || !exists $_->{runs} } @{ $b // [] }), "each with worker_status' fields");
is(psql($router, q{SELECT string_agg(DISTINCT shard, ',' ORDER BY shard) FROM deliver_cluster.worker_status()}), $names,
	'worker_status (SQL): every shard');
gw_is_error([ req('GET', '/v1/workers', undef, token => $app_token) ], 403, '42501', 'GET /v1/workers: not for app');
sql_error(q{SET ROLE app; SELECT * FROM deliver_cluster.worker_status()}, '42501', 'worker_status: not for app');

# alerts and push subscriptions: set on a shard, on one partition's queue
my $p0shard = psql($router, q{SELECT shard FROM deliver_cluster.partition_map() WHERE partition = 0 AND state = 'active'});
my ($p0conn) = grep { psql($_, q{SELECT count(*) FROM deliver_shard.partition WHERE queue_name = 'cq' AND partition = 0}) } @shard;
psql($p0conn, q{SELECT deliver.set_alert('cq.p0', 'depth', 5)});
($st, $b) = req('GET', '/v1/alerts');
is($st, 200, 'GET /v1/alerts: 200') or diag explain $b;
is_deeply([ map { [ @$_{qw(queue_name partition shard metric threshold firing)} ] } @{ $b // [] } ],
	[ [ 'cq', 0, $p0shard, 'depth', 5, JSON::PP::false ] ], "the alert of cq's partition 0, with its shard")
  or diag explain $b;
is(psql($router, q{SELECT string_agg(concat_ws(' ', queue_name, partition, shard, metric), ',') FROM deliver_cluster.list_alerts()}),
	"cq 0 $p0shard depth", 'list_alerts (SQL)');
gw_is_error([ req('GET', '/v1/alerts', undef, token => $app_token) ], 403, '42501', 'GET /v1/alerts: not for app');
psql($p0conn, q{SELECT deliver.create_push_subscription('cq.p0', 'cq_push')});
($st, $b) = req('GET', '/v1/push-subscriptions');
is($st, 200, 'GET /v1/push-subscriptions: 200') or diag explain $b;
is_deeply([ map { [ @$_{qw(subscription_name shard queue_name partition consumer_group active)} ] } @{ $b // [] } ],
	[ [ 'cq_push', $p0shard, 'cq', 0, undef, JSON::PP::false ] ], "cq's partition 0's subscription, with its shard")
  or diag explain $b;
ok(defined $b->[0]{lag_bytes} && exists $b->[0]{retained_wal_bytes}, 'with its lag on the shard') if @{ $b // [] };
is(psql($router, q{SELECT string_agg(concat_ws(' ', subscription_name, shard, queue_name, partition), ',')
    FROM deliver_cluster.list_push_subscriptions()}), "cq_push $p0shard cq 0", 'list_push_subscriptions (SQL)');
gw_is_error([ req('GET', '/v1/push-subscriptions', undef, token => $app_token) ], 403, '42501',
	'GET /v1/push-subscriptions: not for app');
psql($p0conn, q{SELECT deliver.drop_push_subscription('cq_push')});
is(psql($router, q{SELECT count(*) FROM deliver_cluster.list_push_subscriptions()}), 0, 'dropped: none');

# ---- 5. the shards check the caller's rights --------------------------------
# app gets everything on the router (every function, the map, the PL/Proxy
# server), the widest grant there: what it may do is still what the
# shards' deliver lets it do on each queue, since the router's calls run
# there as the caller's role.  Each refusal is matched by its message: the
# shard's (a REMOTE ERROR) or the router's check of the role named.
psql($router, q{GRANT USAGE ON SCHEMA deliver_cluster TO app;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA deliver_cluster TO app;
    GRANT SELECT ON ALL TABLES IN SCHEMA deliver_cluster TO app;
    GRANT USAGE ON FOREIGN SERVER deliver TO app});
psql($router, q{SELECT deliver_cluster.create_queue('pq'); SELECT deliver_cluster.create_queue('pq2')});
psql($router, qq{SELECT deliver_cluster.send('pq', '"secret"', ordering_key => '$_')}) for @k[0, 1];
sub as_app
{
	my ($sql, $re, $name) = @_;
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-d', $router,
			'-c', "SET ROLE app; $sql" ], '>', \$o, '2>', \$e);
	chomp $o;
	return $o if !defined $re;
	like($e, $re, $name);
}
my $shard_denies = qr/ERROR:  42501: .*REMOTE ERROR: permission denied to [a-z ]+ queue "pq\.p\d"/;
my $shard_denies_fn = sub { qr/ERROR:  42501: .*REMOTE ERROR: permission denied for function $_[0]\b/ };
my $router_refuses = qr/ERROR:  42501: a call to the shards must run as its caller's role/;
as_app(q{SELECT * FROM deliver_cluster.peek('pq', 10)}, $shard_denies, 'peek through the router: the shard refuses app');
as_app(q{SELECT * FROM deliver_cluster.receive('pq', 0, 10)}, $shard_denies, 'receive: the shard refuses app');
as_app(q{SELECT * FROM deliver_cluster.dead_letters('pq')}, $shard_denies, 'dead_letters: the shard refuses app');
as_app(q{SELECT deliver_cluster.send('pq', '1')}, $shard_denies, 'send: the shard refuses app without send');
as_app(q{SELECT * FROM deliver_cluster.metrics('pq')}, $shard_denies, 'metrics: the shard refuses app');
as_app(q{SELECT deliver_cluster.purge_queue('pq')}, $shard_denies_fn->('purge_queue'), 'purge_queue: the shard refuses app');
as_app(q{SELECT deliver_cluster.grant_queue('pq', 'app', 'all')}, $shard_denies_fn->('grant_queue'),
	'grant_queue: app cannot grant itself');
as_app(q{SELECT deliver_cluster.create_queue('appq')}, qr/ERROR:  42501: permission denied for table queue/,
	"create_queue: refused to app (the router's list of queues)");
is(psql($router, q{SELECT count(*) FROM deliver_cluster.list_queues() WHERE queue_name = 'appq'}), 0,
	'and the router has no queue appq');
as_app(q{SELECT deliver_cluster.drop_queue('pq')}, qr/ERROR:  42501: permission denied for table queue/,
	"drop_queue: refused to app (the router's list of queues)");
# app may not name another role to the shards
as_app(q{SELECT * FROM deliver_cluster._px_peek('pq', 10, NULL, 'postgres')}, $router_refuses,
	'_px_peek naming postgres: the router refuses (RUN ON ALL)');
as_app(q{SELECT * FROM deliver_cluster._px_send(0, 0, 'pq', '1', NULL, NULL, NULL, NULL, NULL, NULL, caller => 'postgres')}, $router_refuses,
	'_px_send naming postgres: refused (RUN ON one shard)');
as_app(q{SELECT * FROM deliver_cluster._px_ack_batch(ARRAY[0], ARRAY['0:1:1'], 'pq', 'postgres')}, $router_refuses,
	'_px_ack_batch naming postgres: refused (SPLIT)');
as_app(q{SELECT * FROM deliver_cluster._px_metrics('pq', NULL)}, $router_refuses, '_px_metrics naming no role: refused');
is(as_app(q{SELECT count(*) FROM deliver_cluster.all_metrics() WHERE queue_name = 'pq'}), 0,
	"all_metrics: pq's partitions are not app's to see");
is(psql($router, q{SELECT count(*) FROM deliver_cluster.peek('pq', 10)}), 2, 'postgres peeks at both messages');
# granted send: app sends, still cannot read
is(psql($router, q{SELECT deliver_cluster.grant_queue('pq', 'app', 'send')}), 4, 'grant_queue send to app: 4 partitions');
like(as_app(q{SELECT deliver_cluster.send('pq', '"from app"')}), qr/^\d+:\d+:\d+$/, 'app sends through the router');
like(as_app(q{SELECT deliver_cluster.send_batch('pq', ARRAY['1', '2']::jsonb[])}), qr/^\{\d+:\d+:\d+,\d+:\d+:\d+\}$/,
	'app sends a batch through the router');
as_app(q{SELECT * FROM deliver_cluster.peek('pq', 10)}, $shard_denies, 'peek: still refused to app with send only');
($st, $b) = req('POST', '/v1/queues/pq/messages', { payload => 'via http' }, token => $app_token);
is($st, 201, 'app sends through the gateway (the shards read the partition map as app)') or diag explain $b;
gw_is_error([ req('GET', '/v1/queues/pq/peek?max=10', undef, token => $app_token) ], 403, '42501',
	'GET peek through the gateway: refused to app without receive');
# granted receive: app reads its queue, not another one
is(psql($router, q{SELECT deliver_cluster.grant_queue('pq', 'app', 'receive')}), 4, 'grant_queue receive to app');
is(as_app(q{SELECT count(*) FROM deliver_cluster.peek('pq', 10)}), 6, 'app peeks at pq now');
is(as_app(q{SELECT count(DISTINCT partition) FROM deliver_cluster.metrics('pq')}), 4, "app reads pq's metrics");
is(as_app(q{SELECT count(*) FROM deliver_cluster.all_metrics() WHERE queue_name = 'pq'}), 1,
	"all_metrics: pq's metrics are app's now");
as_app(q{SELECT * FROM deliver_cluster.peek('pq2', 10)}, qr/REMOTE ERROR: permission denied to peek at queue "pq2\.p\d"/,
	'peek at pq2: still refused to app');
as_app(q{SELECT deliver_cluster.redrive('pq', to_queue => 'pq2')}, $shard_denies_fn->('redrive'),
	'redrive: the shards refuse app');
($st, $b) = req('GET', '/v1/queues/pq/peek?max=10', undef, token => $app_token);
is($st, 200, 'GET peek through the gateway as app: 200') or diag explain $b;
is(scalar @{ ref $b eq 'ARRAY' ? $b : [] }, 6, 'all six messages');

($st) = req('GET', '/healthz');
is($st, 200, 'the gateway is alive');
my $asan = cluster_stop($c);
is($asan, '', 'the sanitizers reported nothing');
done_testing();
