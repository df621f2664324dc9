# A history of client operations and the checker of deliver's guarantees.
#
# Client workers (bash loops running psql) record every operation that
# returned, one per line, in their history file:
#
#   <psql exit code> TAB <op> TAB <fields...>
#
#   send   message_id  key  seq     a send returned (autocommit: committed)
#   tsend  message_id  key  seq     a send inside a transaction block; it
#                                   counts only when the block committed
#                                   (psql exit code 0)
#   recv   message_id  delivery_id  a receive returned (autocommit)
#   trecv  message_id  delivery_id  a receive inside a transaction block
#   ack    message_id  time         an ack returned true (autocommit); time
#                                   is the server clock at the ack
#   tack   message_id  time         an ack inside a transaction block
#   acking message_id               the client is about to ack: if no ack
#                                   line follows, the ack is in doubt (it
#                                   may have committed after the client or
#                                   the backend died, before the reply)
#
# "key" is the ordering key (at-least-once, FIFO) or the idempotency key
# (exactly-once); "seq" is the producer's sequence number: within one key
# (one producer per key) a larger seq was sent later.
#
# After the load the test drains each queue (receive and ack until nothing
# comes) and, for exactly-once, reads the effects table.  check_history()
# then verifies the invariants of the queue's guarantee:
#
#   at-most-once   no message is received twice (load and drain);
#   at-least-once  every committed send is acked or drained (no loss);
#                  nothing acked is delivered again; no double ack;
#   exactly-once   every committed idempotency key has exactly one effect;
#                  no effect twice; one message id per key;
#   FIFO           per ordering key, acks (by server time) then the drain
#                  follow the send order.
#
# The result is a hash: sent, delivered, lost, duplicated, reordered,
# ack_in_doubt (messages neither acked nor delivered again whose ack was
# under way when the client or its backend died: that ack may have
# committed) and the first few offending cases in 'details'.  Nothing here depends on how
# the operations were run, so other clients (an HTTP gateway) can write the
# same history lines and reuse the checker.
package DeliverHistory;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest qw(write_file stop_loops);
use Time::HiRes qw(usleep time);

our @EXPORT = qw(start_client stop_clients client_pid read_history
  drain_queue check_history write_result psql_cmd);

our $psql = 'psql -XAtq -v ON_ERROR_STOP=1';
our @running;    # clients started and not stopped yet

sub psql_cmd { return $psql; }

# Start a client: a bash loop that runs the psql script $sql (with :i set to
# the iteration number) until the file "$dir/stop" exists, connecting to the
# connection string found in the file $connfile at each iteration (so that
# the test can point clients at another server).  The output lines of each
# run, prefixed with psql's exit code, go to the history file.  The pid of
# the running psql is kept in "$dir/<name>.pid" (to kill the client).
# Options: retry => 1 repeats an iteration until psql succeeds (a producer
# that retries a failed send); pause => seconds between iterations.
sub start_client
{
	my ($dir, $connfile, $name, $sql, %opt) = @_;
	my $hist = "$dir/$name.hist";
	my $pause = $opt{pause} // 0.01;
	write_file("$dir/$name.sql", $sql);
	write_file($hist, '');
	my $retry = $opt{retry} ? 'if [ $rc -ne 0 ]; then I=$((I - 1)); fi' : '';
	write_file("$dir/$name.sh", <<"EOS");
set -u
I=0
while [ ! -e "$dir/stop" ]; do
    I=\$((I + 1))
    $psql -F '	' -d "\$(cat '$connfile') application_name=$name" -v i=\$I \\
        -f '$dir/$name.sql' > '$dir/$name.out' 2>/dev/null &
    echo \$! > '$dir/$name.pid'
    wait \$!
    rc=\$?
    sed "s/^/\$rc\t/" '$dir/$name.out' >> '$hist'
    $retry
    if [ \$rc -ne 0 ]; then sleep 0.05; fi
    sleep $pause
done
EOS
	my ($in, $so, $se) = ('', '', '');
	my $h = IPC::Run::start([ 'bash', "$dir/$name.sh" ], '<', \$in, '>', \$so, '2>', \$se);
	my $c = { name => $name, handle => $h, dir => $dir, hist => $hist };
	push @running, $c;
	return $c;
}

# clients still running when a test dies are killed with it
END
{
	for my $c (@running)
	{
		eval { $c->{handle}->kill_kill if $c->{handle}->pumpable; };
	}
}

# The pid of the client's running psql (or undef).
sub client_pid
{
	my ($c) = @_;
	open my $fh, '<', "$c->{dir}/$c->{name}.pid" or return undef;
	my $pid = <$fh>;
	close $fh;
	chomp $pid if defined $pid;
	return $pid;
}

sub stop_clients
{
	my (@clients) = @_;
	return unless @clients;
	stop_loops("$clients[0]{dir}/stop", map { $_->{handle} } @clients);
	my %stopped = map { $_ => 1 } @clients;
	@running = grep { !$stopped{$_} } @running;
	return;
}

# Parse history files into a hash of lists:
#   sent     [ [id, key, seq], ... ]   committed sends
#   received [ id, ... ]               committed receives, in file order
#   acked    [ [id, time], ... ]       committed acks
#   trace    { id => [ 'client op ...', ... ] }  each message's receives and
#            acks, by client (the file's name), for the checker to show
sub read_history
{
	my (@files) = @_;
	my %h = (sent => [], received => [], acked => [], acking => [], trace => {});
	for my $f (@files)
	{
		my ($client) = $f =~ m{([^/]+?)(?:\.hist)?$};
		open my $fh, '<', $f or die "could not read $f: $!";
		while (my $l = <$fh>)
		{
			chomp $l;
			my ($rc, $op, @v) = split /\t/, $l, -1;
			next unless defined $op;
			if ($op =~ /^t(send|recv|ack)$/)
			{
				next unless $rc eq '0';
				$op = $1;
			}
			push @{ $h{trace}{ $v[0] } }, join(' ', $client, $op, grep { defined && $_ ne '' } @v[ 1 .. $#v ]) . " (rc $rc)"
			  if $op =~ /^(recv|ack|acking)$/ && defined $v[0];
			if ($op eq 'send') { push @{ $h{sent} }, [ $v[0], $v[1] // '', $v[2] // 0 ]; }
			elsif ($op eq 'recv') { push @{ $h{received} }, $v[0]; }
			elsif ($op eq 'ack') { push @{ $h{acked} }, [ $v[0], $v[1] // 0 ]; }
			elsif ($op eq 'acking') { push @{ $h{acking} }, $v[0]; }
		}
		close $fh;
	}
	return \%h;
}

# Receive (and ack, unless at-most-once) until nothing more comes for
# $quiet seconds, or $seconds passed.  For exactly-once, applies the effect
# (a row in $effects) and acks in one transaction.  Returns the ids in the
# order they were delivered.  Survives a server that is still restarting.
sub drain_queue
{
	my ($node, $queue, %opt) = @_;
	my $guarantee = $opt{guarantee} // 'at_least_once';
	my $group = $opt{group} // 'default';
	my $quiet = $opt{quiet} // 3;
	my $deadline = time() + ($opt{seconds} // 60);
	my $sql;
	if ($guarantee eq 'at_most_once')
	{
		$sql = "SELECT message_id FROM deliver.receive('$queue', 200, consumer_group => '$group')";
	}
	elsif ($guarantee eq 'exactly_once')
	{
		$sql = "BEGIN; CREATE TEMP TABLE r ON COMMIT DROP AS SELECT message_id, delivery_id, payload->>'k' AS k "
		  . "FROM deliver.receive('$queue', 200, consumer_group => '$group'); "
		  . "INSERT INTO $opt{effects} (queue, message_id, k) SELECT '$queue', message_id, k FROM r; "
		  . "SELECT message_id FROM r WHERE deliver.ack('$queue', delivery_id) ORDER BY 1; COMMIT;";
	}
	else
	{
		$sql = "SELECT message_id FROM deliver.receive('$queue', 200, consumer_group => '$group') r "
		  . "WHERE deliver.ack('$queue', r.delivery_id)";
	}
	my @ids;
	my $errors = 0;
	my $last = time();
	while (time() < $deadline && time() - $last < $quiet)
	{
		my ($rc, $out, $err) = $node->psql('postgres', $sql);
		if ($rc != 0)
		{
			# an error is not "nothing more": say it, wait, try again
			note("drain of $queue: $err") if $errors++ < 5;
			$last = time();
			usleep(100_000);
			next;
		}
		my @got = grep { /^\d+$/ } split /\n/, $out;
		if (@got) { push @ids, @got; $last = time(); }
		else { usleep(100_000); }
	}
	return @ids;
}

sub _first { my ($n, @l) = @_; return @l > $n ? @l[ 0 .. $n - 1 ] : @l; }

# Check one queue's history.  %a: guarantee, fifo (bool), history (from
# read_history), drained (ids), effects ({ key => count } for exactly-once,
# with the message id of each effect in effect_ids { key => { id => 1 } }).
sub check_history
{
	my (%a) = @_;
	my $g = $a{guarantee};
	my $h = $a{history};
	my @drained = @{ $a{drained} // [] };
	my %r = (sent => 0, delivered => 0, lost => 0, duplicated => 0, reordered => 0, details => []);
	my $detail = sub { push @{ $r{details} }, @_ if @{ $r{details} } < 20; };

	my %sent;    # id => [key, seq]
	my %id_of_key;
	for my $s (@{ $h->{sent} })
	{
		my ($id, $key, $seq) = @$s;
		if ($g eq 'exactly_once' && $key ne '' && exists $id_of_key{$key} && $id_of_key{$key} ne $id)
		{
			$r{duplicated}++;
			$detail->("key $key sent as two messages $id_of_key{$key} and $id");
		}
		$id_of_key{$key} = $id if $key ne '';
		$sent{$id} = [ $key, $seq ];
	}
	$r{sent} = scalar keys %sent;

	if ($g eq 'at_most_once')
	{
		my %n;
		$n{$_}++ for @{ $h->{received} }, @drained;
		for my $id (sort { $a <=> $b } keys %n)
		{
			next if $n{$id} < 2;
			$r{duplicated}++;
			$detail->("message $id received $n{$id} times");
		}
		$r{delivered} = scalar keys %n;
		# a message received by a receive whose result never reached its
		# client is gone: at-most-once allows it; count it as a note
		$r{unseen} = scalar grep { !$n{$_} } keys %sent;
		return \%r;
	}

	my %acks;
	$acks{ $_->[0] }++ for @{ $h->{acked} };
	for my $id (sort { $a <=> $b } keys %acks)
	{
		next if $acks{$id} < 2;
		$r{duplicated}++;
		$detail->("message $id acked $acks{$id} times: " . join('; ', @{ $h->{trace}{$id} // [] }));
	}
	my %drained;
	$drained{$_}++ for @drained;
	for my $id (sort { $a <=> $b } keys %drained)
	{
		if ($acks{$id})
		{
			$r{duplicated}++;
			$detail->("message $id acked, then delivered again: " . join('; ', @{ $h->{trace}{$id} // [] }));
		}
		elsif ($drained{$id} > 1)
		{
			$r{duplicated}++;
			$detail->("message $id drained $drained{$id} times");
		}
	}
	$r{delivered} = scalar keys %{ { %acks, %drained } };

	if ($g eq 'exactly_once')
	{
		my $eff = $a{effects} // {};
		for my $key (sort keys %id_of_key)
		{
			my $n = $eff->{$key} // 0;
			if ($n == 0)
			{
				$r{lost}++;
				$detail->("key $key (message $id_of_key{$key}): no effect");
			}
		}
		for my $key (sort keys %$eff)
		{
			next if $eff->{$key} < 2;
			$r{duplicated}++;
			$detail->("key $key: $eff->{$key} effects");
		}
	}
	else
	{
		# an ack whose reply never came may have committed: such a message
		# is not lost if it does not come back (counted apart)
		my %doubt = map { $_ => 1 } @{ $h->{acking} };
		for my $id (sort { $a <=> $b } keys %sent)
		{
			next if $acks{$id} || $drained{$id};
			if ($doubt{$id}) { $r{ack_in_doubt}++; next; }
			$r{lost}++;
			$detail->("message $id: send committed, never acked nor drained");
		}
	}

	if ($a{fifo})
	{
		# per key: acks by server time, then the drain, in send order
		my %seq;
		my $i = 0;
		my @events = sort { $a->[0] <=> $b->[0] } map { [ $_->[1], $_->[0] ] } @{ $h->{acked} };
		push @events, map { [ 9e18, $_ ] } @drained;
		my %last;
		for my $e (@events)
		{
			my $s = $sent{ $e->[1] } or next;    # a send in doubt: no known position
			my ($key, $seq) = @$s;
			next if $key eq '';
			if (exists $last{$key} && $seq < $last{$key}[0])
			{
				$r{reordered}++;
				$detail->("key $key: message $e->[1] (seq $seq) after message $last{$key}[1] (seq $last{$key}[0])");
			}
			$last{$key} = [ $seq, $e->[1] ] if !exists $last{$key} || $seq > $last{$key}[0];
		}
	}
	return \%r;
}

# Append one line (tab-separated fields) to the results file $name in
# DELIVER_RESULTS_DIR (or the TAP test's tmp_check directory).  The doc
# generator (scripts/reliability-doc) turns these files into tables.
sub write_result
{
	my ($name, @fields) = @_;
	my $dir = $ENV{DELIVER_RESULTS_DIR} // $PostgreSQL::Test::Utils::tmp_check;
	mkdir $dir unless -d $dir;
	open my $fh, '>>', "$dir/$name" or die "could not write $dir/$name: $!";
	print $fh join("\t", map { my $x = $_ // ''; $x =~ s/[\t\n]/ /g; $x } @fields), "\n";
	close $fh;
	return;
}

1;
