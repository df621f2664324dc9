# kill -9 of the postmaster (and of every backend with it), three times, in
# the middle of a load of producers and consumers that keep running through
# the crashes.  At the end (workers stopped, queues drained):
# - every message whose send returned is either acked by a consumer (the ack
#   returned) or received in the final drain;
# - no message is acked twice, and nothing acked comes back in the drain;
# - at-most-once: no message is ever received twice, across the crashes;
# - FIFO: per ordering key, acks and final deliveries follow the send order;
# - a second consumer group that never acked anything gets every committed
#   message exactly once in the final drain.
# The maintenance worker rotates and truncates segments all along (every
# 50 ms, a new segment every 300 ms), so crashes also land in the middle of
# rotations and truncations.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use DeliverTest;

my $node = deliver_node('crash', 'deliver.checkpoint_interval = 100ms',
	"deliver.database = 'postgres'", 'deliver.maintenance_interval = 50ms',
	'deliver.rotation_interval = 300ms');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('alo', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('amo', 'at_most_once');
    SELECT deliver.create_queue('fifo', fifo => true, visibility_timeout => '1 hour');
    SELECT deliver.create_consumer_group('alo', 'audit');
});

my $psql = 'psql -XAtq -v ON_ERROR_STOP=1';

# Producers print "id|ordering key" for each send that returned: only after
# the statement committed, only when psql succeeded.
sub producer
{
	my ($name, $queue, $keys) = @_;
	my $k = $keys ? q{ARRAY(SELECT 'k' || (i % 7) FROM generate_series(1, 20) i)} : 'NULL::text[]';
	return start_worker($node, $name, <<"EOS");
    if out=\$($psql -d "\$CONN" -c "SELECT id || '|' || coalesce(k, '') FROM unnest(deliver.send_batch('$queue', ARRAY(SELECT jsonb_build_object('w', '$name', 'i', \$I, 'j', j) FROM generate_series(1, 20) j), ordering_keys => $k), $k) AS t(id, k)" 2>/dev/null); then
        printf '%s\\n' "\$out" >> "\$OUT"
    else
        sleep 0.05
    fi
    if [ \$((I % 5)) -eq 0 ]; then
        # single sends too
        if out=\$($psql -d "\$CONN" -c "SELECT deliver.send('$queue', jsonb_build_object('w', '$name', 'i', \$I)) || '|'" 2>/dev/null); then
            printf '%s\\n' "\$out" >> "\$OUT"
        fi
    fi
EOS
}

# Consumers: receive (the lease commits), then ack in a second transaction
# and print the ids whose ack committed.
sub consumer
{
	my ($name, $queue) = @_;
	return start_worker($node, $name, <<"EOS");
    if out=\$($psql -d "\$CONN" \\
        -c "CREATE TEMP TABLE r AS SELECT message_id, delivery_id FROM deliver.receive('$queue', 15)" \\
        -c "SELECT pg_sleep(random() * 0.01)" \\
        -c "SELECT message_id FROM r WHERE deliver.ack('$queue', delivery_id)" 2>/dev/null); then
        printf '%s\\n' "\$out" | grep -v '^\$' >> "\$OUT"
    else
        sleep 0.05
    fi
EOS
}

# At-most-once consumers print what they received (after its commit).
sub amo_consumer
{
	my ($name) = @_;
	return start_worker($node, $name, <<"EOS");
    if out=\$($psql -d "\$CONN" -c "SELECT message_id FROM deliver.receive('amo', 7)" 2>/dev/null); then
        printf '%s\\n' "\$out" | grep -v '^\$' >> "\$OUT"
    else
        sleep 0.05
    fi
EOS
}

my @workers = (
	producer('p1', 'alo', 0), producer('p2', 'alo', 0),
	producer('p3', 'amo', 0), producer('p4', 'fifo', 1),
	consumer('c1', 'alo'),    consumer('c2', 'alo'),
	consumer('c3', 'fifo'),   amo_consumer('m1'),
	amo_consumer('m2'));

# let the load run, then crash in the middle of it, three times; the
# workers keep going through the crashes (their psql fails while the server
# is down, and they carry on once it is back)
my $t0 = time();
for (1 .. 600)
{
	last if worker_lines($workers[4]) > 0;
	usleep(100_000);
}
note('load running, first ack after ' . (time() - $t0) . 's');
my $crashes = 3;
for my $round (1 .. $crashes)
{
	sleep(3);
	note('segments: ' . query_one($node, q{SELECT string_agg(format('%s/%s:%s', queue_id, seg, state), ' ' ORDER BY queue_id, seg) FROM deliver.segment}));
	crash_server($node);
	note("crash $round: restarted after " . (time() - $t0) . 's');
}
sleep(1);
stop_workers(@workers);
note('workers stopped after ' . (time() - $t0) . 's');

my %out;
$out{ $_->{name} } = [ worker_lines($_) ] for @workers;
my %key_of;
for my $p (qw(p1 p2 p3 p4))
{
	$out{$p} = [ map { my ($id, $k) = split /\|/, $_, -1; $key_of{$p}{$id} = $k; $id } @{ $out{$p} } ];
}
my @sent_alo = (@{ $out{p1} }, @{ $out{p2} });
my @sent_amo = @{ $out{p3} };
my @sent_fifo = @{ $out{p4} };
my @acked_alo = (@{ $out{c1} }, @{ $out{c2} });
my @acked_fifo = @{ $out{c3} };
my @got_amo = (@{ $out{m1} }, @{ $out{m2} });
note(sprintf('with the workers: sent %d/%d/%d, acked %d/%d, at-most-once received %d',
	scalar(@sent_alo), scalar(@sent_amo), scalar(@sent_fifo),
	scalar(@acked_alo), scalar(@acked_fifo), scalar(@got_amo)));
ok(@sent_alo > 0 && @acked_alo > 0 && @got_amo > 0 && @sent_fifo > 0,
	'there was load on every queue');

# after the restart: drain
my @after_alo = drain($node, 'alo');
my @audit = drain($node, 'alo', group => 'audit');
my @after_fifo = drain($node, 'fifo');
my @after_amo = drain($node, 'amo', ack => 0);


for my $q (
	[ 'at-least-once', \@sent_alo, \@acked_alo, \@after_alo ],
	[ 'fifo', \@sent_fifo, \@acked_fifo, \@after_fifo ])
{
	my ($name, $sent, $acked, $after) = @$q;
	my @lost = missing($sent, @$acked, @$after);
	is(scalar(@lost), 0, "$name: every committed send is acked or received in the final drain")
	  or diag("lost: @lost[0 .. ($#lost < 20 ? $#lost : 19)]");
	my @again = common($acked, $after);
	is(scalar(@again), 0, "$name: nothing acked is received again in the final drain")
	  or diag("acked and received again: @again[0 .. ($#again < 20 ? $#again : 19)]");
	is(scalar(dups(@$acked)), 0, "$name: no message acked twice");
	is(scalar(dups(@$after)), 0, "$name: drained once");
	is(scalar(dups(@$sent)), 0, "$name: send returned distinct ids");
}

# the audit group never acked anything: it gets everything once
# (segments must not have been reclaimed under it)
my @audit_lost = missing(\@sent_alo, @audit);
is(scalar(@audit_lost), 0, 'second group: every committed send is delivered in the final drain')
  or diag("lost: @audit_lost[0 .. ($#audit_lost < 20 ? $#audit_lost : 19)]");
is(scalar(dups(@audit)), 0, 'second group: each message once');

# FIFO order per key: the acks (in the order they returned) and then the
# deliveries of the final drain follow the send order
my %seq;
push @{ $seq{ $key_of{p4}{$_} // '?' } }, [ 'before', $_ ] for @acked_fifo;
push @{ $seq{ $key_of{p4}{$_} // '?' } }, [ 'after', $_ ] for @after_fifo;
my @out_of_order;
for my $k (sort grep { $_ ne '' } keys %seq)
{
	my @l = @{ $seq{$k} };
	for my $i (1 .. $#l)
	{
		push @out_of_order, "key $k: $l[$i-1][1] ($l[$i-1][0]) then $l[$i][1] ($l[$i][0])"
		  if $l[$i][1] <= $l[ $i - 1 ][1];
	}
}
is(scalar(@out_of_order), 0, 'fifo: per key, acked and delivered in send order across the crashes')
  or diag(join("\n", @out_of_order[0 .. ($#out_of_order < 20 ? $#out_of_order : 19)]));
ok(scalar(grep { $_ ne '' } keys %seq) == 7, 'fifo: all seven keys were seen');

my @twice = dups(@got_amo, @after_amo);
is(scalar(@twice), 0, 'at-most-once: no message received twice across the crashes')
  or diag("received twice: @twice[0 .. ($#twice < 20 ? $#twice : 19)]");
my %sent_amo = map { $_ => 1 } @sent_amo;
# (a message whose send was in doubt at a crash may be received too)
my @lost_amo = missing(\@sent_amo, @got_amo, @after_amo);
note(scalar(@lost_amo) . ' at-most-once messages were consumed by a receive whose result was lost in a crash');
cmp_ok(scalar(@lost_amo), '<=', 2 * 7 * ($crashes + 1), 'at-most-once: at most the batches in flight at the crashes are missing');

# the queues work normally afterwards
$node->safe_psql('postgres', q{SELECT deliver.send('alo', '{"after": true}')});
is(query_one($node, q{SELECT payload->>'after' FROM deliver.receive('alo') r WHERE deliver.ack('alo', r.delivery_id)}),
	'true', 'a message sent after the recovery goes through');
is(scalar(drain($node, 'alo', group => 'audit')), 1, 'in both groups');

# a second crash with nothing running changes nothing, also once the
# worker has had time to truncate what was drained
sleep(2);
note('segments: ' . query_one($node, q{SELECT string_agg(format('%s/%s:%s', queue_id, seg, state), ' ' ORDER BY queue_id, seg) FROM deliver.segment}));
crash_server($node);
is(scalar(drain($node, 'alo')) + scalar(drain($node, 'alo', group => 'audit'))
	  + scalar(drain($node, 'fifo')) + scalar(drain($node, 'amo', ack => 0)), 0,
	'after a second crash nothing comes back');

$node->stop;
done_testing();
