# The deliver client against hostile arguments and input: delivery ids of
# any length or range, malformed numbers, names longer than the server
# allows, option strings longer than any fixed buffer.  Each bad argument is
# refused with exit status 2 and a message naming it, before anything
# reaches the server, and nothing overflows: the client runs under
# AddressSanitizer and UBSan (cli/deliver-asan, built by scripts/test) when
# that build exists.  The parser of the replication stream's binary records
# has a test program of its own (cli/test-record), run here.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('clihostile',
	"output_plugin_libraries = 'pgoutput, test_decoding, deliver'",
	'max_wal_senders = 4', 'max_replication_slots = 4');
my $conn = $node->connstr('postgres');
my $dir = $node->basedir;
my $clidir = "$FindBin::RealBin/../../cli";
my $bin = -x "$clidir/deliver-asan" ? "$clidir/deliver-asan" : 'deliver';
note("client: $bin");
# the client exits on errors without freeing: leaks are not the point here
$ENV{ASAN_OPTIONS} = "detect_leaks=0:abort_on_error=0:log_path=$dir/asan";
$ENV{UBSAN_OPTIONS} = "print_stacktrace=1:log_path=$dir/asan";

$node->safe_psql('postgres', q{SELECT deliver.create_queue('jobs')});
$node->safe_psql('postgres', q{SELECT deliver.create_push_subscription('jobs', 'hsub')});

# run the client; returns (exit status or -signal, stdout, stderr)
sub run_cli
{
	my ($stdin, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $bin, '-d', $conn, @args ], '<', \$stdin, '>', \$out, '2>', \$err);
	my $sig = $? & 127;
	return ($sig ? -$sig : $? >> 8, $out, $err);
}

# a refused argument: exit 2, a message matching $re, nothing on stdout
sub refused
{
	my ($what, $re, @args) = @_;
	my ($rc, $out, $err) = run_cli('', @args);
	is($rc, 2, "$what: exit status 2");
	like($err, $re, "$what: the message names the argument");
	is($out, '', "$what: nothing printed");
	return;
}

#
# deliver ack: every delivery id is a decimal of at most 20 digits that fits
# a signed 64-bit integer
#
my $zeros = ('0' x 3000) . '1';
refused('3,001-digit id', qr/^deliver: ack: "0{40}\.\.\." \(3001 bytes\) is not a delivery id/m,
	'ack', 'jobs', $zeros);
refused('3,001-digit id after a good one', qr/ack: "0{40}\.\.\." \(3001 bytes\) is not a delivery id/,
	'ack', 'jobs', '42', $zeros);
refused('2^63', qr/ack: "9223372036854775808" is not a delivery id/,
	'ack', 'jobs', '9223372036854775808');
refused('2^64 (wraps in 64 bits)', qr/ack: "18446744073709551616" is not a delivery id/,
	'ack', 'jobs', '18446744073709551616');
refused('21 digits of leading zeros', qr/ack: "000000000000000000042" is not a delivery id/,
	'ack', 'jobs', '000000000000000000042');
for my $bad ('', '12abc', ' 7', '7 ', '-1', '+1', '0x10', '1e3', "7\n")
{
	(my $shown = $bad) =~ s/\n/\\n/g;
	refused("id \"$shown\"", qr/ack: ".*" is not a delivery id/s, 'ack', 'jobs', '1', $bad);
}
refused('no id', qr/ack: deliver ack QUEUE DELIVERY_ID/, 'ack', 'jobs');

# good ids reach the server intact (none of them is current: the server
# says so, naming the id it got)
my ($rc, $out, $err) = run_cli('', 'ack', 'jobs', '9223372036854775807');
is($rc, 1, 'the largest id is passed on (the server refuses it)');
like($err, qr/delivery 9223372036854775807 is not current/, 'the server got 9223372036854775807');
($rc, $out, $err) = run_cli('', 'ack', 'jobs', '00000000000000000042');
like($err, qr/delivery 42 is not current/, '20 digits with leading zeros: the server got 42');
($rc, $out, $err) = run_cli('', 'ack', 'jobs', ('9223372036854775807') x 5000);
is($rc, 1, '5,000 ids of 19 digits: passed on');
unlike($err, qr/not a delivery id|out of memory/, '5,000 ids of 19 digits: the client took them all');
# a real delivery, acked by its id padded with zeros to 20 digits
$node->safe_psql('postgres', q{SELECT deliver.send('jobs', '{"n": 1}')});
my $did = query_one($node, q{SELECT delivery_id FROM deliver.receive('jobs', 1)});
($rc, $out, $err) = run_cli('', 'ack', 'jobs', ('0' x (20 - length $did)) . $did);
is("$rc $out", "0 1\n", 'a current delivery id padded with zeros to 20 digits is acked');

#
# deliver receive: -n and --wait are numbers
#
refused('receive -n abc', qr/receive: --max "abc" is not an integer/, 'receive', 'jobs', '-n', 'abc');
refused('receive -n 5x', qr/receive: --max "5x" is not an integer/, 'receive', 'jobs', '-n', '5x');
refused('receive -n 0', qr/receive: --max "0" must be between 1 and 2147483647/, 'receive', 'jobs', '-n', '0');
refused('receive -n 2^64', qr/receive: --max "18446744073709551616" must be between 1 and/,
	'receive', 'jobs', '-n', '18446744073709551616');
refused('receive --wait "1 day"', qr/receive: --wait "1 day" is not a number of seconds/,
	'receive', 'jobs', '--wait', '1 day');
refused('receive --wait -1', qr/receive: --wait "-1" is not a number of seconds/,
	'receive', 'jobs', '--wait', '-1');
refused('receive --wait nan', qr/receive: --wait "nan" is not a number of seconds/,
	'receive', 'jobs', '--wait', 'nan');
refused('receive --wait 1e400', qr/receive: --wait "1e400" is not a number of seconds/,
	'receive', 'jobs', '--wait', '1e400');

#
# deliver send: a NUL byte in a line of standard input
#
($rc, $out, $err) = run_cli(qq{{"a": 1}\n{"b": "x\0y"}\n}, 'send', 'jobs');
is($rc, 2, 'send: a NUL byte in standard input: exit status 2');
like($err, qr/send: line 2 of standard input contains a NUL byte/, 'send: the message names the line');
is(query_one($node, q{SELECT count(*) FROM deliver.receive('jobs', 10)}), '0', 'send: nothing was sent');

#
# deliver send --priority: an integer from 0 to 9, checked before connecting
#
refused('send --priority 10', qr/send: --priority "10" must be between 0 and 9/, 'send', 'jobs', '{}', '--priority', '10');
refused('send --priority -1', qr/send: --priority "-1" must be between 0 and 9/, 'send', 'jobs', '{}', '--priority', '-1');
refused('send --priority 1.5', qr/send: --priority "1.5" is not an integer/, 'send', 'jobs', '{}', '--priority', '1.5');
refused('send --priority ""', qr/send: --priority "" is not an integer/, 'send', 'jobs', '{}', '--priority', '');
refused('send --priority of 3,000 digits', qr/send: --priority "9{40}\.\.\." \(3000 bytes\) must be between 0 and 9/,
	'send', 'jobs', '{}', '--priority', '9' x 3000);
$node->safe_psql('postgres', q{SELECT deliver.create_queue('prio', priorities => true)});
($rc, $out, $err) = run_cli('', 'send', 'prio', '{"n": "low"}');
is($rc, 0, 'send without --priority');
($rc, $out, $err) = run_cli('', 'send', 'prio', '{"n": "high"}', '--priority', '9');
is($rc, 0, 'send --priority 9');
($rc, $out, $err) = run_cli(qq{{"n": "mid1"}\n{"n": "mid2"}\n}, 'send', 'prio', '--priority', '5');
is($rc, 0, 'send --priority 5 from standard input');
is(query_one($node, q{SELECT string_agg(payload->>'n', ' ') FROM deliver.receive('prio', 10)}),
	'high mid1 mid2 low', 'the priorities arrived');
($rc, $out, $err) = run_cli('', 'send', 'jobs', '{}', '--priority', '3');
is($rc, 1, 'send --priority to a queue without priorities fails');
like($err, qr/queue "jobs" has no priorities/, 'with the server\'s message');

#
# deliver listen: names, numbers, and option strings of any length
#
my $long = 'x' x 3000;
refused('a 3,000-byte subscription name', qr/listen: "x{40}\.\.\." \(3000 bytes\) is not a subscription name/,
	'listen', $long);
refused('an upper-case subscription name', qr/listen: "Hsub" is not a subscription name/, 'listen', 'Hsub');
refused('a 3,000-byte queue name with a group', qr/listen: --queues: queue name "x{40}\.\.\." \(3000 bytes\) is too long/,
	'listen', 'hsub', '--queues', $long, '--group', 'g');
refused('--queues with no name', qr/listen: --queues ",, ," names no queue/, 'listen', 'hsub', '--queues', ',, ,');
refused('a 100-byte group name', qr/listen: --group "y{40}\.\.\." \(100 bytes\) is too long/,
	'listen', 'hsub', '--group', 'y' x 100);
refused('a 100-byte offset table name', qr/listen: --offset-table "t{40}\.\.\." \(100 bytes\) is too long/,
	'listen', 'hsub', '--apply', 'SELECT 1', '--offset-table', 't' x 100);
refused('--batch 10x', qr/listen: --batch "10x" is not an integer/, 'listen', 'hsub', '--batch', '10x');
refused('--batch 0', qr/listen: --batch "0" must be between 1 and/, 'listen', 'hsub', '--batch', '0');
refused('--batch 2^64', qr/listen: --batch "18446744073709551616" must be between 1 and/,
	'listen', 'hsub', '--batch', '18446744073709551616');
refused('--max-messages -1', qr/listen: --max-messages "-1" must be between 0 and/,
	'listen', 'hsub', '--max-messages', '-1');
refused('--status-interval abc', qr/listen: --status-interval "abc" is not a number of seconds/,
	'listen', 'hsub', '--status-interval', 'abc');
refused('--status-interval 0', qr/listen: --status-interval "0" is not a number of seconds/,
	'listen', 'hsub', '--status-interval', '0');
refused('--status-interval 1e300', qr/listen: --status-interval "1e300" is not a number of seconds/,
	'listen', 'hsub', '--status-interval', '1e300');

# many valid queue names: an option string far longer than 2 kB works
$node->safe_psql('postgres', q{SELECT deliver.send('jobs', '{"n": 2}')});
my $queues = join(',', (map { sprintf('q%02d_%s', $_, 'z' x 59) } 1 .. 40), 'jobs');
($rc, $out, $err) = run_cli('', 'listen', 'hsub', '--queues', $queues, '--max-messages', '1');
is($rc, 0, 'listen with 41 queue names (2.6 kB of options): exit 0');
like($out, qr/^\{"queue":"jobs","message_id":\d+,"payload":\{"n": 1\}/, 'listen with 41 queue names: the message arrives');

#
# the binary record parser of deliver listen: tables, every truncation, and
# 200,000 mutated records, under AddressSanitizer and UBSan
#
my $record_test = "$clidir/test-record";
ok(-x $record_test, 'the record parser test is built (make -C cli test-record)');
{
	my ($o, $e) = ('', '');
	IPC::Run::run([$record_test], '>', \$o, '2>', \$e);
	is($?, 0, 'the record parser passes its table and fuzz checks') or diag("$o$e");
	like($o, qr/^1\.\.\d+$/m, 'the record parser test ran to its end');
}

my $asan = join '', map { slurp_file($_) } glob("$dir/asan*");
is($asan, '', 'no AddressSanitizer or UBSan reports') or diag($asan);

$node->stop;
done_testing();
