# A long poll of a queue whose delayed messages a maintenance worker moves
# does not wake every millisecond while a delayed message is due and the
# worker has not moved it yet (the worker busy, stopped or restarting): the
# worker's commit wakes the poll, and the due time only makes it look again
# now and then.  The worker is stopped (SIGSTOP) for the poll, then let go:
# it moves the message, which a receive then gets.  Wake-ups are counted as
# the backend's voluntary context switches (/proc/self/status).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use DeliverTest;

plan skip_all => 'needs /proc/self/status' unless -r '/proc/self/status';

my $node = deliver_node('poll_due', "deliver.database = 'postgres'", 'deliver.maintenance_interval = 100ms');
$node->safe_psql('postgres', q{SELECT deliver.create_queue('dq')});

ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'deliver maintenance'}, '1', 30),
	'the maintenance worker runs');
my $worker = query_one($node, q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'deliver maintenance'});
ok(kill('STOP', $worker), 'the worker stopped (SIGSTOP)');

# a message due in 100 ms; the poll starts once it is due and lasts a second
my $out = $node->safe_psql('postgres', q{
    CREATE FUNCTION pg_temp.sleeps() RETURNS bigint LANGUAGE sql AS $$
        SELECT (regexp_match(pg_read_file('/proc/self/status'),
                             E'\nvoluntary_ctxt_switches:\\\\s+(\\\\d+)'))[1]::bigint
    $$;
    SELECT deliver.send('dq', '{"n": 1}', delay => interval '100 milliseconds') IS NOT NULL;
    SELECT pg_sleep(0.3);
    SELECT pg_temp.sleeps() AS before \gset
    SELECT count(*) FROM deliver.receive('dq', 10, wait => '1 second');
    SELECT pg_temp.sleeps() - :before;
});
my ($sent, undef, $received, $wakeups) = split /\n/, $out;
is($sent, 't', 'a delayed message sent');
is($received, '0', 'the worker stopped: nothing moved it within the poll');
cmp_ok($wakeups, '<', 50, "the poll slept (woke $wakeups times in a second)");

ok(kill('CONT', $worker), 'the worker let go (SIGCONT)');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('dq', 10, wait => '10 seconds')}), '1',
	'it moves the message, and a long poll gets it');

$node->stop;
done_testing();
