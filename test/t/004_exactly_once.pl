# Exactly-once processing under failures.  Producers send with idempotency
# keys and retry until a send returns (and now and then resend a batch
# already sent); consumers apply each message's effect (a row in effects,
# no unique constraint, so a duplicate would show) and ack in the same
# transaction.  Meanwhile consumers are killed at random points: an error
# rolls their transaction back, their backend is terminated, or their
# backend is killed with SIGKILL (which resets the whole server).
# At the end: one effect per distinct message sent, none missing, none twice.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest;

my $node = deliver_node('exactly');
my $per_producer = 1500;    # keys per producer
my $batch = 10;
my $nproducers = 2;
my $total = $per_producer * $nproducers;

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('eo', 'exactly_once', visibility_timeout => '20 s',
                                max_attempts => 1000, retry_base => '0');
    CREATE TABLE effects (message_id bigint, consumer text, at timestamptz DEFAULT clock_timestamp());
});

my $psql = 'psql -XAtq -v ON_ERROR_STOP=1';
my $dir = $node->basedir;

# A producer sends keys p<n>-1 .. p<n>-<per_producer> in batches, retrying a
# batch until psql succeeds; every 7th batch it also resends the previous
# one.  It prints "key|id" for every send that returned, then exits.
sub producer
{
	my ($n) = @_;
	my $nbatches = $per_producer / $batch;
	my $send = sub {
		my ($b) = @_;
		return qq{SELECT k || '|' || id FROM unnest(ARRAY(SELECT 'p$n-' || (($b - 1) * $batch + j) FROM generate_series(1, $batch) j), deliver.send_batch('eo', ARRAY(SELECT jsonb_build_object('k', 'p$n-' || (($b - 1) * $batch + j)) FROM generate_series(1, $batch) j), idempotency_keys => ARRAY(SELECT 'p$n-' || (($b - 1) * $batch + j) FROM generate_series(1, $batch) j))) AS t(k, id)};
	};
	my $cur = $send->('$I');
	my $prev = $send->('$((I - 1))');
	return start_worker($node, "p$n", <<"EOS");
    [ \$I -gt $nbatches ] && exit 0
    until out=\$($psql -d "\$CONN" -c "$cur" 2>/dev/null); do
        [ -e "$dir/stop_workers" ] && exit 0
        sleep 0.1
    done
    printf '%s\\n' "\$out" >> "\$OUT"
    if [ \$((I % 7)) -eq 0 ]; then
        if out=\$($psql -d "\$CONN" -c "$prev" 2>/dev/null); then
            printf '%s\\n' "\$out" >> "\$OUT"
        fi
    fi
    sleep 0.08
EOS
}

# A consumer: receive, apply the effects, maybe fail, ack, commit, with
# pauses so that kills land at every point of the transaction.
sub consumer
{
	my ($name) = @_;
	my $sqlfile = "$dir/$name.sql";
	write_file($sqlfile, <<"EOS");
BEGIN;
CREATE TEMP TABLE r ON COMMIT DROP AS
    SELECT message_id, delivery_id FROM deliver.receive('eo', 5, visibility_timeout => '20 s');
SELECT pg_sleep(random() * 0.03);
INSERT INTO effects (message_id, consumer) SELECT message_id, '$name' FROM r;
SELECT pg_sleep(random() * 0.03);
SELECT 1 / (random() >= 0.1)::int AS random_failure;
SELECT deliver.ack_batch('eo', ARRAY(SELECT delivery_id FROM r)) AS acked;
SELECT pg_sleep(random() * 0.03);
SELECT 1 / (random() >= 0.05)::int AS random_failure_after_ack;
COMMIT;
EOS
	return start_worker($node, $name, <<"EOS");
    $psql -d "\$CONN" -f "$sqlfile" >/dev/null 2>&1 || sleep 0.05
EOS
}

my @producers = map { producer($_) } 1 .. $nproducers;
my @consumers = map { consumer("c$_") } 1 .. 3;

# the killer
my %done = (terminate => 0, sigkill => 0, total => 0);
my $deadline = time() + 40;
my $last_sigkill = 0;
while (time() < $deadline)
{
	usleep(100_000 + int(rand(300_000)));
	my ($rc, $out) = $node->psql('postgres', q{
        SELECT pid FROM pg_stat_activity
         WHERE application_name IN ('c1', 'c2', 'c3')
           AND state IN ('active', 'idle in transaction')
         ORDER BY random() LIMIT 1});
	next if $rc != 0 || !$out;
	if (rand() < 0.12 && $done{sigkill} < 3 && time() - $last_sigkill > 4)
	{
		kill 'KILL', $out;
		$done{sigkill}++;
		$last_sigkill = time();
		wait_for($node, 'SELECT 1', '1', 60);
	}
	else
	{
		$node->psql('postgres', "SELECT pg_terminate_backend($out)");
		$done{terminate}++;
	}
	my ($rc2, $n) = $node->psql('postgres', 'SELECT count(DISTINCT message_id) FROM effects');
	last if $rc2 == 0 && $n >= $total && !grep { worker_running($_) } @producers;
}
note("consumers terminated $done{terminate} times, killed with SIGKILL $done{sigkill} times");
ok($done{terminate} + $done{sigkill} > 5, 'consumers were killed along the way');

# let the producers finish and the consumers drain the queue
my $t = time() + 60;
usleep(100_000) while time() < $t && grep { worker_running($_) } @producers;
ok(!grep({ worker_running($_) } @producers), 'the producers sent everything');
ok(wait_for($node, 'SELECT count(DISTINCT message_id) >= ' . $total . ' FROM effects', 't', 60),
	'the consumers processed every message');
# a little more time: a duplicate would show up now
usleep(500_000);
stop_workers(@producers, @consumers);

my %id_of;
my $mismatch = 0;
for my $p (@producers)
{
	for my $line (worker_lines($p))
	{
		my ($k, $id) = split /\|/, $line;
		$mismatch++ if defined $id_of{$k} && $id_of{$k} != $id;
		$id_of{$k} = $id;
	}
}
is(scalar(keys %id_of), $total, 'every idempotency key was sent');
is($mismatch, 0, 'a resent key always returned the id of its first send');
my %distinct = map { $_ => 1 } values %id_of;
is(scalar(keys %distinct), $total, 'one message per key');

my ($count, $ndistinct) = split /\|/, query_one($node,
	'SELECT count(*), count(DISTINCT message_id) FROM effects');
is($ndistinct, $total, 'count(distinct effects) = count(distinct messages sent)');
is($count, $total, 'count(effects) = count(distinct messages sent): no duplicate effect');
my @dups = query_list($node, 'SELECT message_id FROM effects GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 20');
is("@dups", '', 'no message has two effects') or
  diag(query_one($node, 'SELECT string_agg(format($$%s %s %s$$, message_id, consumer, at), E\'\n\' ORDER BY message_id, at) FROM effects WHERE message_id IN (SELECT message_id FROM effects GROUP BY 1 HAVING count(*) > 1)'));
my %effect = map { $_ => 1 } query_list($node, 'SELECT DISTINCT message_id FROM effects');
is(scalar(grep { !$effect{$_} } keys %distinct), 0, 'every message sent has its effect');
is(scalar(grep { !$distinct{$_} } keys %effect), 0, 'no effect of a message that was not sent');
is(query_one($node, q{SELECT count(*) FROM deliver.dead_letters('eo')}), '0', 'no dead letters');
is(scalar(drain($node, 'eo')), 0, 'the queue is empty');

$node->stop;
done_testing();
