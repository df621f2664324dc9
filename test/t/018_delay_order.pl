# A delayed message takes its place in its key's order at its due time:
# messages of its key committed before it came due come before it, those
# committed after come after.  The maintenance worker moves it when it
# comes due (it sleeps until then, and a sender of an earlier one wakes
# it), not at its next run: here runs are 30 s apart.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest;

my $node = deliver_node('delay_order', "deliver.database = 'postgres'", "deliver.maintenance_interval = '30s'");
ok(wait_for($node, q{SELECT runs > 0 FROM deliver.worker_status()}, 't', 60), 'the worker ran once');

sub order_of
{
	my ($queue) = @_;
	return query_one($node, qq{
        SELECT string_agg(payload #>> '{}', ',' ORDER BY n) FROM (
            SELECT payload, n FROM deliver.receive('$queue', 10)
                   WITH ORDINALITY AS r(message_id, delivery_id, payload, headers, ordering_key,
                                        attempt, enqueued_at, lease_expires_at, n)
             WHERE deliver.ack('$queue', delivery_id)) x});
}

for my $fifo ('false', 'true')
{
	my $q = $fifo eq 'true' ? 'dl_fifo' : 'dl';
	$node->safe_psql('postgres', "SELECT deliver.create_queue('$q', fifo => $fifo)");
	my $t0 = time();
	# C comes due in 1 s; D is sent before that; E after
	$node->safe_psql('postgres', qq{
        SELECT deliver.send('$q', '"C"', ordering_key => 'k', delay => '1 second');
        SELECT deliver.send('$q', '"D"', ordering_key => 'k');
    });
	is(order_of($q), 'D', "$q: before C comes due, D (sent after C, due before it) is delivered");
	my $left = $t0 + 2.5 - time();
	usleep($left * 1_000_000) if $left > 0;
	$node->safe_psql('postgres', qq{SELECT deliver.send('$q', '"E"', ordering_key => 'k')});
	is(order_of($q) . ($fifo eq 'true' ? ',' . order_of($q) : ''), 'C,E',
		"$q: C came due before E was sent: C, then E");
}
cmp_ok(query_one($node, q{SELECT runs FROM deliver.worker_status()}), '<', 3,
	'the worker did not need its full runs for that');

done_testing();
