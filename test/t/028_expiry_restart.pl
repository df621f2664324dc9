# Message expiry across restarts: messages that expire while the server is
# down are not delivered after it comes back, whether they were never
# received, leased, or behind a queue's message_ttl; they are dead letters
# (reason 'expired'), once, and stay finished across further restarts and
# a crash.  Messages that did not expire are delivered once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use DeliverTest;

my $node = deliver_node('expiry_restart');

sub ids { return join(',', sort { $a <=> $b } @_); }
sub range { my ($lo, $hi) = @_; return join(',', $lo .. $hi); }

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('alo', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('amo', 'at_most_once');
    SELECT deliver.create_queue('ttl', message_ttl => '3 seconds', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('drop', on_expire => 'drop');
    SELECT deliver.create_consumer_group('alo', 'second');
});

# the deadline every expiring message gets, as a Unix time
my $deadline = query_one($node, q{SELECT extract(epoch FROM clock_timestamp() + interval '3 seconds')});

# alo: 1-10 expire at the deadline, 11-20 never, 21-25 expire and are
# leased when the server stops, 26-30 are leased and do not expire
$node->safe_psql('postgres', qq{
    SELECT deliver.send_batch('alo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 10) i),
                              expires_at => to_timestamp($deadline));
    SELECT deliver.send_batch('alo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(11, 20) i));
    SELECT deliver.send_batch('alo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(21, 25) i),
                              expires_at => to_timestamp($deadline));
    SELECT deliver.send_batch('alo', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(26, 30) i));
    SELECT deliver.send('amo', jsonb_build_object('n', i), expires_at => to_timestamp($deadline))
      FROM generate_series(1, 5) i;
    SELECT deliver.send('amo', jsonb_build_object('n', i)) FROM generate_series(6, 10) i;
    SELECT deliver.send_batch('ttl', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 10) i));
    SELECT deliver.send_batch('drop', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 5) i),
                              expires_at => to_timestamp($deadline));
    SELECT deliver.send('drop', '{"n": 6}');
});
# the default group leases all 30 (none has expired yet) and acks none
is(query_one($node, q{SELECT count(*) FROM deliver.receive('alo', 30)}), '30',
    'before the restart: 30 messages received (and left leased) in the default group');

$node->stop;
# the deadline passes while the server is down
usleep(100_000) while time() < $deadline + 0.5;
$node->start;

# the default group: every leased message comes back unless it expired
is(ids(drain($node, 'alo')), join(',', range(11, 20), range(26, 30)),
    'default group: after the restart only the unexpired messages are delivered');
is(query_one($node, q{
        SELECT string_agg(message_id::text || ':' || attempts || ':' || reason, ',' ORDER BY message_id)
          FROM deliver.dead_letters('alo', 'default')}),
    join(',', map { "$_:0:expired" } (1 .. 10, 21 .. 25)),
    'default group: the expired ones are dead letters with reason expired');
# the second group never received any: the same split
is(ids(drain($node, 'alo', group => 'second')), join(',', range(11, 20), range(26, 30)),
    'second group: only the unexpired messages are delivered');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('alo', 'second') WHERE reason = 'expired'}),
    '15', 'second group: 15 expired dead letters');

is(ids(query_list($node, q{SELECT message_id FROM deliver.receive('amo', 100) ORDER BY 1})),
    range(6, 10), 'at_most_once: only the unexpired messages are delivered');
is(query_one($node, q{SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM deliver.dead_letters('amo')}),
    range(1, 5), 'at_most_once: the expired ones are dead letters');

is(ids(drain($node, 'ttl')), '', 'message_ttl: every message outlived the ttl while the server was down');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('ttl') WHERE reason = 'expired'}),
    '10', 'message_ttl: 10 expired dead letters');

is(ids(drain($node, 'drop')), '6', 'on_expire drop: only the unexpired message is delivered');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('drop')}), '0',
    'on_expire drop: no dead letters');

# a clean restart and a crash: nothing comes back, no dead letter twice
$node->restart;
is(join('|', map { ids(drain($node, $_)) } qw(alo ttl drop)) . '|' . ids(drain($node, 'alo', group => 'second')),
    '|||', 'after another restart nothing comes back');
$node->stop('immediate');
$node->start;
is(join('|', map { ids(drain($node, $_)) } qw(alo ttl drop)) . '|' . ids(drain($node, 'alo', group => 'second'))
    . '|' . query_one($node, q{SELECT count(*) FROM deliver.receive('amo', 100)}),
    '||||0', 'after a crash nothing comes back');
is(query_one($node, q{
        SELECT string_agg(n::text, ',' ORDER BY q) FROM (
            SELECT 'alo' AS q, count(*) AS n FROM deliver.dead_letters('alo', NULL, 1000)
            UNION ALL SELECT 'amo', count(*) FROM deliver.dead_letters('amo')
            UNION ALL SELECT 'drop', count(*) FROM deliver.dead_letters('drop')
            UNION ALL SELECT 'ttl', count(*) FROM deliver.dead_letters('ttl')) x}),
    '30,5,0,10', 'each expired message is a dead letter once per group');

$node->stop;
done_testing();
