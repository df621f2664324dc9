# Priorities across a restart and a crash, the read-ahead window and aging.
# What a group read ahead lives in shared memory only: after a clean
# restart or a crash (kill -9 of the postmaster and its children) every
# unfinished message comes back, still highest priority first, delayed
# messages keep their priority when they come due, and nothing acked comes
# back.  deliver.priority_window bounds what a receive chooses from;
# deliver.priority_aging lets a low message out under a steady stream of
# high ones (without it, it would wait for as long as they keep coming).
# A FIFO queue whose keys may have more than one message out reads ahead
# too (keys in turn), and serves its keys in turn after a crash.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use DeliverTest;

# no aging at first: the order is strict priority, however slow the machine
my $node = deliver_node('priorities', 'deliver.priority_aging = 0');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('p', priorities => true, visibility_timeout => '1 hour');
    SELECT deliver.create_queue('pf', priorities => true, fifo => true, visibility_timeout => '1 hour');
    SELECT deliver.create_consumer_group('p', 'second');
});

# 200 messages, priorities spread over 0-9 in no order, in three kinds of
# send; the priority is in the payload too
sub prio_of { my ($i) = @_; return ($i * 7) % 10; }
$node->safe_psql('postgres', join("\n",
	(map { "SELECT deliver.send('p', jsonb_build_object('i', $_, 'p', " . prio_of($_) . "), priority => " . prio_of($_) . ");" } 1 .. 100),
	(map { my $p = $_; "SELECT deliver.send_batch('p', ARRAY(SELECT jsonb_build_object('i', i, 'p', $p) FROM generate_series(" . (101 + ($p * 10)) . ", " . (110 + ($p * 10)) . ") i), priority => $p);" } 0 .. 9)));

# a receive reads ahead and hands out the highest first; ack 30, hold 20
my @first = query_list($node, q{
    SELECT (payload->>'i') || ',' || (payload->>'p')
      FROM deliver.receive('p', 30) r, LATERAL deliver.ack('p', r.delivery_id) a});
is(scalar(@first), 30, '30 received and acked');
my @fp = map { (split /,/)[1] } @first;
is(join(',', @fp), join(',', sort { $b <=> $a } @fp), 'in priority order');
is($fp[0], 9, 'the first is of priority 9');
my %acked = map { (split /,/)[0] => 1 } @first;
my @held = query_list($node, q{SELECT payload->>'i' FROM deliver.receive('p', 20)});
is(scalar(@held), 20, '20 more leased, not acked');

# delayed messages with a priority, due after the restart
my $due = query_one($node, q{
    SELECT deliver.send('p', jsonb_build_object('i', 1000 + i, 'p', 9), priority => 9, delay => '3 seconds')
      FROM generate_series(1, 5) i;
    SELECT now() + interval '3 seconds'});
$due = (split /\n/, $due)[-1];

sub order_ok
{
	my ($label, @rows) = @_;
	my @p = map { (split /,/)[1] } @rows;
	is(join(',', @p), join(',', sort { $b <=> $a } @p), "$label: highest priority first");
}

$node->restart;

# after the clean restart: the 150 unacked (the 20 held among them), in
# priority order, and none of the 30 acked
my @after = query_list($node, q{
    SELECT (payload->>'i') || ',' || (payload->>'p') FROM deliver.receive('p', 60)});
is(scalar(@after), 60, 'restart: 60 received');
order_ok('restart', @after);
# the 200 + 5 messages: 30 acked, so 175 left for 'default'
is(query_one($node, q{SELECT depth + in_flight + delayed FROM deliver.metrics('p') WHERE consumer_group = 'default'}),
	'175', '175 unfinished after the restart (30 acked stayed acked)');

# the second group never received: all 200 in priority order, delayed ones after
my @second = query_list($node, q{
    SELECT (payload->>'i') || ',' || (payload->>'p')
      FROM deliver.receive('p', 200, consumer_group => 'second') r,
           LATERAL deliver.ack('p', r.delivery_id) a});
is(scalar(@second), 200, 'second group: 200');
order_ok('second group', @second);

# crash with 60 of 'default' leased (read ahead: the other 115 in memory)
crash_server($node);

# (no maintenance worker here: moved by hand once due, as a worker would)
ok(wait_for($node, qq{SELECT now() > '$due'::timestamptz}, 't', 30), 'the delayed messages are due');
$node->safe_psql('postgres', q{SELECT deliver._move_due('p')});
is(query_one($node, q{SELECT delayed FROM deliver.metrics('p') WHERE consumer_group = 'default'}), '0',
	'and moved');
my @rest = query_list($node, q{
    SELECT (payload->>'i') || ',' || (payload->>'p')
      FROM deliver.receive('p', 500) r, LATERAL deliver.ack('p', r.delivery_id) a});
is(scalar(@rest), 175, 'crash: all 175 unfinished came back');
order_ok('crash', @rest);
is(scalar(grep { /^10\d\d,9$/ } @rest), 5, 'the 5 delayed messages kept priority 9');
is(scalar(grep { /,9$/ } @rest[0 .. 4]), 5, 'priority 9 first, the delayed ones among them');
my %again = map { (split /,/)[0] => 1 } @rest;
is(scalar(grep { !$again{(split /,/)[0]} } @after), 0, 'the 60 leased before the crash came back');
my %n;
$n{(split /,/)[0]}++ for @rest;
is(scalar(grep { $n{$_} > 1 } keys %n), 0, 'none of them twice');
is(scalar(grep { $acked{(split /,/)[0]} } (@after, @rest)), 0, 'nothing acked came back');
is(scalar(query_list($node, q{SELECT 1 FROM deliver.receive('p', 10)})), 0, 'nothing left');

# FIFO: a key's messages in order whatever their priorities, across a crash
$node->safe_psql('postgres', q{
    SELECT deliver.send('pf', jsonb_build_object('k', 'a', 'n', i), ordering_key => 'a', priority => i)
      FROM generate_series(1, 5) i;
    SELECT deliver.send('pf', jsonb_build_object('k', 'b', 'n', 1), ordering_key => 'b', priority => 0);
});
is(join(' ', query_list($node, q{SELECT (payload->>'k') || (payload->>'n') FROM deliver.receive('pf', 10)})),
	'a1 b1', 'one message per key, the busy key first (priority 1 over 0)');
crash_server($node);
my @fifo;
for (1 .. 6)
{
	push @fifo, query_list($node, q{
        SELECT (payload->>'k') || (payload->>'n')
          FROM deliver.receive('pf', 10) r, LATERAL deliver.ack('pf', r.delivery_id) a});
}
is(join(' ', @fifo), 'a1 b1 a2 a3 a4 a5', 'after the crash: each key in its order');

# FIFO keys in turn (fifo_key_limit 2, no priorities): what a receive
# read ahead is memory too; after a crash the keys are served in turn again
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('rr', fifo => true, visibility_timeout => '1 hour');
    SELECT deliver.set_fifo_key_limit('rr', 2);
    SELECT deliver.send('rr', jsonb_build_object('n', 'hot' || i), ordering_key => 'hot') FROM generate_series(1, 4) i;
    SELECT deliver.send('rr', '{"n": "b1"}', ordering_key => 'b');
});
is(join(' ', query_list($node, q{SELECT payload->>'n' FROM deliver.receive('rr', 2)})),
	'hot1 b1', 'keys in turn: the first of each key');
crash_server($node);
is(join(' ', query_list($node, q{SELECT payload->>'n' FROM deliver.receive('rr', 10)})),
	'hot1 b1 hot2', 'after the crash: the first of each key, then the hot key up to its limit');

# the window: a receive chooses among deliver.priority_window messages
$node->append_conf('postgresql.conf', "deliver.priority_window = 4\n");
$node->reload;
ok(wait_for($node, 'SHOW deliver.priority_window', '4', 10), 'window of 4');
$node->safe_psql('postgres', q{
    SELECT deliver.send('p', jsonb_build_object('n', i), priority => 0) FROM generate_series(1, 6) i;
    SELECT deliver.send('p', jsonb_build_object('n', 'high'), priority => 9);
});
my @w;
for (1 .. 4)
{
	push @w, query_list($node, q{
        SELECT payload->>'n' FROM deliver.receive('p', 1) r, LATERAL deliver.ack('p', r.delivery_id) a});
}
is(join(' ', @w), '1 2 3 high', 'the high message went out once it was within the window');
$node->safe_psql('postgres', q{SELECT deliver.purge_queue('p')});

# the window counts the messages a receive may choose from, not those held
# back behind their FIFO key: the read goes on past a busy key (up to half
# of the queue's share, 015_lease_share), so a run of one key longer than
# the window holds up neither the keys behind it (keys in turn) nor a
# message of higher priority behind it
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('rw', fifo => true, visibility_timeout => '1 hour');
    SELECT deliver.set_fifo_key_limit('rw', 2);
    SELECT deliver.send('rw', jsonb_build_object('n', 'hot' || i), ordering_key => 'hot')
      FROM generate_series(1, 10) i;
    SELECT deliver.send('rw', '{"n": "b1"}', ordering_key => 'b');
    SELECT deliver.create_queue('pw', priorities => true, fifo => true, visibility_timeout => '1 hour');
    SELECT deliver.send('pw', jsonb_build_object('n', 'k' || i), ordering_key => 'k', priority => 0)
      FROM generate_series(1, 6) i;
    SELECT deliver.send('pw', '{"n": "high"}', priority => 9);
});
is(join(' ', query_list($node, q{SELECT payload->>'n' FROM deliver.receive('rw', 3)})),
	'hot1 b1 hot2', 'keys in turn: a key behind a run of another longer than the window goes out');
is(join(' ', query_list($node, q{SELECT payload->>'n' FROM deliver.receive('pw', 1)})),
	'high', 'priorities: a high message behind a run of one key longer than the window goes out first');

# messages waiting for a later redelivery do not fill the window either: a
# group with a window's worth of them nacked for an hour still reads on
$node->safe_psql('postgres', q{
    SELECT deliver.send('p', jsonb_build_object('n', 'failing' || i), priority => 5) FROM generate_series(1, 4) i;
    SELECT count(deliver.nack('p', r.delivery_id, retry_after => '1 hour')) FROM deliver.receive('p', 4) r;
    SELECT deliver.send('p', '{"n": "fresh"}', priority => 0);
});
is(join(' ', query_list($node, q{SELECT payload->>'n' FROM deliver.receive('p', 4)})),
	'fresh', 'four nacked for an hour, window of 4: a message sent after them goes out');
$node->safe_psql('postgres', q{SELECT deliver.purge_queue('p')});

# aging: a message of priority 0 under a steady stream of priority 9
$node->append_conf('postgresql.conf', "deliver.priority_window = 1000\ndeliver.priority_aging = 100ms\n");
$node->reload;
ok(wait_for($node, 'SHOW deliver.priority_aging', '100ms', 10), 'aging of 100 ms');
$node->safe_psql('postgres', q{
    SELECT deliver.send('p', '{"n": "low"}', priority => 0);
    SELECT deliver.send('p', '{"n": "high"}', priority => 9) FROM generate_series(1, 3);
});
my ($highs, $low_out) = (0, 0);
for my $round (1 .. 100)
{
	# each round: one more high message, then a receive of one
	my $got = query_one($node, q{
        SELECT deliver.send('p', '{"n": "high"}', priority => 9) > 0;
        SELECT payload->>'n' FROM deliver.receive('p', 1) r, LATERAL deliver.ack('p', r.delivery_id) a});
	$got = (split /\n/, $got)[-1] // '';
	if ($got eq 'low') { $low_out = $round; last; }
	$highs++ if $got eq 'high';
	usleep(50_000);
}
ok($low_out > 0, "the low message went out (round $low_out)");
cmp_ok($highs, '>=', 3, "after the high ones sent before it ($highs)");

done_testing();
