# reset_consumer_group() is durable: a group moved back delivers its
# acked messages again after a restart too, a group moved to latest does
# not get older messages back after a restart or a crash, and a long poll
# that was waiting across the reset receives from the new position.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use DeliverTest;

my $node = deliver_node('reset_group');

sub take_and_ack
{
	my ($q) = @_;
	return join(',', query_list($node, qq{
        SELECT message_id FROM deliver.receive('$q', 1000) r WHERE deliver.ack('$q', r.delivery_id) ORDER BY 1}));
}

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('rq');
    SELECT deliver.create_queue('rl');
    SELECT deliver.send('rq', jsonb_build_object('n', i)) FROM generate_series(1, 6) i;
    SELECT deliver.send('rl', jsonb_build_object('n', i)) FROM generate_series(1, 6) i;
});
is(take_and_ack('rq'), '1,2,3,4,5,6', 'rq: all six received and acked');
is(take_and_ack('rl'), '1,2,3,4,5,6', 'rl: all six received and acked');
$node->safe_psql('postgres', q{SELECT deliver.maintain()});   # restart points past them

$node->safe_psql('postgres', q{SELECT deliver.reset_consumer_group('rq', 'default', 'earliest')});
$node->safe_psql('postgres', q{SELECT deliver.send('rl', '{"n": 7}')});
$node->safe_psql('postgres', q{SELECT deliver.reset_consumer_group('rl', 'default', 'latest')});
$node->restart;
is(take_and_ack('rq'), '1,2,3,4,5,6', 'after a restart, the group reset to earliest gets every stored message again');
is(take_and_ack('rl'), '', 'the group reset to latest gets nothing stored before the reset');
$node->safe_psql('postgres', q{SELECT deliver.maintain()});
$node->stop('immediate');
$node->start;
is(take_and_ack('rq'), '', 'after a crash, what was acked after the reset stays acked');

# a long poll waiting while the group is reset
$node->safe_psql('postgres', q{SELECT deliver.send('rq', '{"n": 8}')});
is(take_and_ack('rq'), '7', 'a new message');
my ($out, $err) = ('', '');
my $poll = IPC::Run::start(
	[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-c',
	  q{SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM deliver.receive('rq', 100, wait => '60 s')} ],
	'>', \$out, '2>', \$err);
ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension'
                        AND query LIKE '%deliver.receive(''rq''%'}, '1', 30), 'the long poll sleeps');
$node->safe_psql('postgres', q{SELECT deliver.reset_consumer_group('rq', 'default', 'earliest')});
$poll->finish;
is($out, "1,2,3,4,5,6,7\n", 'the long poll woke at the reset and took every stored message, from the new position')
  or diag($err);

done_testing();
