# A rate limit as low as set_consumer_group_rate accepts (any per_second
# above 0, 1e-300 say) puts a group's next token past the end of time.  A
# long poll of such a group sleeps until its wait is over, as for a group
# whose next token is merely far away; it must not wake every millisecond
# (it did while the time of the next token overflowed int64 and came out
# in the past).  Wake-ups are counted as the backend's voluntary context
# switches (/proc/self/status): one per sleep it woke from.  No maintenance
# worker serves the node's database, so nothing else wakes the poll.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

plan skip_all => 'needs /proc/self/status' unless -r '/proc/self/status';

my $node = deliver_node('flow_tiny_rate');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('tiny');
    SELECT deliver.create_queue('slow');
    SELECT deliver.send_batch('tiny', array['{"n": 1}', '{"n": 2}']::jsonb[]);
    SELECT deliver.send_batch('slow', array['{"n": 1}', '{"n": 2}']::jsonb[]);
    SELECT deliver.set_consumer_group_rate('tiny', 'default', 1e-300);
    SELECT deliver.set_consumer_group_rate('slow', 'default', 1e-3);
});
is(query_one($node, q{SELECT rate_per_second || ' ' || rate_burst FROM deliver.list_consumer_groups('tiny')}),
    '1e-300 1', 'the lowest rate is accepted, with a burst of 1');

# In one session: the burst, then a one-second long poll; prints what the
# poll received and how many times the backend woke meanwhile.
sub poll_wakeups
{
	my ($queue) = @_;
	my $out = $node->safe_psql('postgres', qq{
        CREATE FUNCTION pg_temp.sleeps() RETURNS bigint LANGUAGE sql AS \$\$
            SELECT (regexp_match(pg_read_file('/proc/self/status'),
                                 E'\\nvoluntary_ctxt_switches:\\\\s+(\\\\d+)'))[1]::bigint
        \$\$;
        SELECT count(*) FROM deliver.receive('$queue', 10);
        SELECT pg_temp.sleeps() AS before \\gset
        SELECT count(*) FROM deliver.receive('$queue', 10, wait => '1 second');
        SELECT pg_temp.sleeps() - :before;
    });
	return split /\n/, $out;
}

my ($burst, $received, $wakeups) = poll_wakeups('slow');
is($burst, '1', 'a group with a rate of 1e-3: its burst');
is($received, '0', 'then nothing within a one-second poll');
cmp_ok($wakeups, '<', 50, "the poll slept through (woke $wakeups times)");

($burst, $received, $wakeups) = poll_wakeups('tiny');
is($burst, '1', 'a group with a rate of 1e-300: its burst');
is($received, '0', 'then nothing within a one-second poll');
cmp_ok($wakeups, '<', 50, "the poll slept through (woke $wakeups times), as the other did");

$node->safe_psql('postgres', q{SELECT deliver.set_consumer_group_rate('tiny', 'default', NULL)});
is(query_one($node, q{SELECT count(*) FROM deliver.receive('tiny', 10)}), '1',
    'the limit removed: the rest at once');

$node->stop;
done_testing();
