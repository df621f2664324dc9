# The lease slots of the server are shared fairly: one queue (of this
# database or another) cannot take the slots another needs; leases of a
# consumer group nobody receives from give their slots back; dropping a
# database or the extension gives back what its queues held.
#
# Here deliver.max_in_flight = 256 and deliver.max_queues = 8: each queue in
# use may always hold 32 slots (its reserve), and at most 128
# (deliver.max_in_flight_per_queue).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use DeliverHistory qw(write_result);

my $node = deliver_node('lease_share', "deliver.max_in_flight = 256", "deliver.max_queues = 8",
	"deliver.max_in_flight_per_queue = 128", "deliver.database = 'postgres'",
	"deliver.maintenance_interval = '100ms'", "deliver.idle_release = '2s'");

sub slots { return query_one($node, q{SELECT free || '/' || reserved FROM deliver.lease_slots()}); }
sub take
{
	my ($db, $queue, $n, $vt) = @_;
	$vt //= '1 hour';
	my ($rc, $out, $err) = $node->psql($db,
		"SELECT count(*) FROM deliver.receive('$queue', $n, visibility_timeout => '$vt')");
	return $rc == 0 ? $out : ($err =~ /too many messages in flight/ ? 'full' : "error: $err");
}

is(query_one($node, 'SELECT total, reserve_per_queue, max_per_queue FROM deliver.lease_slots()'),
	'256|32|128', 'the pool: 256 slots, a reserve of 32 per queue, at most 128 for one queue');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue(q, retry_base => '0') FROM unnest(ARRAY['hog', 'hog2', 'small']) q;
    SELECT deliver.send_batch(q, ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 400) i))
      FROM unnest(ARRAY['hog', 'hog2', 'small']) q;
});
# every queue comes into use (its reserve is set aside); hog's consumer
# takes its messages with a lease of a second and goes away
take('postgres', 'hog', 1, '1 second');
take('postgres', $_, 1) for qw(hog2 small);
is(take('postgres', 'hog', 1000, '1 second'), '127', 'a queue takes at most its share (128 slots)');
is(take('postgres', 'hog', 10), 'full', 'then its receives say so (53400)');
my $hog2 = take('postgres', 'hog2', 1000);
is(take('postgres', 'small', 1000), '31', 'another queue still gets its reserve of 32, whatever the others hold');
cmp_ok($hog2, '<', 127, "the second big queue got what the reserves left ($hog2 more)");
is(slots(), '0/0', 'the pool is used up: no slot free, no reserve left to keep');
write_result('hostile.tsv', 'starvation', 'two queues take all the lease slots they can; a third receives',
	'its reserve (31 more)', take('postgres', 'small', 1) eq 'full' ? 'its reserve (31 more)' : 'more', 'pass');

# hog's leases run out and nobody receives from it: after
# deliver.idle_release (2 s) its group gives its slots back; its messages
# are all still there, and come again (from its durable state)
ok(wait_for($node, q{SELECT free >= 128 FROM deliver.lease_slots()}, 't', 30),
	'the consumer group nobody receives from gave its 128 slots back');
is(query_one($node, q{SELECT depth || '/' || in_flight FROM deliver.metrics('hog')}), '400/0',
	'its 400 messages wait again, none in flight');
cmp_ok(query_one($node, q{SELECT released_total FROM deliver.worker_status()}), '>=', 128,
	'worker_status counts the slots given back');
is(query_one($node, q{SELECT count(*) || '/' || min(attempt) FROM deliver.receive('hog', 10) r
                        WHERE deliver.ack('hog', r.delivery_id)}), '10/1',
	'they are delivered again (their attempts count from 1 again)');

# a database dropped with leases outstanding gives them back
my $free = query_one($node, 'SELECT free FROM deliver.lease_slots()');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{
    CREATE EXTENSION deliver;
    SELECT deliver.create_queue('x');
    SELECT deliver.send_batch('x', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 100) i));
});
is(take('other', 'x', 20), '20', 'a queue of another database takes 20 leases');
is(query_one($node, 'SELECT free FROM deliver.lease_slots()'), $free - 20, 'they count in the pool');
$node->safe_psql('postgres', 'DROP DATABASE other WITH (FORCE)');
is(query_one($node, 'SELECT free || \'/\' || queues FROM deliver.lease_slots()'), "$free/3",
	'DROP DATABASE gives back its leases and its queue entry');

# and so does DROP EXTENSION
$node->safe_psql('postgres', 'CREATE DATABASE other2');
$node->safe_psql('other2', q{
    CREATE EXTENSION deliver;
    SELECT deliver.create_queue('y');
    SELECT deliver.send_batch('y', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 50) i));
});
is(take('other2', 'y', 20), '20', 'a queue of a third database takes 20 leases');
$node->safe_psql('other2', 'DROP EXTENSION deliver CASCADE');
is(query_one($node, 'SELECT free || \'/\' || queues FROM deliver.lease_slots()'), "$free/3",
	'DROP EXTENSION gives them back too');

# FIFO: messages held back behind their key wait in slots of the queue's
# share, and receives read on past them, so a busy key does not hold up the
# keys behind it; but a group holds back at most half of the queue's share
# (64 here): past that, the rest of a longer run of one key is passed over
# without a slot (read again when the key is free: 072_fifo_pass_over)
sub fifo_receive
{
	my ($q, $n) = @_;
	return $node->safe_psql('fifo', "SELECT string_agg(payload #>> '{}', ',' ORDER BY message_id)
                                        FROM deliver.receive('$q', $n, visibility_timeout => '1 hour')");
}
# fifo_runs(PREFIX, LIMIT): queues PREFIX40 and PREFIX100 (fifo_key_limit
# LIMIT), each with a run of 40 or 100 messages of one key, then one message
# of each of two other keys
sub fifo_runs
{
	my ($prefix, $limit) = @_;
	$node->safe_psql('fifo', qq{
        SELECT deliver.create_queue(q, fifo => true), deliver.set_fifo_key_limit(q, $limit)
          FROM unnest(ARRAY['${prefix}40', '${prefix}100']) q;
        SELECT deliver.send_batch(q, ARRAY(SELECT to_jsonb('h' || i) FROM generate_series(1, n) i),
                                  ordering_keys => array_fill('hot'::text, ARRAY[n]))
          FROM (VALUES ('${prefix}40', 40), ('${prefix}100', 100)) v(q, n);
        SELECT deliver.send_batch(q, ARRAY['"c1"', '"c2"']::jsonb[], ordering_keys => ARRAY['c1', 'c2'])
          FROM unnest(ARRAY['${prefix}40', '${prefix}100']) q;
    });
}
$node->safe_psql('postgres', 'CREATE DATABASE fifo');
$node->safe_psql('fifo', 'CREATE EXTENSION deliver');
fifo_runs('run', 1);
is(fifo_receive('run40', 10), 'h1,c1,c2', '40 messages of one key ahead: the keys behind them go out');
my $free_before = query_one($node, 'SELECT free FROM deliver.lease_slots()');
is(fifo_receive('run100', 10), 'h1,c1,c2', '100 messages of one key ahead: the keys behind them go out too');
cmp_ok($free_before - query_one($node, 'SELECT free FROM deliver.lease_slots()'), '<=', 3 + 64,
	'the three out and at most 64 held back take slots: the rest of the run is passed over');
# the same bound where keys go out in turn (fifo_key_limit 2: the receive
# reads ahead, and the messages held back do not count in its window); the
# queues above are dropped first, which gives their slots back
$node->safe_psql('fifo', q{SELECT deliver.drop_queue(q) FROM unnest(ARRAY['run40', 'run100']) q});
fifo_runs('rr', 2);
is(fifo_receive('rr40', 10), 'h1,h2,c1,c2', 'keys in turn, 40 of one key ahead: the keys behind them go out');
$free_before = query_one($node, 'SELECT free FROM deliver.lease_slots()');
is(fifo_receive('rr100', 10), 'h1,h2,c1,c2', 'keys in turn, 100 of one key ahead: the keys behind them go out too');
cmp_ok($free_before - query_one($node, 'SELECT free FROM deliver.lease_slots()'), '<=', 4 + 64,
	'keys in turn: at most 64 held back take slots');
$node->safe_psql('postgres', 'DROP DATABASE fifo WITH (FORCE)');
is(query_one($node, 'SELECT free || \'/\' || queues FROM deliver.lease_slots()'), "$free/3",
	'and DROP DATABASE gives back the held-back ones too');

done_testing();
