# delete_message() is durable: a deleted message is not delivered again to
# any group, whether the cursor had reached it or not, a lease on it was
# live or not, across clean restarts and a crash; a message deleted while
# the group has no shared state (just after a restart) stays gone too.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('delete_message');

sub received
{
	my ($group) = @_;
	return join(',', query_list($node, qq{
        SELECT message_id FROM deliver.receive('dq', 1000, consumer_group => '$group') ORDER BY 1}));
}

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('dq', visibility_timeout => '1 hour');
    SELECT deliver.create_consumer_group('dq', 'second');
    SELECT deliver.create_queue('dfifo', fifo => true, visibility_timeout => '1 hour');
    SELECT deliver.send_batch('dq', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 12) i));
    SELECT deliver.send_batch('dfifo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 3) i),
                              NULL, ARRAY['k', 'k', 'k']);
});

# 3: not reached by either cursor; 5: leased by the default group
is(query_one($node, q{SELECT deliver.delete_message('dq', 3)}), 't', 'a message no cursor reached is deleted');
is(query_one($node, q{SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM deliver.receive('dq', 5)}),
	'1,2,4,5,6', 'the default group skips it');
is(query_one($node, q{SELECT deliver.delete_message('dq', 5)}), 't', 'a leased message is deleted');
# FIFO: 2 waits behind 1, which is leased
is(query_one($node, q{SELECT string_agg(message_id::text, ',') FROM deliver.receive('dfifo', 10)}),
	'1', 'FIFO: the key\'s first message is out');
is(query_one($node, q{SELECT deliver.delete_message('dfifo', 2)}), 't', 'a message held behind its key is deleted');

$node->restart;
is(received('default'), '1,2,4,6,7,8,9,10,11,12',
	'after a restart the default group gets back its leased messages, not the deleted ones');
is(received('second'), '1,2,4,6,7,8,9,10,11,12', 'the second group never gets the deleted ones');
my ($fifo, $d) = split /\|/, query_one($node, q{
    SELECT string_agg(message_id::text, ','), min(delivery_id) FROM deliver.receive('dfifo', 10)});
is($fifo, '1', 'FIFO: after a restart the first message is delivered again');
query_one($node, "SELECT deliver.ack('dfifo', $d)");
is(query_one($node, q{SELECT string_agg(message_id::text, ',') FROM deliver.receive('dfifo', 10)}),
	'3', 'FIFO: once it is acked the key\'s next message is 3, not the deleted 2');

# right after a restart, before any receive: the group has no shared state yet
$node->restart;
is(query_one($node, q{SELECT deliver.delete_message('dq', 8)}), 't',
	'a message is deleted before its group recovered');
is(received('default'), '1,2,4,6,7,9,10,11,12', 'the recovered default group does not get it');

# a crash right after the delete committed
is(query_one($node, q{SELECT deliver.delete_message('dq', 10)}), 't', 'a message is deleted');
$node->stop('immediate');
$node->start;
is(received('default'), '1,2,4,6,7,9,11,12', 'after a crash the deleted message stays gone (default)');
is(received('second'), '1,2,4,6,7,9,11,12', 'after a crash the deleted message stays gone (second)');

# deleted already: false; after the restarts the message stays deleted
is(query_one($node, q{SELECT deliver.delete_message('dq', 3)}), 'f', 'a deleted message is not deleted twice');
is(query_one($node, q{SELECT deliver.delete_message('dq', 10)}), 'f', 'nor after a crash');

done_testing();
