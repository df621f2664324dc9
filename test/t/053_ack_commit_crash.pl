# ack_commit 'async' across crashes, next to a durable queue under the same
# load.  Producers send single messages to both queues; consumers receive
# one message and ack it in its own transaction (on the async queue those
# acks commit without waiting for the WAL flush).  The server is crashed
# twice under load (kill -9 of the postmaster and its children, then an
# immediate stop), then once more right after a burst of lone acks with
# nothing else writing.  After the drain:
# - both queues: every message whose send returned is acked or drained
#   (nothing committed is lost), drained once;
# - the durable queue: nothing acked comes back, nothing is acked twice;
# - the async queue: an acked message may come back (its ack was not
#   flushed yet): only as a redelivery of a message that was sent, and
#   the burst's last acks do come back after the crash that follows them.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use DeliverTest;

# the WAL writer flushes async commits at most every 10 s here, and no
# maintenance run writes a durable commit in between (the burst below)
my $node = deliver_node('ack_commit_crash', 'wal_writer_delay = 10s',
	'deliver.maintenance_interval = 3600000');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('dur', visibility_timeout => '1 hour');
    SELECT deliver.create_queue('asy', visibility_timeout => '1 hour', ack_commit => 'async');
});
is(query_one($node, q{SELECT string_agg(queue_name || '=' || ack_commit, ' ' ORDER BY queue_name) FROM deliver.list_queues()}),
	'asy=async dur=durable', 'one queue of each');

my $psql = 'psql -XAtq -v ON_ERROR_STOP=1';

# producers send one message per transaction, ten per connection, and
# print the id of each send that returned (committed); psql stops at the
# first failure, so what it printed before is what committed
sub producer
{
	my ($name, $queue) = @_;
	my $sends = join(' ', map { qq{-c "SELECT deliver.send('$queue', jsonb_build_object('w', '$name', 'i', \$I, 'j', $_))"} } 1 .. 10);
	return start_worker($node, $name, <<"EOS");
    out=\$($psql -d "\$CONN" $sends 2>/dev/null)
    rc=\$?
    if [ -n "\$out" ]; then printf '%s\\n' "\$out" >> "\$OUT"; fi
    if [ \$rc -ne 0 ]; then sleep 0.05; fi
EOS
}

# consumers: receive one (the lease), then ack it alone in a second
# transaction, five times per connection; print the id once the ack
# returned true
sub consumer
{
	my ($name, $queue) = @_;
	my $rounds = join(' ', map {
		qq{-c "CREATE TEMP TABLE r$_ AS SELECT message_id, delivery_id FROM deliver.receive('$queue', 1)" }
		  . qq{-c "SELECT message_id FROM r$_ WHERE deliver.ack('$queue', delivery_id)"}
	} 1 .. 5);
	return start_worker($node, $name, <<"EOS");
    out=\$($psql -d "\$CONN" $rounds 2>/dev/null)
    rc=\$?
    if [ -n "\$out" ]; then printf '%s\\n' "\$out" | grep -v '^\$' >> "\$OUT"; fi
    if [ \$rc -ne 0 ]; then sleep 0.05; fi
EOS
}

my @workers = (
	producer('pd', 'dur'), producer('pa', 'asy'),
	consumer('cd1', 'dur'), consumer('cd2', 'dur'),
	consumer('ca1', 'asy'), consumer('ca2', 'asy'));

for (1 .. 600)
{
	last if worker_lines($workers[2]) > 0 && worker_lines($workers[4]) > 0;
	usleep(100_000);
}
ok(worker_lines($workers[2]) > 0 && worker_lines($workers[4]) > 0, 'both queues are being acked');
sleep(4);
crash_server($node);
note('crash 1 (kill -9) done');
sleep(4);
$node->stop('immediate');
$node->start;
note('crash 2 (immediate stop) done');
sleep(2);
stop_workers(@workers);

my %out;
$out{ $_->{name} } = [ worker_lines($_) ] for @workers;

# a burst of lone acks with nothing else writing, then an immediate stop.
# The WAL writer is stopped (SIGSTOP) for the burst: an async commit's WAL
# then stays in the server's WAL buffers, which the immediate stop loses,
# where a WAL writer woken by a completed WAL page could have written it
# out after the last ack (or not: a race); a durable commit flushes its
# WAL itself.  The stop kills the stopped WAL writer too (SIGKILL after
# 5 s).
sub burst
{
	my ($queue, $n) = @_;
	my @sent = query_list($node,
		"SELECT unnest(deliver.send_batch('$queue', ARRAY(SELECT jsonb_build_object('burst', i) FROM generate_series(1, $n) i)))");
	my @got = query_list($node,
		"SELECT message_id || ' ' || delivery_id FROM deliver.receive('$queue', $n)");
	my @acks = map { my ($m, $d) = split / /; "SELECT deliver.ack('$queue', $d);\n" } @got;
	my $walwriter = query_one($node, q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'});
	ok($walwriter =~ /^\d+$/ && kill('STOP', $walwriter), "$queue burst: the WAL writer stopped");
	$node->safe_psql('postgres', join('', @acks));
	return (\@sent, [ map { (split / /)[0] } @got ]);
}
my ($burst_sent_dur, $burst_dur) = burst('dur', 20);
$node->stop('immediate');
$node->start;
my ($burst_sent_asy, $burst_asy) = burst('asy', 20);
$node->stop('immediate');
$node->start;
note('crash 3 (immediate stop after the bursts) done');

my @after_dur = drain($node, 'dur');
my @after_asy = drain($node, 'asy');

sub first20 { my @l = @_; return "@l[0 .. ($#l < 19 ? $#l : 19)]"; }

my @sent_dur = (@{ $out{pd} }, @$burst_sent_dur);
my @sent_asy = (@{ $out{pa} }, @$burst_sent_asy);
my @acked_dur = (@{ $out{cd1} }, @{ $out{cd2} }, @$burst_dur);
my @acked_asy = (@{ $out{ca1} }, @{ $out{ca2} }, @$burst_asy);
note(sprintf('durable: sent %d, acked %d, drained %d; async: sent %d, acked %d, drained %d',
	scalar(@sent_dur), scalar(@acked_dur), scalar(@after_dur),
	scalar(@sent_asy), scalar(@acked_asy), scalar(@after_asy)));

for my $q ([ 'durable', \@sent_dur, \@acked_dur, \@after_dur ],
	[ 'async', \@sent_asy, \@acked_asy, \@after_asy ])
{
	my ($name, $sent, $acked, $after) = @$q;
	my @lost = missing($sent, @$acked, @$after);
	is(scalar(@lost), 0, "$name: every committed send is acked or received in the final drain")
	  or diag('lost: ' . first20(@lost));
	is(scalar(dups(@$after)), 0, "$name: drained once");
	is(scalar(dups(@$sent)), 0, "$name: send returned distinct ids");
}

# durable: the promise holds
my @again_dur = common(\@acked_dur, \@after_dur);
is(scalar(@again_dur), 0, 'durable: nothing acked is received again in the final drain')
  or diag('acked and received again: ' . first20(@again_dur));
is(scalar(dups(@acked_dur)), 0, 'durable: no message acked twice');

# async: what comes back is a redelivery of a message sent (its ack was
# lost with the WAL not yet flushed), and of the burst at least its last
# acks came back (the WAL writer had not flushed them)
my @again_asy = common(\@acked_asy, \@after_asy);
note(scalar(@again_asy) . ' acked messages of the async queue came back after the crashes, '
	  . scalar(dups(@acked_asy)) . ' were acked twice during the load');
my %sent_asy = map { $_ => 1 } @sent_asy;
my @stranger = grep { !$sent_asy{$_} } @again_asy;
is(scalar(@stranger), 0, 'async: what came back was sent');
my @burst_back = common($burst_asy, \@after_asy);
note(scalar(@burst_back) . ' of the ' . scalar(@$burst_asy) . ' acks of the async burst were lost in the crash');
cmp_ok(scalar(@burst_back), '>', 0, 'async: lone acks just before a crash may be lost (their messages come back)');
is(scalar(@$burst_dur), 20, 'durable burst: 20 acked');
is(scalar(@$burst_asy), 20, 'async burst: 20 acked');
is(scalar(common($burst_dur, \@after_dur)), 0, 'durable: the burst acked just before the crash stays acked');

# both work normally afterwards; a second crash with nothing running
# changes nothing
$node->safe_psql('postgres', q{SELECT deliver.send('asy', '{"after": true}')});
is(query_one($node, q{SELECT payload->>'after' FROM deliver.receive('asy') r WHERE deliver.ack('asy', r.delivery_id)}),
	'true', 'a message sent after the recovery goes through');
$node->safe_psql('postgres', 'CHECKPOINT');
$node->stop('immediate');
$node->start;
is(scalar(drain($node, 'dur')) + scalar(drain($node, 'asy')), 0,
	'after a checkpoint and a crash nothing comes back');

$node->stop;
done_testing();
