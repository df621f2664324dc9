# The fault matrix: each fault is injected at a random moment into a load of
# producers and consumers on four queues (at-least-once, FIFO, exactly-once,
# at-most-once), DELIVER_FAULT_RUNS times (default 1), and the history
# checker (DeliverHistory.pm) verifies every guarantee afterwards: no
# committed send lost, nothing delivered twice where the guarantee forbids
# it, no effect applied twice, no FIFO key reordered.  The maintenance
# worker rotates and truncates segments all along.  The results go to
# faults.tsv (see scripts/reliability-doc).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use DeliverTest;
use DeliverHistory;
use Workload;

my $runs = $ENV{DELIVER_FAULT_RUNS} // 1;
my $load_seconds = $ENV{DELIVER_FAULT_LOAD} // 3;

my $node = deliver_node('faults', 'deliver.checkpoint_interval = 100ms',
	"deliver.database = 'postgres'", 'deliver.maintenance_interval = 50ms',
	'deliver.rotation_interval = 300ms', 'max_connections = 60');
my $connfile = $node->basedir . '/conn';
write_file($connfile, $node->connstr('postgres'));

# Poll for a backend matching $where (a condition on pg_stat_activity) for
# at most $seconds; returns its pid or undef.
sub find_backend
{
	my ($where, $seconds) = @_;
	my $deadline = time() + ($seconds // 3);
	while (time() < $deadline)
	{
		my ($rc, $out) = eval { $node->psql('postgres',
			"SELECT pid || '|' || application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND ($where) ORDER BY random() LIMIT 1") };
		$rc //= 1;
		return wantarray ? split(/\|/, $out) : (split /\|/, $out)[0] if $rc == 0 && $out =~ /^\d+\|/;
		usleep(5_000);
	}
	return undef;
}

sub kill_backend
{
	my ($where, $ctx) = @_;
	my $pid;
	for (1 .. 20)
	{
		$pid = find_backend($where) or return 'no backend found';
		last if kill 'KILL', $pid;    # (or it just ended: find another)
	}
	usleep(200_000);
	wait_for($node, 'SELECT 1', '1', 60) or die 'the server did not come back';
	return 'backend killed';
}

my $clients_where = q{application_name ~ '^[pc][afem][0-9]$'};

# Each fault: a name, a note, and a sub run at a random moment of the load
# (it gets the run's context and returns a note).  'options' go to the
# workload.
my @faults = (
	{ name => 'kill -9 of a backend mid-send',
	  run => sub { kill_backend("$clients_where AND state <> 'idle' AND (query LIKE '%send_batch%' OR query LIKE '%after-send%')") } },
	{ name => 'kill -9 of a backend mid-receive',
	  run => sub { kill_backend("$clients_where AND state = 'active' AND query LIKE '%deliver.receive%'") } },
	{ name => 'kill -9 of a backend mid-ack',
	  run => sub { kill_backend("$clients_where AND state <> 'idle' AND (query LIKE '%deliver.ack%' OR query LIKE '%after-ack%')") } },
	{ name => 'pg_terminate_backend of 5 clients mid-transaction',
	  run => sub {
		  my $n = 0;
		  my $deadline = time() + 10;
		  while ($n < 5 && time() < $deadline)
		  {
			  # find and terminate in one statement: the clients' sessions are short
			  $n += $node->safe_psql('postgres', qq{
                  SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (
                      SELECT pid FROM pg_stat_activity
                       WHERE $clients_where AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
                       ORDER BY random() LIMIT 1) s});
			  usleep(rand(200_000));
		  }
		  return "$n terminated";
	  } },
	{ name => 'kill -9 of the postmaster',
	  run => sub { crash_server($node); return 'restarted'; } },
	{ name => 'consumers killed between receive and ack',
	  run => sub {
		  my ($ctx) = @_;
		  my $n = 0;
		  my $deadline = time() + 10;
		  while ($n < 3 && time() < $deadline)
		  {
			  # the consumer's psql, while its backend sleeps between receive and ack
			  my ($app, $name) = find_backend("$clients_where AND state = 'active' AND query LIKE '%between-receive-and-ack%'", 2) or next;
			  my ($c) = grep { $_->{name} eq $name } @{ $ctx->{clients} };
			  my $pid = $c && client_pid($c);
			  $n++ if $pid && kill 'KILL', $pid;
			  usleep(rand(300_000));
		  }
		  return "$n consumer processes killed";
	  } },
	{ name => 'prepared transactions (send, ack) across a crash, then committed or rolled back',
	  run => \&prepared_fault },
	{ name => 'a long transaction holding xmin (with an xid) during the load',
	  start => sub {
		  my ($ctx) = @_;
		  $ctx->{holder} = $node->background_psql('postgres');
		  $ctx->{holder}->query_safe('BEGIN; SELECT pg_current_xact_id();');
	  },
	  run => sub { return 'held'; },
	  finish => sub {
		  my ($ctx) = @_;
		  $ctx->{holder}->query_safe('COMMIT');
		  $ctx->{holder}->quit;
	  } },
	{ name => 'statement_timeout (1-60 ms) cancelling receives, long polls (wait 1 s) and the pauses before acks',
	  options => { statement_timeout => 1 },
	  log_count => [ qr/canceling statement due to statement timeout/, 'statements cancelled' ],
	  run => sub { return 'timeouts on'; } },
);

# Prepared transactions: 3 prepared sends and 2 prepared acks (at-least-once
# queue), a crash of the whole server, then each one committed or rolled
# back at random.  Committed sends must be delivered, rolled-back ones
# never; committed acks finish their messages, rolled-back ones give them
# back.
sub prepared_fault
{
	my ($ctx) = @_;
	my $q = $ctx->{queues}{alo};
	my (@sends, @acks);
	for my $k (1 .. 3)
	{
		my $gid = "$ctx->{tag}_s$k";
		my @ids = split /\n/, $node->safe_psql('postgres', qq{
            BEGIN;
            SELECT unnest(deliver.send_batch('$q', ARRAY(SELECT jsonb_build_object('prepared', j) FROM generate_series(1, 5) j)));
            PREPARE TRANSACTION '$gid';});
		push @sends, [ $gid, grep { /^\d+$/ } @ids ];
	}
	for my $k (1 .. 2)
	{
		my $gid = "$ctx->{tag}_a$k";
		my @ids = split /\n/, $node->safe_psql('postgres', qq{
            BEGIN;
            SELECT message_id FROM deliver.receive('$q', 3) r WHERE deliver.ack('$q', r.delivery_id);
            PREPARE TRANSACTION '$gid';});
		push @acks, [ $gid, grep { /^\d+$/ } @ids ];
	}
	usleep(rand(500_000));
	crash_server($node);
	my ($committed, $rolled) = (0, 0);
	open my $fh, '>', $ctx->{extra} or die;
	for my $p (@sends, @acks)
	{
		my ($gid, @ids) = @$p;
		my $commit = rand() < 0.5;
		$node->safe_psql('postgres', ($commit ? 'COMMIT' : 'ROLLBACK') . " PREPARED '$gid'");
		$commit ? $committed++ : $rolled++;
		my $is_send = $gid =~ /_s\d$/;
		if ($is_send && $commit) { print $fh "0\tsend\t$_\t\t0\n" for @ids; }
		elsif ($is_send) { push @{ $ctx->{forbidden} }, @ids; }
		elsif ($commit) { print $fh "0\tack\t$_\t0\n" for @ids; }
	}
	close $fh;
	return "$committed committed, $rolled rolled back";
}

my %summary;
my $row = 0;
for my $f (@faults)
{
	$row++;
	# DELIVER_FAULTS: a pattern to run only some of the faults
	next if $ENV{DELIVER_FAULTS} && $f->{name} !~ /$ENV{DELIVER_FAULTS}/;
	my %tot = (runs => 0, sent => 0, lost => 0, duplicated => 0, reordered => 0, phantom => 0, unseen => 0,
		ack_in_doubt => 0);
	my @notes;
	for my $run (1 .. $runs)
	{
		my $tag = "f${row}r$run";
		my $dir = $node->basedir . "/$tag";
		my $q = workload_setup($node, $tag);
		my $ctx = { tag => $tag, queues => $q, forbidden => [], extra => "$dir.extra" };
		write_file($ctx->{extra}, '');
		$f->{start}->($ctx) if $f->{start};
		$ctx->{clients} = workload_start($dir, $connfile, $q, %{ $f->{options} // {} });
		my $t0 = time();
		my $log_offset = -s $node->logfile;
		# the fault lands at a random moment between 0.5 s and 2/3 of the load
		usleep(1e6 * (0.5 + rand($load_seconds * 2 / 3 - 0.5)));
		my $note = $f->{run}->($ctx);
		my $left = $load_seconds - (time() - $t0);
		usleep(1e6 * $left) if $left > 0;
		my $res = workload_finish($node, $dir, $q, $ctx->{clients},
			extra_alo => [ $ctx->{extra} ], forbidden => $ctx->{forbidden});
		$f->{finish}->($ctx) if $f->{finish};
		if ($f->{log_count})
		{
			my ($re, $what) = @{ $f->{log_count} };
			my $n = () = substr(slurp_file($node->logfile), $log_offset) =~ /$re/g;
			ok($n > 0, "$f->{name}, run $run: $n $what");
			$tot{counted} += $n;
			$tot{counted_what} = $what;
		}
		$tot{runs}++;
		for my $kind (sort keys %$res)
		{
			my $r = $res->{$kind};
			$tot{$_} += $r->{$_} // 0 for qw(sent lost duplicated reordered phantom unseen ack_in_doubt);
			diag("$f->{name}, run $run, $kind: @{ $r->{details} }")
			  if $r->{lost} || $r->{duplicated} || $r->{reordered} || $r->{phantom};
		}
		note("$f->{name}, run $run: $note; " . join(', ',
			map { "$_: sent $res->{$_}{sent} delivered $res->{$_}{delivered}" } sort keys %$res));
		push @notes, $note;
		ok($res->{alo}{sent} > 0 && $res->{eo}{sent} > 0 && $res->{amo}{sent} > 0 && $res->{fifo}{sent} > 0,
			"$f->{name}, run $run: load on every queue");
		$node->safe_psql('postgres', "SELECT deliver.drop_queue(q) FROM unnest(ARRAY['$q->{alo}', '$q->{fifo}', '$q->{eo}', '$q->{amo}']) q");
	}
	is($tot{lost}, 0, "$f->{name}: no committed send lost");
	is($tot{duplicated}, 0, "$f->{name}: nothing delivered or applied twice");
	is($tot{reordered}, 0, "$f->{name}: no FIFO key reordered");
	is($tot{phantom}, 0, "$f->{name}: no rolled-back send delivered");
	my %n;
	$n{$_}++ for @notes;
	my $notes = join('; ', map { $n{$_} > 1 ? "$_ (x$n{$_})" : $_ } sort keys %n);
	$notes .= "; $tot{counted} $tot{counted_what}" if $tot{counted_what};
	$notes .= "; at-most-once: $tot{unseen} consumed by receives whose result was lost" if $tot{unseen};
	$notes .= "; $tot{ack_in_doubt} acked by an ack whose reply was lost" if $tot{ack_in_doubt};
	write_result('faults.tsv', $f->{name}, $tot{runs}, $tot{sent}, $tot{lost}, $tot{duplicated},
		$tot{reordered}, $notes);
}

$node->stop;
done_testing();
