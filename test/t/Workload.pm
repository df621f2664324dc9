# The client workload of the fault matrix and the failover test: for one
# run, four queues (at-least-once, FIFO, exactly-once, at-most-once), their
# producers and consumers (DeliverHistory clients), the final drain and the
# checker's verdict per queue.
package Workload;

use strict;
use warnings;

use Exporter 'import';
use DeliverHistory;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(workload_setup workload_start workload_finish);

# Create the queues of run $tag (and an effects table).
sub workload_setup
{
	my ($node, $tag) = @_;
	my %q = map { $_ => "${tag}_$_" } qw(alo fifo eo amo);
	$node->safe_psql('postgres', qq{
        SELECT deliver.create_queue('$q{alo}', visibility_timeout => '1 s', max_attempts => 1000, retry_base => '0');
        SELECT deliver.create_queue('$q{fifo}', fifo => true, visibility_timeout => '1 s', max_attempts => 1000, retry_base => '0');
        SELECT deliver.create_queue('$q{eo}', 'exactly_once', visibility_timeout => '1 s', max_attempts => 1000, retry_base => '0');
        SELECT deliver.create_queue('$q{amo}', 'at_most_once');
        CREATE TABLE IF NOT EXISTS effects (queue text, message_id bigint, k text);
    });
	return \%q;
}

# Start the clients of run $tag in $dir (history files there).  Options:
# statement_timeout => 1: consumers set a random statement_timeout (1 to
# 60 ms) far below their long poll's wait, so that timeouts cancel
# statements however busy the queues are: long polls of an empty queue,
# receives at work, and the pauses between receive and ack.
sub workload_start
{
	my ($dir, $connfile, $q, %opt) = @_;
	mkdir $dir;
	my $set = $opt{statement_timeout}
	  ? "SELECT set_config('statement_timeout', (1 + floor(random() * 60))::int || 'ms', false) \\g /dev/null\n"
	  : '';
	my $wait = $opt{statement_timeout} ? '1 s' : '300 ms';
	my @c;
	# at-least-once and FIFO producers: batches of 10 in a transaction with
	# a pause before COMMIT, then one single send; 5 keys per producer
	for my $p ([ 'pa1', $q->{alo} ], [ 'pa2', $q->{alo} ], [ 'pf1', $q->{fifo} ])
	{
		my ($name, $queue) = @$p;
		push @c, start_client($dir, $connfile, $name, <<"EOS");
BEGIN;
WITH b AS (SELECT j, '$name-k' || (j % 5) AS k FROM generate_series(1, 10) j),
     s AS (SELECT deliver.send_batch('$queue', ARRAY(SELECT jsonb_build_object('s', :i * 1000 + j) FROM b ORDER BY j),
                                     ordering_keys => ARRAY(SELECT k FROM b ORDER BY j)) AS ids)
SELECT 'tsend', s.ids[b.j], b.k, :i * 1000 + b.j FROM s, b ORDER BY b.j;
/* after-send */ SELECT pg_sleep(random() * 0.05) \\g /dev/null
COMMIT;
SELECT 'send', deliver.send('$queue', jsonb_build_object('s', :i * 1000 + 999), ordering_key => '$name-k0'), '$name-k0', :i * 1000 + 999;
EOS
	}
	# exactly-once producer: idempotency keys, retries a batch until it
	# commits, and every third batch resends the previous one
	push @c, start_client($dir, $connfile, 'pe1', <<"EOS", retry => 1);
BEGIN;
WITH b AS (SELECT j, 'pe1-' || (:i * 1000 + j) AS k FROM generate_series(1, 10) j),
     s AS (SELECT deliver.send_batch('$q->{eo}', ARRAY(SELECT jsonb_build_object('k', k) FROM b ORDER BY j),
                                     idempotency_keys => ARRAY(SELECT k FROM b ORDER BY j)) AS ids)
SELECT 'tsend', s.ids[b.j], b.k, :i * 1000 + b.j FROM s, b ORDER BY b.j;
/* after-send */ SELECT pg_sleep(random() * 0.05) \\g /dev/null
COMMIT;
SELECT :i % 3 = 0 AND :i > 1 AS resend \\gset
\\if :resend
WITH b AS (SELECT j, 'pe1-' || ((:i - 1) * 1000 + j) AS k FROM generate_series(1, 10) j),
     s AS (SELECT deliver.send_batch('$q->{eo}', ARRAY(SELECT jsonb_build_object('k', k) FROM b ORDER BY j),
                                     idempotency_keys => ARRAY(SELECT k FROM b ORDER BY j)) AS ids)
SELECT 'send', s.ids[b.j], b.k, (:i - 1) * 1000 + b.j FROM s, b ORDER BY b.j;
\\endif
EOS
	push @c, start_client($dir, $connfile, 'pm1', <<"EOS");
SELECT 'send', id, '', 0 FROM unnest(deliver.send_batch('$q->{amo}', ARRAY(SELECT jsonb_build_object('j', j) FROM generate_series(1, 10) j))) id;
EOS
	# at-least-once and FIFO consumers: receive (long poll), pause, ack
	for my $p ([ 'ca1', $q->{alo} ], [ 'ca2', $q->{alo} ], [ 'cf1', $q->{fifo} ], [ 'cf2', $q->{fifo} ])
	{
		my ($name, $queue) = @$p;
		push @c, start_client($dir, $connfile, $name, <<"EOS");
$set
CREATE TEMP TABLE r AS SELECT message_id, delivery_id FROM deliver.receive('$queue', 10, wait => '$wait');
SELECT 'recv', message_id, delivery_id FROM r;
/* between-receive-and-ack */ SELECT pg_sleep(random() * 0.05) \\g /dev/null
SELECT 'acking', message_id FROM r;
SELECT 'ack', message_id, extract(epoch FROM clock_timestamp()) FROM r WHERE deliver.ack('$queue', delivery_id);
EOS
	}
	# exactly-once consumer: receive, effect, ack, commit
	push @c, start_client($dir, $connfile, 'ce1', <<"EOS");
$set
BEGIN;
CREATE TEMP TABLE r ON COMMIT DROP AS
    SELECT message_id, delivery_id, payload->>'k' AS k FROM deliver.receive('$q->{eo}', 5, wait => '$wait');
SELECT 'trecv', message_id, delivery_id FROM r;
INSERT INTO effects (queue, message_id, k) SELECT '$q->{eo}', message_id, k FROM r;
/* between-receive-and-ack */ SELECT pg_sleep(random() * 0.05) \\g /dev/null
SELECT 'tack', message_id, extract(epoch FROM clock_timestamp()) FROM r WHERE deliver.ack('$q->{eo}', delivery_id);
/* after-ack */ SELECT pg_sleep(random() * 0.05) \\g /dev/null
COMMIT;
EOS
	push @c, start_client($dir, $connfile, 'cm1', <<"EOS");
$set
SELECT 'recv', message_id, 0 FROM deliver.receive('$q->{amo}', 5, wait => '$wait');
EOS
	return \@c;
}

# Stop the clients, drain every queue, check each history.  $extra is a
# history file written by the test itself (prepared transactions), and
# $forbidden a list of message ids that must never be delivered (sends
# rolled back).  Returns { queue kind => checker result } and a summary.
sub workload_finish
{
	my ($node, $dir, $q, $clients, %opt) = @_;
	stop_clients(@$clients);
	my %files;
	for my $c (@$clients)
	{
		my $kind =
		    $c->{name} =~ /^[pc]a/ ? 'alo'
		  : $c->{name} =~ /^[pc]f/ ? 'fifo'
		  : $c->{name} =~ /^[pc]e/ ? 'eo'
		  :                          'amo';
		push @{ $files{$kind} }, $c->{hist};
	}
	push @{ $files{alo} }, @{ $opt{extra_alo} // [] };
	my %res;
	my %guarantee = (alo => 'at_least_once', fifo => 'at_least_once', eo => 'exactly_once', amo => 'at_most_once');
	for my $kind (qw(alo fifo eo amo))
	{
		my $h = read_history(@{ $files{$kind} });
		# nothing leased by a dead consumer stays hidden longer than the
		# visibility timeout (1 s): drain until 1.5 s pass without a message
		my @drained = drain_queue($node, $q->{$kind}, guarantee => $guarantee{$kind}, effects => 'effects',
			quiet => $kind eq 'amo' ? 0.5 : 1.5);
		my %eff;
		if ($kind eq 'eo')
		{
			for my $l (split /\n/, $node->safe_psql('postgres',
				"SELECT k, count(*) FROM effects WHERE queue = '$q->{eo}' GROUP BY k"))
			{
				my ($k, $n) = split /\|/, $l;
				$eff{$k} = $n;
			}
		}
		my $r = check_history(guarantee => $guarantee{$kind}, fifo => $kind eq 'fifo',
			history => $h, drained => \@drained, effects => \%eff);
		if ($opt{forbidden} && $kind eq 'alo')
		{
			my %f = map { $_ => 1 } @{ $opt{forbidden} };
			my @ph = grep { $f{$_} } (@{ $h->{received} }, map({ $_->[0] } @{ $h->{acked} }), @drained);
			$r->{phantom} = scalar @ph;
			push @{ $r->{details} }, map { "message $_ of a rolled-back send delivered" } @ph;
		}
		if ($r->{lost})
		{
			# say more: the queue's state, and whether the missing messages
			# come later
			diag("$q->{$kind} metrics: " . $node->safe_psql('postgres', "SELECT * FROM deliver.metrics('$q->{$kind}')"));
			my @late = drain_queue($node, $q->{$kind}, guarantee => $guarantee{$kind}, effects => 'effects', quiet => 5);
			diag("$q->{$kind}: " . scalar(@late) . " more delivered after 5 s: @late[0 .. (@late > 20 ? 19 : $#late)]");
		}
		$res{$kind} = $r;
	}
	return \%res;
}

1;
