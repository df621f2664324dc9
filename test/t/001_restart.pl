# Queues, messages, finish records and consumer groups survive restarts:
# everything sent comes back after a clean restart, a message leased but not
# acked is handed out again, an acked one never.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use DeliverTest;

my $node = deliver_node('restart', 'deliver.rotation_interval = 100ms');

sub ids { return join(',', sort { $a <=> $b } @_); }
sub range { my ($lo, $hi) = @_; return join(',', $lo .. $hi); }

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('alo', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('amo', 'at_most_once');
    SELECT deliver.create_queue('eo', 'exactly_once', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('fifo', fifo => true, visibility_timeout => '1 hour');
    SELECT deliver.create_consumer_group('alo', 'second');
});

# 100 messages: two batches and single sends
$node->safe_psql('postgres', q{
    SELECT deliver.send_batch('alo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 40) i));
    SELECT deliver.send('alo', jsonb_build_object('n', i)) FROM generate_series(41, 60) i;
    SELECT deliver.send_batch('alo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(61, 100) i));
    SELECT deliver.send_batch('amo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 10) i));
    SELECT deliver.send('eo', jsonb_build_object('n', i), idempotency_key => 'k' || i) FROM generate_series(1, 10) i;
    SELECT deliver.send('fifo', jsonb_build_object('n', i), ordering_key => 'k' || (i % 2)) FROM generate_series(1, 6) i;
});

$node->restart;

# clean restart: every message is there, payloads intact
is( query_one($node, q{
        SELECT string_agg((payload->>'n'), ',' ORDER BY message_id)
          FROM deliver.receive('alo', 1000)}),
    range(1, 100), 'after a restart all 100 messages are received, in order');
# ack 60 of them, leave 40 leased
$node->safe_psql('postgres', q{
    CREATE TABLE leased AS SELECT message_id, delivery_id FROM deliver.receive('alo', 10);
});
is(query_one($node, 'SELECT count(*) FROM leased'), '0',
    'the 100 leased messages are not received again before the restart');

# the messages are leased (1 hour): receive them again after a restart and
# ack 60 of them (the delivery ids of before the restart are gone)
$node->restart;
my @again = query_list($node, q{
    CREATE TABLE r1 AS SELECT message_id, delivery_id FROM deliver.receive('alo', 1000);
    SELECT message_id FROM r1 ORDER BY 1});
is(ids(@again), range(1, 100), 'leased but unacked messages come back after a restart');
is(query_one($node, q{SELECT count(*) FILTER (WHERE deliver.ack('alo', delivery_id)) FROM r1 WHERE message_id <= 60}),
    '60', '60 messages acked');

# 20 more received and left leased, 20 never received
query_list($node, q{SELECT message_id FROM deliver.receive('alo', 20)});

$node->restart;
is(ids(drain($node, 'alo')), range(61, 100),
    'after another restart: the 40 unacked come back (leased or not), the 60 acked never');
is(ids(drain($node, 'alo')), '', 'nothing more');

# the second consumer group has acked nothing: it still gets all 100
is(ids(drain($node, 'alo', group => 'second')), range(1, 100),
    'a second consumer group keeps all its messages across restarts');

$node->restart;
is(ids(drain($node, 'alo')) . '|' . ids(drain($node, 'alo', group => 'second')), '|',
    'after all acks and a restart nothing comes back in either group');

# an immediate shutdown (crash recovery) keeps acks too
$node->safe_psql('postgres', q{
    SELECT deliver.send_batch('alo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(101, 110) i));
});
my @acked = query_list($node, q{
    SELECT message_id FROM deliver.receive('alo', 5) r WHERE deliver.ack('alo', r.delivery_id)});
is(scalar(@acked), 5, 'five acked before the crash');
$node->stop('immediate');
$node->start;
my @after = drain($node, 'alo');
is(scalar(@after), 5, 'the other five come back after crash recovery');
my %acked = map { $_ => 1 } @acked;
is(scalar(grep { $acked{$_} } @after), 0, 'none of the acked ones comes back');
is(ids(drain($node, 'alo', group => 'second')), range(101, 110),
    'the second group gets the ten new messages once');

# at-most-once: consumed messages never come back
is(ids(query_list($node, q{SELECT message_id FROM deliver.receive('amo', 4)})),
    '1,2,3,4', 'at-most-once: four consumed');
$node->restart;
is(ids(query_list($node, q{SELECT message_id FROM deliver.receive('amo', 100)})),
    '5,6,7,8,9,10', 'at-most-once: after a restart only the six others');
$node->stop('immediate');
$node->start;
is(ids(query_list($node, q{SELECT message_id FROM deliver.receive('amo', 100)})),
    '', 'at-most-once: after crash recovery nothing comes back');

# exactly-once: idempotency keys are remembered across a restart
my $before = query_one($node, q{SELECT deliver.send('eo', jsonb_build_object('n', 3), idempotency_key => 'k3')});
$node->restart;
is(query_one($node, q{SELECT deliver.send('eo', jsonb_build_object('n', 3), idempotency_key => 'k3')}),
    $before, 'exactly-once: a resend with a known idempotency key returns the first id after a restart');
is(ids(drain($node, 'eo')), range(1, 10), 'exactly-once: the ten messages, once each');

# FIFO: keys keep their order across restarts; a leased key still blocks
# its next message after the restart (the lease is gone: it comes back first)
is(query_one($node, q{SELECT string_agg(payload->>'n', ',' ORDER BY message_id) FROM deliver.receive('fifo', 10)}),
    '1,2', 'fifo: the first message of each key');
$node->restart;
is(query_one($node, q{
        SELECT string_agg(payload->>'n', ',' ORDER BY message_id)
          FROM deliver.receive('fifo', 10) r WHERE deliver.ack('fifo', r.delivery_id)}),
    '1,2', 'fifo: after a restart the unacked heads of each key come back, not their successors');
is(query_one($node, q{
        SELECT string_agg(payload->>'n', ',' ORDER BY message_id)
          FROM deliver.receive('fifo', 10) r WHERE deliver.ack('fifo', r.delivery_id)}),
    '3,4', 'fifo: then the next of each key');
$node->restart;
is(query_one($node, q{
        SELECT string_agg(payload->>'n', ',' ORDER BY message_id)
          FROM deliver.receive('fifo', 10) r WHERE deliver.ack('fifo', r.delivery_id)}),
    '5,6', 'fifo: acked ones stay acked across a restart');

# segments rotated and truncated by maintain() between acks: a restart
# brings back exactly the unacked messages
$node->safe_psql('postgres', q{SELECT deliver.create_queue('rot', visibility_timeout => '1 hour')});
my @rot_sent;
my @rot_acked;
for my $round (1 .. 5)
{
	push @rot_sent, query_list($node, qq{
        SELECT unnest(deliver.send_batch('rot', ARRAY(SELECT jsonb_build_object('round', $round, 'i', i) FROM generate_series(1, 6) i)))});
	push @rot_acked, query_list($node, q{
        SELECT message_id FROM deliver.receive('rot', 4) r WHERE deliver.ack('rot', r.delivery_id)});
	usleep(150_000);
	$node->safe_psql('postgres', q{SELECT count(*) FROM deliver.maintain()});
}
my @rot_leased = query_list($node, q{SELECT message_id FROM deliver.receive('rot', 5)});
is(scalar(@rot_acked) . '/' . scalar(@rot_leased), '20/5', 'rot: 20 acked and 5 leased across rotations');
for (1 .. 3)
{
	usleep(150_000);
	$node->safe_psql('postgres', q{SELECT count(*) FROM deliver.maintain()});
}
$node->restart;
my %rot_acked = map { $_ => 1 } @rot_acked;
is(ids(drain($node, 'rot')), ids(grep { !$rot_acked{$_} } @rot_sent),
	'rot: after rotations, truncations and a restart exactly the unacked ten come back');
$node->safe_psql('postgres', q{SELECT count(*) FROM deliver.maintain()});
$node->stop('immediate');
$node->start;
is(ids(drain($node, 'rot')), '', 'rot: and after a crash nothing more');

# a delayed message survives a restart and still waits for its time
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('later');
    SELECT deliver.send('later', '{"delayed": true}', delay => '3 s');
});
$node->restart;
is(query_one($node, q{SELECT count(*) FROM deliver.receive('later', 10)}), '0',
	'a delayed message is not delivered before its time, after a restart');
ok(wait_for($node, q{SELECT string_agg(payload->>'delayed', ',') FROM deliver.receive('later', 10) r WHERE deliver.ack('later', r.delivery_id)},
		'true', 30),
	'it is delivered once it comes due');
$node->restart;
is(query_one($node, q{SELECT count(*) FROM deliver.receive('later', 10)}), '0', 'and only once');

# the catalog survives
is(query_one($node, q{SELECT string_agg(queue_name || ':' || array_to_string(consumer_groups, '+'), ' ' ORDER BY queue_name) FROM deliver.list_queues()}),
    'alo:default+second amo:default eo:default fifo:default later:default rot:default', 'queues and groups are all there');

$node->stop;
done_testing();
