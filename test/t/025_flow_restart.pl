# Flow control survives restarts: a paused consumer group stays paused
# after a clean restart and after a crash (its state is in the catalog),
# and a rate limit still holds, its token bucket full again at start.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('flow_restart');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('paused');
    SELECT deliver.create_consumer_group('paused', 'free');
    SELECT deliver.create_queue('limited');
    SELECT deliver.send_batch('paused', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 5) i));
    SELECT deliver.send_batch('limited', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 10) i));
    SELECT deliver.pause_consumer_group('paused');
    SELECT deliver.set_consumer_group_rate('limited', 'default', 0.001, 2);
});
is(query_one($node, q{SELECT count(*) FROM deliver.receive('paused', 10)}), '0',
    'a paused group receives nothing');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('limited', 10)}), '2',
    'a rate-limited group receives its burst');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('limited', 10)}), '0',
    'then nothing');

$node->restart;

is(query_one($node, q{SELECT count(*) FROM deliver.receive('paused', 10)}), '0',
    'after a restart the group is still paused');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('paused', 10, consumer_group => 'free')}), '5',
    'the other group of the queue is not');
is(query_one($node, q{SELECT paused FROM deliver.list_consumer_groups('paused') WHERE consumer_group = 'default'}),
    't', 'list_consumer_groups shows it paused');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('limited', 10)}), '2',
    'after a restart the bucket starts full: the burst again');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('limited', 10)}), '0',
    'and the rate still holds');

crash_server($node);

is(query_one($node, q{SELECT count(*) FROM deliver.receive('paused', 10)}), '0',
    'after a crash the group is still paused');
is(query_one($node, q{SELECT deliver.resume_consumer_group('paused')}), 't', 'resumed');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('paused', 10)}), '5',
    'a resumed group receives its messages');
$node->restart;
is(query_one($node, q{SELECT count(*) FROM deliver.receive('paused', 10)}), '5',
    'the resume survives a restart too (the unacked leases come back)');

$node->stop;
done_testing();
