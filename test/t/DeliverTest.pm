# Helpers shared by the TAP tests of deliver: a node with the extension (or
# with a router and shard databases of a cluster), small query helpers, comparisons of id lists, background workers running psql in a loop, and a
# crash of the whole server (postmaster and every backend killed with
# SIGKILL, as in a power cut).
package DeliverTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(deliver_node router_shard_node router_door query_list query_one wait_for drain
  start_worker stop_workers worker_lines worker_running crash_server write_file dups missing common);
our @EXPORT_OK = qw(stop_loops);

# Whether the node's server knows a setting (asked of the postgres binary:
# output_plugin_libraries, say, exists from PostgreSQL 15.20 on).
my %server_settings;
sub server_has_setting
{
	my ($node, $name) = @_;
	if (!%server_settings)
	{
		my ($out) = run_command([ $node->installed_command('postgres'), '--describe-config' ]);
		$server_settings{ (split /\t/)[0] } = 1 for split /\n/, $out;
	}
	return exists $server_settings{$name};
}

# The settings every test cluster shares: test/deliver.conf up to its part
# for the regression cluster only.
sub shared_conf
{
	my $file = dirname(__FILE__) . '/../deliver.conf';
	my @conf;
	open my $fh, '<', $file or die "could not read $file: $!";
	while (my $l = <$fh>)
	{
		last if $l =~ /^# -- the regression cluster only/;
		chomp $l;
		push @conf, $l if $l =~ /\S/ && $l !~ /^\s*#/;
	}
	close $fh;
	return @conf;
}

# A node with deliver preloaded, started, the extension created: the shared
# settings of test/deliver.conf, then those of the TAP nodes, then the
# test's own (@extra_conf, setting lines; the last word on a setting wins).
# A hash reference first in @extra_conf is passed to init (allows_streaming
# => 1, say).  Where the server has output_plugin_libraries, the deliver
# output plugin is allowed in it (push); an older server has no such
# restriction.
sub deliver_node
{
	my ($name, @extra_conf) = @_;
	my %init = ref $extra_conf[0] eq 'HASH' ? %{ shift @extra_conf } : ();
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	my @push = server_has_setting($node, 'output_plugin_libraries')
	  ? ("output_plugin_libraries = 'pgoutput, test_decoding, deliver'")
	  : ();
	$node->append_conf(
		'postgresql.conf', join("\n",
			shared_conf(),
			"max_connections = 40",
			"restart_after_crash = on",
			@push, @extra_conf)
		  . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION deliver');
	return $node;
}

# A node holding a cluster without starting one: databases shard0..
# (deliver and deliver_shard) and router (plproxy and deliver_router), the
# router's partitions placed over the shards; PL/Proxy connects to them as
# the superuser, as scripts/cluster's connection strings do.
#   router_shard_node(NAME, shards => 1, partitions => 2,
#                     before => SQL run first in postgres (roles, say),
#                     router_owner => ROLE owning the router database)
sub router_shard_node
{
	my ($name, %o) = @_;
	my $node = deliver_node($name);
	my $su = query_one($node, 'SELECT current_user');
	my @shards = map { "shard$_" } 0 .. ($o{shards} // 1) - 1;
	$node->safe_psql('postgres', $o{before}) if $o{before};
	$node->safe_psql('postgres', "CREATE DATABASE $_") for @shards;
	$node->safe_psql('postgres',
		'CREATE DATABASE router' . ($o{router_owner} ? " OWNER $o{router_owner}" : ''));
	$node->safe_psql($_, 'SET client_min_messages = warning;'
		  . 'CREATE EXTENSION deliver; CREATE EXTENSION deliver_shard;') for @shards;
	$node->safe_psql('router', join("\n",
		'SET client_min_messages = warning;',
		'CREATE EXTENSION plproxy;',
		'CREATE EXTENSION deliver_router;',
		'SELECT deliver_cluster.set_partitions(' . ($o{partitions} // 2) . ');',
		(map { "SELECT deliver_cluster.add_shard('s$_', 'host=" . $node->host . ' port=' . $node->port
			  . " dbname=shard$_ user=$su');" } 0 .. $#shards),
		'SELECT deliver_cluster.place_partitions();'));
	return $node;
}

# Open the router's door to role (docs/cluster.md, "Whose rights"): every
# function of deliver_cluster, the tables it reads, PL/Proxy's server.
sub router_door
{
	my ($node, $role) = @_;
	$node->safe_psql('router', qq{
		GRANT USAGE ON SCHEMA deliver_cluster TO $role;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA deliver_cluster TO $role;
		GRANT SELECT ON ALL TABLES IN SCHEMA deliver_cluster TO $role;
		GRANT USAGE ON FOREIGN SERVER deliver TO $role;
	});
	return;
}

# The lines a query prints (unaligned, tuples only), as a list.
sub query_list
{
	my ($node, $sql) = @_;
	my $out = $node->safe_psql('postgres', $sql);
	return grep { $_ ne '' } split /\n/, $out;
}

sub query_one
{
	my ($node, $sql) = @_;
	return scalar $node->safe_psql('postgres', $sql);
}

# Run a query until it prints $expected, for at most $seconds; true when it
# did.  Connection failures (a server restarting) just mean "not yet".
sub wait_for
{
	my ($node, $sql, $expected, $seconds) = @_;
	my $deadline = time() + $seconds;
	my ($out, $err);
	while (time() < $deadline)
	{
		# a psql that cannot connect (the server restarting) may exit before
		# it reads its input: IPC::Run then dies of a broken pipe
		my ($rc, $o, $e) = eval { $node->psql('postgres', $sql) };
		($rc, $e) = (1, $@) unless defined $rc;
		($out, $err) = ($o, $e);
		return 1 if $rc == 0 && defined $o && $o eq $expected;
		usleep(100_000);
	}
	diag("waited ${seconds}s for [$sql] to return [$expected]; last: [" .
		  ($out // '') . "] [" . ($err // '') . "]");
	return 0;
}

# Receive everything a queue still has (for a consumer group), acking each
# batch in the receiving statement unless it is an at-most-once queue.
# Stops after three empty receives in a row, or after $seconds.  Returns the
# list of message ids received, in order.
sub drain
{
	my ($node, $queue, %opt) = @_;
	my $seconds = $opt{seconds} // 60;
	my $group = $opt{group} // 'default';
	my $ack = $opt{ack} // 1;
	my $deadline = time() + $seconds;
	my @ids;
	my $empty = 0;
	my $sql =
	  $ack
	  ? "SELECT message_id FROM deliver.receive('$queue', 500, consumer_group => '$group') r "
	  . "WHERE deliver.ack('$queue', r.delivery_id) ORDER BY 1"
	  : "SELECT message_id FROM deliver.receive('$queue', 500, consumer_group => '$group') ORDER BY 1";
	while ($empty < 3 && time() < $deadline)
	{
		my @got = query_list($node, $sql);
		if (@got) { push @ids, @got; $empty = 0; }
		else { $empty++; usleep(100_000); }
	}
	return @ids;
}

# ids that occur more than once, in order
sub dups
{
	my %n;
	$n{$_}++ for @_;
	return grep { $n{$_} > 1 } sort { $a <=> $b } keys %n;
}

# the ids of list WANT (a reference) that are not among the rest
sub missing
{
	my ($want, @have) = @_;
	my %h = map { $_ => 1 } @have;
	return grep { !$h{$_} } @$want;
}

# the ids of list X that are also in list Y (two references)
sub common
{
	my ($x, $y) = @_;
	my %h = map { $_ => 1 } @$y;
	return grep { $h{$_} } @$x;
}

sub write_file
{
	my ($path, $text) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh $text;
	close $fh;
	return;
}

# Start a worker: a bash loop running $body until the file $stop exists.
# $body is bash text run once per iteration; it sees $CONN (the node's
# connection string), $OUT (the worker's output file) and $I (the
# iteration number).  Returns a handle for stop_workers.
sub start_worker
{
	my ($node, $name, $body, %opt) = @_;
	my $dir = $node->basedir;
	my $script = "$dir/worker_$name.sh";
	my $stop = "$dir/stop_workers";
	my $out = "$dir/worker_$name.out";
	write_file($out, '');
	write_file(
		$script, <<"EOS");
set -u
CONN="@{[ $node->connstr('postgres') ]} application_name=$name"
OUT="$out"
I=0
while [ ! -e "$stop" ]; do
    I=\$((I + 1))
$body
done
EOS
	my ($in, $so, $se) = ('', '', '');
	my $h = IPC::Run::start([ 'bash', $script ], '<', \$in, '>', \$so, '2>', \$se);
	return { name => $name, handle => $h, out => $out, stop => $stop };
}

# Stop bash loops that run until the file $stop exists (IPC::Run handles):
# make the file, wait for them (a minute at the most, then they are
# killed), remove the file.
sub stop_loops
{
	my ($stop, @handles) = @_;
	write_file($stop, '');
	my $deadline = time() + 60;
	for my $h (@handles)
	{
		while ($h->pumpable && time() < $deadline)
		{
			$h->pump_nb;
			usleep(20_000);
		}
		$h->kill_kill if $h->pumpable;
		eval { $h->finish; };
	}
	unlink $stop;
	return;
}

# Ask every worker to stop and wait for them; returns nothing.
sub stop_workers
{
	my (@workers) = @_;
	return unless @workers;
	stop_loops($workers[0]{stop}, map { $_->{handle} } @workers);
	return;
}

# Is the worker still running?
sub worker_running
{
	my ($w) = @_;
	my $h = $w->{handle};
	$h->pump_nb if $h->pumpable;
	return $h->pumpable;
}

# Lines of a worker's output file.
sub worker_lines
{
	my ($w) = @_;
	open my $fh, '<', $w->{out} or die "could not read $w->{out}: $!";
	my @l = grep { /\S/ } map { chomp; $_ } <$fh>;
	close $fh;
	return @l;
}

sub _children_of
{
	my ($pid) = @_;
	my @kids;
	opendir my $d, '/proc' or die "no /proc: $!";
	for my $p (grep { /^\d+$/ } readdir $d)
	{
		open my $fh, '<', "/proc/$p/stat" or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat;
		# pid (comm) state ppid ...
		push @kids, $p if $stat =~ /\)\s+\S+\s+(\d+)/ && $1 == $pid;
	}
	closedir $d;
	return @kids;
}

# A process that exists and is not a zombie.
sub _alive
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $stat = <$fh>;
	close $fh;
	return defined $stat && $stat =~ /\)\s+([A-Za-z])/ && $1 ne 'Z';
}

# Kill the postmaster and every process it started with SIGKILL, wait until
# they are gone, then start the server again (crash recovery from WAL).
sub crash_server
{
	my ($node) = @_;
	my $pidfile = $node->data_dir . '/postmaster.pid';
	open my $fh, '<', $pidfile or die "no $pidfile: $!";
	my $pm = <$fh>;
	close $fh;
	chomp $pm;
	# stopped, the postmaster cannot start a backend between the listing
	# of its children and their end (one left over would keep the shared
	# memory attached, and the next start would refuse to run)
	kill 'STOP', $pm;
	for (1 .. 100)
	{
		open my $st, '<', "/proc/$pm/stat" or last;
		my $line = <$st> // '';
		close $st;
		last if $line =~ /\)\s+[Tt]/;    # stopped
		usleep(10_000);
	}
	my @kids = _children_of($pm);
	$node->kill9;    # kill -9 of the postmaster
	kill 'KILL', @kids;
	my $deadline = time() + 30;
	while (time() < $deadline && grep { _alive($_) } ($pm, @kids))
	{
		usleep(50_000);
	}
	# a dead postmaster nobody reaped still answers kill(pid, 0), which the
	# next postmaster would take for a running server
	if (-e "/proc/$pm" && !_alive($pm))
	{
		unlink $pidfile;
		unlink $node->host . '/.s.PGSQL.' . $node->port . '.lock';
	}
	$node->start;
	return;
}

1;
