# Long polls with the maintenance worker serving the database: a poll that
# started before a delayed message came due returns it when it comes due
# (the worker moves it and its commit wakes the poll), long before the end
# of its wait; the same after a restart, with the delayed message sent
# before the restart.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('worker', "deliver.database = 'postgres'",
	'deliver.maintenance_interval = 100ms');

$node->safe_psql('postgres', q{SELECT deliver.create_queue('lp')});

# a poll of up to 20 s; prints the payload and how long it waited
my $poll = q{
    SELECT payload->>'n', clock_timestamp() - statement_timestamp() < interval '10 s'
      FROM deliver.receive('lp', 10, wait => '20 s') r
     WHERE deliver.ack('lp', r.delivery_id)};

$node->safe_psql('postgres', q{SELECT deliver.send('lp', '{"n": 1}', delay => '2 s')});
is(query_one($node, $poll), '1|t', 'the poll returns the delayed message when it comes due');

$node->safe_psql('postgres', q{SELECT deliver.send('lp', '{"n": 2}', delay => '4 s')});
$node->restart;
is(query_one($node, $poll), '2|t', 'after a restart too');

# a poll waiting while a message is sent and committed by another session
my $bg = $node->background_psql('postgres');
$bg->{stdin} .= $poll . ";\n\\echo DONE\n";
$bg->{run}->pump_nb;
ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%receive(''lp''%'}, '1', 30),
	'a second poll sleeps');
$node->safe_psql('postgres', q{SELECT deliver.send('lp', '{"n": 3}')});
my $t = IPC::Run::timer(15);
$bg->{run}->pump until $bg->{stdout} =~ /DONE/ || $t->is_expired;
like($bg->{stdout}, qr/^3\|t$/m, 'it is woken by the commit of a send');
$bg->quit;

$node->stop;
done_testing();
