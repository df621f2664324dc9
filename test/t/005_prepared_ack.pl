# Two-phase commit: an ack inside a prepared transaction holds its message
# across a crash restart (not redelivered while the transaction is prepared);
# COMMIT PREPARED finishes it for good, ROLLBACK PREPARED gives it back.
# A send inside a prepared transaction appears at COMMIT PREPARED only.
# Each case has a queue of its own.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('twophase');

sub ids { return join(',', sort { $a <=> $b } @_); }

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue(q, 'exactly_once', visibility_timeout => '2 s', retry_base => '0')
      FROM unnest(ARRAY['commit', 'rollback', 'rollback_now', 'send']) q;
    CREATE TABLE effects (queue text, message_id bigint);
});

# send n messages, return their ids
sub send_n
{
	my ($queue, $n) = @_;
	return query_list($node, qq{
        SELECT deliver.send('$queue', jsonb_build_object('n', i), idempotency_key => 'k' || i)
          FROM generate_series(1, $n) i});
}

# receive, apply and ack one message in a transaction, then prepare it;
# returns the message id
sub prepare_ack
{
	my ($queue, $gid) = @_;
	return query_one($node, qq{
        BEGIN;
        WITH r AS (SELECT message_id, delivery_id FROM deliver.receive('$queue', 1)),
             e AS (INSERT INTO effects SELECT '$queue', message_id FROM r)
        SELECT message_id FROM r WHERE deliver.ack('$queue', delivery_id);
        PREPARE TRANSACTION '$gid';
    });
}

sub receive_ids
{
	my ($queue, $ack) = @_;
	return ids(query_list($node, $ack
		  ? qq{SELECT message_id FROM deliver.receive('$queue', 10) r WHERE deliver.ack('$queue', r.delivery_id)}
		  : qq{SELECT message_id FROM deliver.receive('$queue', 10)}));
}

sub effects
{
	my ($queue) = @_;
	return query_one($node, "SELECT count(*) FROM effects WHERE queue = '$queue'");
}

# 1. COMMIT PREPARED after a crash restart
my @c = send_n('commit', 4);
my $c1 = prepare_ack('commit', 'ack_commit');
is($c1, $c[0], 'a prepared transaction received and acked the first message');
is(receive_ids('commit'), ids(@c[1 .. 3]), 'the others go to another consumer (2 s leases, not acked)');

# 2. ROLLBACK PREPARED after a crash restart
my @r = send_n('rollback', 1);
my $r1 = prepare_ack('rollback', 'ack_rollback');
is($r1, $r[0], 'a prepared transaction acked a message of the second queue');

# 3. ROLLBACK PREPARED without a restart
my @n = send_n('rollback_now', 1);
my $n1 = prepare_ack('rollback_now', 'ack_rollback_now');
is($n1, $n[0], 'a prepared transaction acked a message of the third queue');

# 4. a send inside a prepared transaction
$node->safe_psql('postgres', q{
    BEGIN;
    SELECT deliver.send('send', jsonb_build_object('n', 1), idempotency_key => 'p1');
    PREPARE TRANSACTION 'send_commit';
    BEGIN;
    SELECT deliver.send('send', jsonb_build_object('n', 2), idempotency_key => 'p2');
    PREPARE TRANSACTION 'send_rollback';
});
is(receive_ids('send'), '', 'messages sent in prepared transactions are not visible');

$node->safe_psql('postgres', q{ROLLBACK PREPARED 'ack_rollback_now'});
is(effects('rollback_now'), '0', 'ROLLBACK PREPARED: the effect rolled back with the ack');
ok(wait_for($node, qq{SELECT string_agg(message_id::text, ',') FROM deliver.receive('rollback_now', 10) r WHERE deliver.ack('rollback_now', r.delivery_id)},
		$n1, 30),
	'ROLLBACK PREPARED (no restart): the message is redelivered');

# crash restart with the prepared transactions open
$node->stop('immediate');
$node->start;
is(query_one($node, q{SELECT string_agg(gid, ',' ORDER BY gid) FROM pg_prepared_xacts}),
	'ack_commit,ack_rollback,send_commit,send_rollback', 'the prepared transactions survived');

is(receive_ids('commit', 1), ids(@c[1 .. 3]),
	'after the restart the unacked ones come back, not the one acked in the prepared transaction');
is(receive_ids('rollback'), '', 'nor in the second queue');
is(receive_ids('send'), '', 'the prepared sends are still not visible');
sleep(3);    # longer than the visibility timeout
is(receive_ids('commit') . '|' . receive_ids('rollback'), '|',
	'not redelivered while the transaction is prepared, after its lease would have run out');

$node->safe_psql('postgres', q{COMMIT PREPARED 'ack_commit'});
is(effects('commit'), '1', 'COMMIT PREPARED: the effect committed with the ack');
sleep(3);
is(receive_ids('commit'), '', 'after COMMIT PREPARED it is never redelivered');

$node->safe_psql('postgres', q{ROLLBACK PREPARED 'ack_rollback'});
is(effects('rollback'), '0', 'ROLLBACK PREPARED: the effect rolled back with the ack');
my $redelivered = wait_for($node,
	qq{SELECT string_agg(message_id::text, ',') FROM deliver.receive('rollback', 10) r WHERE deliver.ack('rollback', r.delivery_id)},
	$r1, 15);
ok($redelivered, 'ROLLBACK PREPARED after a restart: the message is redelivered');

$node->safe_psql('postgres', q{COMMIT PREPARED 'send_commit'; ROLLBACK PREPARED 'send_rollback'});
is(query_one($node, q{SELECT string_agg(payload->>'n', ',') FROM deliver.receive('send', 10) r WHERE deliver.ack('send', r.delivery_id)}),
	'1', 'the committed prepared send is delivered, the rolled back one never');

$node->stop('immediate');
$node->start;
# (if the message above was not redelivered it was not acked either: then it
# comes back now, rightly)
is(join('|', map { ids(drain($node, $_, seconds => 10)) } qw(commit rollback rollback_now send)),
	$redelivered ? '|||' : "|$r1||",
	'after another crash restart nothing acked comes back');
is(query_one($node, 'SELECT count(*) FROM pg_prepared_xacts'), '0', 'no prepared transaction left');

$node->stop;
done_testing();
