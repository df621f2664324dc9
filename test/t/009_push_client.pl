# The push client (deliver listen) against a real server: killed mid-stream
# and restarted (nothing lost, only unconfirmed messages again), the server
# restarted under it (it reconnects), push lag in deliver.push_metrics(),
# exactly-once with --apply under repeated kill -9, and clear errors.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use JSON::PP;
use DeliverTest;

# timezone UTC: the plugin's JSON then prints times as the client does
my $node = deliver_node('push', 'max_wal_senders = 10', 'max_replication_slots = 16', "timezone = 'UTC'");
my $conn = $node->connstr('postgres');
my $dir = $node->basedir;

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('pq');
    SELECT deliver.create_queue('other');
    SELECT deliver.create_push_subscription('pq', 'psub');
});

# send $n transactions of $per messages each to queue pq; returns nothing
sub send_tx
{
	my ($n, $per) = @_;
	$node->safe_psql('postgres', join('', map {
		"SELECT deliver.send_batch('pq', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, $per) i));\n"
	} 1 .. $n));
	return;
}

# start deliver listen with extra arguments; output to $name.out/.err
sub listen_start
{
	my ($name, @args) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start([ 'deliver', '-d', $conn, 'listen', 'psub', @args ],
		'<', \$in, '>', "$dir/$name.out", '2>>', "$dir/$name.err");
	return $h;
}

sub kill9
{
	my ($h) = @_;
	kill 'KILL', $h->{KIDS}[0]{PID};
	eval { $h->finish; };
	return;
}

sub file_lines
{
	my ($path) = @_;
	open my $fh, '<', $path or return ();
	my @l = grep { /\S/ } map { chomp; $_ } <$fh>;
	close $fh;
	return @l;
}

# message ids in a file of JSON lines
sub ids_in
{
	my ($path) = @_;
	return map { /"message_id":(\d+)/ ? $1 : () } file_lines($path);
}

sub wait_until
{
	my ($what, $seconds, $cond) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	diag("waited ${seconds}s for $what");
	return 0;
}

sub distinct { my %s = map { $_ => 1 } @_; return scalar keys %s; }

#
# 1. kill -9 mid-stream, restart: nothing lost, only unconfirmed again
#
my $handled = "$dir/handled.out";
write_file($handled, '');
# the handler appends each batch (one transaction of 10) and takes a while
my $handler = "cat >> $handled; sleep 0.05";
send_tx(20, 10);    # ids 1..200
my $h = listen_start('l1', '--exec', $handler);
ok(wait_until('50 handled messages', 60, sub { ids_in($handled) >= 50 }),
	'the client streams messages to the handler');
kill9($h);
my @before = ids_in($handled);
ok(@before < 200, 'killed mid-stream (' . scalar(@before) . ' of 200 handled)');
# the last confirmed position: what was handled and confirmed
my $confirmed = query_one($node,
	"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'psub'");
$h = listen_start('l1b', '--exec', $handler);
ok(wait_until('all 200 messages', 60, sub { distinct(ids_in($handled)) == 200 }),
	'after a restart every message arrives');
$h->signal('TERM');
$h->finish;
is($h->result(0), 0, 'the client exits 0 on SIGTERM');
my @all = ids_in($handled);
is(join(',', sort { $a <=> $b } keys %{ { map { $_ => 1 } @all } }), join(',', 1 .. 200),
	'the handler saw exactly the ids 1..200');
my $dups = @all - 200;
# a transaction handled but not confirmed yet when the client died comes
# again: at most the one batch (10 messages) that was in the handler, plus
# one whose confirmation had not reached the server
cmp_ok($dups, '<=', 20, "only unconfirmed messages came again ($dups duplicates)");
my %seen;
my @again = grep { $seen{$_}++ } @all;
ok(!grep({ $_ > $before[-1] + 10 } @again),
	'no message handled after the restart position came twice');
ok(query_one($node,
	"SELECT confirmed_flush_lsn > '$confirmed' FROM pg_replication_slots WHERE slot_name = 'psub'") eq 't',
	'the slot confirmed the handled messages');

#
# 2. the server restarts under a running client: it reconnects and goes on
#
my $printed = "$dir/l2.out";
$h = listen_start('l2', '--status-interval', '0.5');
send_tx(5, 10);    # 201..250
ok(wait_until('50 printed messages', 60, sub { distinct(ids_in($printed)) == 50 }),
	'messages are printed as JSON lines');
$node->restart;
send_tx(5, 10);    # 251..300
ok(wait_until('ids up to 300 printed', 90, sub { grep { $_ == 300 } ids_in($printed) }),
	'after a server restart the client reconnects and streams on');
like(join("\n", file_lines("$dir/l2.err")), qr/reconnecting in/, 'the client said it reconnects');
# the slot's confirmed position was saved by the shutdown checkpoint (the
# plugin marks the slot for saving): nothing confirmed before comes again
is(join(',', sort { $a <=> $b } keys %{ { map { $_ => 1 } ids_in($printed) } }), join(',', 201 .. 300),
	'the printed ids are 201..300, none confirmed before the restart');
cmp_ok(scalar(ids_in($printed)), '<=', 110, 'at most one unconfirmed transaction came again');
like((file_lines($printed))[0],
	qr/^\{"queue":"pq","message_id":201,"payload":\{"i": 1\},"headers":null,"ordering_key":null,"enqueued_at":"[^"]+","commit_lsn":"[0-9A-F]+\/[0-9A-F]+","commit_time":"[^"]+"\}$/,
	'a JSON line carries queue, id, payload, headers, key, times and commit LSN');
$h->signal('TERM');
$h->finish;

#
# 3. push lag in metrics
#
send_tx(50, 20);
my $lag = query_one($node,
	"SELECT lag_bytes FROM deliver.push_metrics() WHERE subscription_name = 'psub'");
cmp_ok($lag, '>', 50_000, "a subscription that is behind shows its lag ($lag bytes)");
my $last_commit = query_one($node, 'SELECT pg_current_wal_insert_lsn()');
$h = listen_start('l3', '--status-interval', '0.2');
ok(wait_until('1000 printed messages', 60, sub { ids_in("$dir/l3.out") >= 1000 }),
	'the client catches up');
ok(wait_until('the lag to shrink', 30, sub {
	query_one($node, "SELECT confirmed_lsn >= '$last_commit' AND lag_bytes < $lag / 10
	                    FROM deliver.push_metrics() WHERE subscription_name = 'psub'") eq 't' }),
	'after catching up the confirmed position passed the backlog and the lag shrank');
is(query_one($node, "SELECT active FROM deliver.push_metrics() WHERE subscription_name = 'psub'"),
	't', 'the subscription shows as active while the client streams');
$h->signal('TERM');
$h->finish;

#
# 4. exactly-once with --apply: effect and offset in one transaction, kill -9
#    at random points, no loss, no duplicate
#
$node->safe_psql('postgres', q{
    CREATE TABLE effects (message_id bigint NOT NULL, n int NOT NULL);
    SELECT deliver.create_push_subscription('pq', 'psub_eo');
});
$node->safe_psql('postgres', join('', map {
	"SELECT deliver.send_batch('pq', ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(1, 10) i));\n"
} 1 .. 40));    # 400 messages
my $apply = q{INSERT INTO effects SELECT ($1->>'message_id')::bigint, ($1->'payload'->>'i')::int FROM pg_sleep(0.004)};
my $kills = 0;
for my $at (60, 150, 250, 330)
{
	my $eh = IPC::Run::start([ 'deliver', '-d', $conn, 'listen', 'psub_eo', '--apply', $apply ],
		'>', "$dir/eo.out", '2>>', "$dir/eo.err");
	wait_until("$at effects", 60, sub { query_one($node, 'SELECT count(*) FROM effects') >= $at });
	usleep(int(rand(30_000)));
	kill9($eh);
	$kills++;
}
my $eh = IPC::Run::start([ 'deliver', '-d', $conn, 'listen', 'psub_eo', '--apply', $apply ],
	'>', "$dir/eo.out", '2>>', "$dir/eo.err");
ok(wait_until('400 effects', 90, sub { query_one($node, 'SELECT count(*) FROM effects') >= 400 }),
	'the applying client got through every message');
sleep 1;    # anything applied twice would show now
$eh->signal('TERM');
$eh->finish;
is(query_one($node, 'SELECT count(*) || \' \' || count(DISTINCT message_id) FROM effects'), '400 400',
	"with --apply and $kills kills: 400 effects, 400 distinct messages");
is(query_one($node, q{SELECT lsn <= (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'psub_eo')
                        FROM deliver_push_offset WHERE subscription = 'psub_eo'}), 't',
	'the server confirmed everything the stored offset covers');

#
# 5. commit records are not messages: with --commits, --apply applies and
#    --exec gets the messages only; the commit lines go to standard output.
#    What the client prints is what the plugin's JSON format says.
#
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('cq');
    SELECT deliver.create_push_subscription('cq', 'psub_apply');
    SELECT deliver.create_push_subscription('cq', 'psub_exec');
    SELECT deliver.create_push_subscription('cq', 'psub_print');
    SELECT pg_create_logical_replication_slot('cq_twin', 'deliver');
    CREATE TABLE applied (doc jsonb);
});
my $odd_key = qq{k"\\\n\t\x01\x{fc}};
$node->safe_psql('postgres', q{
    BEGIN;
    SELECT deliver.send('cq', '{"a": "x\"y", "n": [1, "two", null]}', '{"h": "\u00e9"}', E'k"\\\\\n\t\x01ü');
    SELECT deliver.send('cq', '{"b": 2}');
    COMMIT;
    SELECT deliver.send('cq', '"plain"', NULL, 'key-2');
});
my $commit_re = qr/^\{"commit_lsn":"[0-9A-F]+\/[0-9A-F]+","commit_time":"[^"]+","messages":\d+\}$/;

my ($out_a, $err_a) = ('', '');
IPC::Run::run([ 'deliver', '-d', $conn, 'listen', 'psub_apply', '--commits', '--max-messages', '3',
	'--apply', 'INSERT INTO applied VALUES ($1)' ], '>', \$out_a, '2>', \$err_a);
is($? >> 8, 0, '--apply --commits: exit 0 after 3 messages');
is(query_one($node, q{SELECT count(*) || ' ' || count(*) FILTER (WHERE doc ? 'message_id') FROM applied}),
	'3 3', '--apply --commits: 3 messages sent, 3 rows applied, each a message');
my @commits = grep { /\S/ } split /\n/, $out_a;
is(scalar(grep { $_ =~ $commit_re } @commits) . ' ' . scalar(@commits), '2 2',
	'--apply --commits: the 2 commit lines go to standard output');
like($commits[0] // '', qr/"messages":2\}$/, '--apply --commits: the first transaction had 2 messages');

my ($out_e, $err_e) = ('', '');
IPC::Run::run([ 'deliver', '-d', $conn, 'listen', 'psub_exec', '--commits', '--max-messages', '3',
	'--exec', "cat >> $dir/exec_c.out" ], '>', \$out_e, '2>', \$err_e);
is($? >> 8, 0, '--exec --commits: exit 0 after 3 messages');
my @got = file_lines("$dir/exec_c.out");
is(scalar(grep { /^\{"queue":"cq","message_id":\d+,/ } @got) . ' ' . scalar(@got), '3 3',
	'--exec --commits: the handler got the 3 messages and nothing else');
@commits = grep { /\S/ } split /\n/, $out_e;
is(scalar(grep { $_ =~ $commit_re } @commits) . ' ' . scalar(@commits), '2 2',
	'--exec --commits: the 2 commit lines go to standard output');

my ($out_p, $err_p) = ('', '');
IPC::Run::run([ 'deliver', '-d', $conn, 'listen', 'psub_print', '--commits', '--max-messages', '3' ],
	'>', \$out_p, '2>', \$err_p);
my @printed = grep { /\S/ } split /\n/, $out_p;
my @plugin = query_list($node, q{SELECT data FROM pg_logical_slot_peek_changes('cq_twin', NULL, NULL,
	'queues', 'cq', 'include_commit', 'on')});
is(scalar(@printed), 5, 'printed with --commits: 3 messages and 2 commit lines');
is(join("\n", @printed), join("\n", @plugin),
	'printed lines are the plugin\'s JSON lines, byte for byte');
my @docs = map { JSON::PP->new->utf8->decode($_) } grep { !/^\{"commit_lsn"/ } @printed;
is($docs[0]{ordering_key}, $odd_key, 'quotes, backslash, newline, tab, control and non-ASCII characters survive');
is($docs[0]{headers}{h}, "\x{e9}", 'headers arrive as JSON');
is_deeply([ map { $_->{payload} } @docs ], [ { a => 'x"y', n => [ 1, "two", undef ] }, { b => 2 }, 'plain' ],
	'the payloads arrive as JSON');
is($docs[1]{ordering_key}, undef, 'a message without a key has a null ordering_key');

#
# 6. clear errors
#
sub run_deliver
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'deliver', '-d', $conn, @args ], '>', \$out, '2>', \$err);
	return ($? >> 8, $err);
}
my ($rc, $err) = run_deliver('listen', 'nosuch');
is($rc, 3, 'missing slot: exit 3');
like($err, qr/replication slot "nosuch" does not exist/, 'missing slot: clear message');
$node->safe_psql('postgres', q{SELECT pg_create_logical_replication_slot('td', 'test_decoding')});
($rc, $err) = run_deliver('listen', 'td');
like($err, qr/uses plugin "test_decoding", not "deliver"/, 'wrong plugin: clear message');
$node->safe_psql('postgres', q{CREATE ROLE plain LOGIN});
{
	my ($out, $e) = ('', '');
	IPC::Run::run([ 'deliver', '-d', "$conn user=plain", 'listen', 'psub' ], '>', \$out, '2>', \$e);
	is($? >> 8, 3, 'no REPLICATION privilege: exit 3');
	like($e, qr/must be superuser or replication role.*\n.*REPLICATION/s, 'no privilege: clear message and hint');
}

#
# the SQL subcommands
#
my ($out, $e) = ('', '');
IPC::Run::run([ 'deliver', '-d', $conn, 'send', 'other', '{"x": 1}' ], '>', \$out, '2>', \$e);
like($out, qr/^\d+$/m, 'send prints the message id');
IPC::Run::run([ 'deliver', '-d', $conn, 'receive', 'other', '-n', '5' ], '>', \$out, '2>', \$e);
like($out, qr/"payload":\{"x": 1\}/, 'receive prints the message as JSON');
my ($did) = $out =~ /"delivery_id":(\d+)/;
IPC::Run::run([ 'deliver', '-d', $conn, 'ack', 'other', $did ], '>', \$out, '2>', \$e);
is($out, "1\n", 'ack acks it');
IPC::Run::run([ 'deliver', '-d', $conn, 'stats' ], '>', \$out, '2>', \$e);
like($out, qr/"push_subscription": "psub"/, 'stats shows the push subscriptions');
like($out, qr/"queue": "other".*"acked_total": 1/, 'stats shows the queue metrics');

$node->stop;
done_testing();
