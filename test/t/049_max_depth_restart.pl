# max_depth across a restart and a prepared send: a send is judged from the
# group's last count only while that count holds.  After a restart (the
# queue's sent_total and the group's counters start again, leased messages
# come back) the next send counts again; a send prepared for two-phase
# commit is counted as sent when prepared.  Every step checks that sends
# are accepted and refused as the limit says.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('max_depth_restart', 'max_prepared_transactions = 5');

# try(sql): 'ok' or the SQLSTATE
sub try
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "$sql", on_error_stop => 1);
	return 'ok' if $rc == 0;
	return $err =~ /is full: max_depth/ ? 'full' : "error: $err";
}

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('md', max_depth => 5, visibility_timeout => '1 hour');
    SELECT deliver.send_batch('md', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 5) i));
});
is(query_one($node, q{SELECT count(*) FROM deliver.receive('md', 3)}), '3', '3 of 5 leased');
# in flight is not in the depth: 3 more fit, then none
is(try(q{SELECT deliver.send_batch('md', ARRAY['{}', '{}', '{}']::jsonb[])}), 'ok', 'a batch of 3 fits');
is(try(q{SELECT deliver.send('md', '{}')}), 'full', 'then the queue is full');

$node->restart;

# the 3 leased messages came back: the depth is 8, over the limit
is(query_one($node, q{SELECT depth FROM deliver.metrics('md')}), '8', 'after the restart the depth is 8');
is(try(q{SELECT deliver.send('md', '{}')}), 'full', 'after the restart a send is refused');
is(scalar(drain($node, 'md')), 8, 'the 8 messages are received and acked');
is(try(q{SELECT deliver.send_batch('md', ARRAY['{}', '{}', '{}', '{}', '{}']::jsonb[])}), 'ok',
    'an empty queue takes 5');
is(try(q{SELECT deliver.send('md', '{}')}), 'full', 'and no sixth');

# a prepared send, committed after a count: the overshoot it makes lasts
# until the next count (documented), and an ack of everything clears it
is(scalar(drain($node, 'md')), 5, 'emptied again');
$node->safe_psql('postgres', q{
    BEGIN;
    SELECT deliver.send('md', '{"prepared": true}');
    PREPARE TRANSACTION 'md1';
});
is(try(q{SELECT deliver.send_batch('md', ARRAY['{}', '{}', '{}', '{}', '{}']::jsonb[])}), 'ok',
    'the prepared message is not in the depth: 5 fit');
$node->safe_psql('postgres', q{COMMIT PREPARED 'md1'});
is(query_one($node, q{SELECT depth FROM deliver.metrics('md')}), '6', 'committed: the depth is 6');
is(try(q{SELECT deliver.send('md', '{}')}), 'full', 'a send is refused at 6');
is(scalar(drain($node, 'md')), 6, 'emptied');
is(try(q{SELECT deliver.send_batch('md', ARRAY['{}', '{}', '{}', '{}', '{}']::jsonb[])}), 'ok',
    'after acks 5 fit again');
is(try(q{SELECT deliver.send('md', '{}')}), 'full', 'and no sixth');

$node->stop;
done_testing();
