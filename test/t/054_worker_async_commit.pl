# The maintenance worker commits without waiting for the WAL flush (its
# session has synchronous_commit off).  A crash right after its work loses
# nothing: delayed messages it moved and nobody acked come again, those
# acked after the move stay acked (the ack's durable commit flushed the
# move before it), messages it dead-lettered are dead letters or come
# again, never neither.  The WAL writer is slowed down (wal_writer_delay
# 10 s) so that the worker's last commits are still unflushed at the crash.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('async_worker', "deliver.database = 'postgres'",
	'deliver.maintenance_interval = 100ms', 'wal_writer_delay = 10s');

is( query_one($node,
		q{SELECT setting FROM pg_settings WHERE name = 'synchronous_commit'}),
	'on', 'sessions commit durably');

# --- delayed messages: moved by the worker, some acked, then a crash
$node->safe_psql('postgres', q{SELECT deliver.create_queue('due', retry_base => '0')});
$node->safe_psql('postgres',
	q{SELECT count(*) FROM unnest(deliver.send_batch('due',
	    ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 20) i), delay => '300 ms'))});
ok( wait_for($node, q{SELECT count(*) FROM deliver.peek('due', 100)}, '20', 30),
	'the worker moved the 20 delayed messages when they came due');
my @acked = query_list($node,
	q{SELECT message_id FROM deliver.receive('due', 5) r WHERE deliver.ack('due', r.delivery_id) ORDER BY 1});
is(scalar @acked, 5, 'five of them received and acked (durable commits)');

# --- out of attempts: the worker's sweep moves them to the dead letters
$node->safe_psql('postgres',
	q{SELECT deliver.create_queue('dl', max_attempts => 1, visibility_timeout => '100 ms', retry_base => '0')});
$node->safe_psql('postgres',
	q{SELECT count(*) FROM unnest(deliver.send_batch('dl', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 10) i)))});
is(query_one($node, q{SELECT count(*) FROM deliver.receive('dl', 10)}), '10', 'ten leased once');
ok(wait_for($node, q{SELECT count(*) FROM deliver.dead_letters('dl')}, '10', 30),
	'the worker dead-lettered them when their leases ran out');

crash_server($node);
ok(wait_for($node, q{SELECT 1}, '1', 60), 'the server is back after the crash');

# every delayed message but the acked ones comes again, exactly once here
my @again = drain($node, 'due', seconds => 60);
my %acked = map { $_ => 1 } @acked;
is(scalar(grep { $acked{$_} } @again), 0, 'no acked message came again');
is(scalar @again, 15, 'the 15 not acked came again (moved again or kept), none lost');

# the dead-lettered ones: dead letters, or back in the queue (then out of
# attempts again), never lost
my $dead = query_one($node, q{SELECT count(*) FROM deliver.dead_letters('dl')});
my @back = drain($node, 'dl', seconds => 30);
is($dead + scalar(@back), 10, "the 10 out of attempts are dead letters ($dead) or came again (" . scalar(@back) . ')');

done_testing();
