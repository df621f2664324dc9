# The gateway's request router, query parameter parsing, SQLSTATE mapping,
# JSON string output and JWT verification under libFuzzer (with ASan and
# UBSan) for a bounded time, starting from the seed corpus in
# gateway/fuzz/corpus.  Any crash, sanitizer report, failed assertion or
# leak fails the test.
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Copy;
use IPC::Run;

my $gw = "$FindBin::RealBin/../../gateway";
my $fuzzer = "$gw/fuzz-router";
my $seconds = $ENV{DELIVERD_FUZZ_SECONDS} // 30;
ok(-x $fuzzer, 'the fuzz target is built (make -C gateway fuzz-router)');

my $work = PostgreSQL::Test::Utils::tempdir();
mkdir "$work/corpus" or die "mkdir: $!";
my @seeds = glob("$gw/fuzz/corpus/*");
ok(@seeds >= 3, 'a seed corpus');
copy($_, "$work/corpus/") or die "copy $_: $!" for @seeds;

my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ $fuzzer, "-max_total_time=$seconds", '-timeout=5', '-rss_limit_mb=1024',
		'-print_final_stats=1', "-artifact_prefix=$work/", "$work/corpus" ],
	'>', \$out, '2>', \$err);
my ($runs) = $err =~ /stat::number_of_executed_units:\s*(\d+)/;
ok($ok, "the fuzzer ran $seconds s without a finding") or diag(substr($err, -4000));
ok(($runs // 0) > 10_000, 'it executed many inputs (' . ($runs // 0) . ')');
my @found = glob("$work/crash-* $work/leak-* $work/timeout-* $work/oom-*");
is_deeply(\@found, [], 'no crash, leak, timeout or oom inputs');
done_testing();
