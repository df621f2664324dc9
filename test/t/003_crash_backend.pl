# kill -9 of one backend in the middle of a receive transaction.  The
# postmaster then resets every backend and the shared memory (crash
# recovery); afterwards nothing committed is lost, nothing uncommitted
# appears, and committed acks stay.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('backend');

sub ids { return join(',', sort { $a <=> $b } @_); }
sub range { my ($lo, $hi) = @_; return join(',', $lo .. $hi); }

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('kb', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('eo', 'exactly_once', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('idle');
    CREATE TABLE effects (message_id bigint);
    SELECT deliver.send_batch('kb', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 50) i));
    SELECT deliver.send('eo', jsonb_build_object('n', i), idempotency_key => 'e' || i) FROM generate_series(1, 10) i;
});

# 1-5 acked (committed), 16-20 leased by a committed receive
is(ids(query_list($node, q{SELECT message_id FROM deliver.receive('kb', 5) r WHERE deliver.ack('kb', r.delivery_id)})),
	range(1, 5), 'five acked before the crash');

# the victim: a transaction that received 6-15, acked three of them and sent
# two messages, then sleeps in a long poll on another queue
my $victim = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $victim->query_safe('SELECT pg_backend_pid()');
$victim->query_safe(q{BEGIN});
is(ids(split /\n/, $victim->query_safe(q{
    CREATE TEMP TABLE r AS SELECT message_id, delivery_id FROM deliver.receive('kb', 10);
    SELECT message_id FROM r})),
	range(6, 15), 'the victim received 6-15');
is($victim->query_safe(q{SELECT count(*) FILTER (WHERE deliver.ack('kb', delivery_id)) FROM r WHERE message_id <= 8}),
	'3', 'the victim acked three of them (not committed)');
$victim->query_safe(q{SELECT deliver.send('kb', '{"uncommitted": true}'), deliver.send('kb', '{"uncommitted": true}')});

is(ids(query_list($node, q{SELECT message_id FROM deliver.receive('kb', 5)})),
	range(16, 20), 'another session leased 16-20 and committed');

# an exactly-once consumer applying effects and acking, not yet committed
my $eo = $node->background_psql('postgres', on_error_stop => 0);
$eo->query_safe(q{BEGIN});
is($eo->query_safe(q{
    CREATE TEMP TABLE r AS SELECT message_id, delivery_id FROM deliver.receive('eo', 4);
    INSERT INTO effects SELECT message_id FROM r;
    SELECT count(*) FILTER (WHERE deliver.ack('eo', delivery_id)) FROM r}),
	'4', 'an exactly-once consumer applied and acked four messages (not committed)');

# the victim goes to sleep in a long poll
$victim->{stdin} .= "SELECT count(*) FROM deliver.receive('idle', 1, wait => '60 s');\n";
$victim->{run}->pump_nb;
ok(wait_for($node, qq{SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid}, 'Extension', 30),
	'the victim sleeps in a long poll, inside its receive transaction');

kill 'KILL', $pid;
ok(wait_for($node, q{SELECT 1}, '1', 60), 'the server is back after the backend crash');
ok(wait_for($node, q{SELECT 1}, '1', 10), 'and stays up');
my $log = slurp_file($node->logfile);
like($log, qr/server process \(PID $pid\) was terminated by signal 9/, 'the postmaster saw the backend die');
like($log, qr/all server processes terminated; reinitializing/, 'and reset every backend');
eval { $victim->quit; };
eval { $eo->quit; };

# nothing committed is lost: 6-50 come back (leased 6-20 included), the
# acked 1-5 do not, the uncommitted sends and acks do not count
is(ids(drain($node, 'kb')), range(6, 50), 'after the crash: 6-50 are delivered, the acked 1-5 are not');
is(query_one($node, 'SELECT count(*) FROM effects'), '0', 'the uncommitted effects are gone');

# exactly-once: the four come back and are processed once now
is(query_one($node, q{
    WITH r AS (SELECT * FROM deliver.receive('eo', 100)),
         e AS (INSERT INTO effects SELECT message_id FROM r RETURNING 1)
    SELECT count(*) FILTER (WHERE deliver.ack('eo', delivery_id)) FROM r}),
	'10', 'exactly-once: all ten messages are delivered after the crash');
is(query_one($node, 'SELECT count(*) || ' . "'/'" . ' || count(DISTINCT message_id) FROM effects'), '10/10',
	'exactly-once: ten effects, no duplicate');
is(ids(drain($node, 'eo')), '', 'exactly-once: nothing left');

# a second backend crash, this time with nothing in flight: nothing returns
my $s = $node->background_psql('postgres', on_error_stop => 0);
my $pid2 = $s->query_safe('SELECT pg_backend_pid()');
kill 'KILL', $pid2;
ok(wait_for($node, q{SELECT 1}, '1', 60), 'the server is back after a second backend crash');
eval { $s->quit; };
is(ids(drain($node, 'kb')) . '|' . ids(drain($node, 'eo')), '|', 'nothing acked comes back');

# and the queue works
$node->safe_psql('postgres', q{SELECT deliver.send('kb', '{"late": 1}')});
is(query_one($node, q{SELECT payload->>'late' FROM deliver.receive('kb') r WHERE deliver.ack('kb', r.delivery_id)}),
	'1', 'a new message goes through');

$node->stop;
done_testing();
