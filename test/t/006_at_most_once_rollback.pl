# At-most-once: a message a receive returned is never handed out again, even
# when the receiving transaction rolls back or its backend is killed before
# committing, and even after a restart or a crash.  A receive from an
# at-most-once queue must be a transaction of its own: it is refused inside
# a transaction block (explicit, or several statements in one query
# string), after other statements of a pipeline, and from functions, DO
# blocks and procedures; the first statement of a pipeline commits at once,
# so a statement failing after it in the same pipeline (libpq pipeline
# mode, test/tools/pipeline.c) cannot bring its messages back.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use DeliverHistory qw(write_result);
use IPC::Run;

my $node = deliver_node('amo');

$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('amo', 'at_most_once');
    SELECT deliver.create_queue('amo2', 'at_most_once');
    SELECT deliver.send('amo', '{"n": 1}');
    SELECT deliver.send('amo2', '{"n": 1}');
});

my %handed_out;    # queue => list of message ids some receive returned

# a receive inside a transaction that rolls back
my ($rc, $out, $err) = $node->psql('postgres', q{
    BEGIN;
    SELECT message_id FROM deliver.receive('amo', 10);
    ROLLBACK;
});
note("receive in a transaction block: rc $rc, out [$out], err [$err]");
push @{ $handed_out{amo} }, grep { /^\d+$/ } split /\n/, $out;

is(query_one($node, q{SELECT count(*) FROM deliver.receive('amo', 10) WHERE message_id IN (}
		  . join(',', @{ $handed_out{amo} }, 0) . ')'),
	'0', 'a message returned by a rolled-back receive is not handed out again');

# a receive whose backend is killed (SIGKILL) before its transaction commits
my $s = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_safe('BEGIN');
my ($o2) = $s->query(q{SELECT message_id FROM deliver.receive('amo2', 10)});
push @{ $handed_out{amo2} }, grep { /^\d+$/ } split /\n/, ($o2 // '');
note("amo2: the victim received [@{ $handed_out{amo2} }]");
kill 'KILL', $pid;
ok(wait_for($node, 'SELECT 1', '1', 60), 'the server is back after the backend crash');
eval { $s->quit; };

sub again
{
	my ($queue) = @_;
	my @ids = @{ $handed_out{$queue} // [] };
	return query_one($node, qq{SELECT count(*) FROM deliver.receive('$queue', 10) WHERE message_id IN (}
		  . join(',', @ids, 0) . ')');
}

is(again('amo2'), '0', 'a message returned to a backend that was then killed is not handed out again');

$node->restart;
is(again('amo'), '0', 'after a restart the message of the rolled-back receive is still not handed out again');
is(again('amo2'), '0', 'nor the one of the killed backend');

$node->stop('immediate');
$node->start;
is(again('amo') + again('amo2'), 0, 'nor after crash recovery');

# a pipeline: receive, then a statement that fails, then Sync
my $tool = PostgreSQL::Test::Utils::tempdir() . '/pipeline';
my $inc = `pg_config --includedir`;
chomp $inc;
system('cc', '-Wall', '-Werror', "-I$inc", '-o', $tool, "$FindBin::RealBin/../tools/pipeline.c",
	"-L" . `pg_config --libdir` =~ s/\s+$//r, '-lpq') == 0 or die "could not build $tool";
my $conninfo = $node->connstr('postgres');
sub pipeline
{
	my $out = '';
	IPC::Run::run([ $tool, $conninfo, @_ ], '>', \$out) or die "pipeline failed";
	return split /\n/, $out;
}
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('amo3', 'at_most_once');
    SELECT deliver.send_batch('amo3', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[]);
});
my @r = pipeline(q{SELECT message_id FROM deliver.receive('amo3', 1)}, q{SELECT 1/0});
like($r[0], qr/^ok 1 \d+$/, 'the first statement of the pipeline received a message');
like($r[1], qr/^error 22012/, 'the next statement failed');
my ($piped) = $r[0] =~ /^ok 1 (\d+)$/;
$handed_out{amo3} = [$piped // 0];
# a crash right away: only what was committed counts
$node->stop('immediate');
$node->start;
my $again = again('amo3');
is($again, '0',
	'after a crash, the message the pipeline received is not handed out again: the receive committed before the failing statement ran');
write_result('hostile.tsv', 'pipeline', 'at-most-once receive, then a failing statement, one pipeline; crash',
	'not redelivered', $again eq '0' ? 'not redelivered' : 'redelivered', $again eq '0' ? 'pass' : 'FAIL');

# refused wherever it would not be a transaction of its own (again() above
# took the rest: two new messages wait)
$node->safe_psql('postgres', q{SELECT deliver.send_batch('amo3', ARRAY['{"n": 4}', '{"n": 5}']::jsonb[])});
@r = pipeline(q{SELECT 1}, q{SELECT message_id FROM deliver.receive('amo3', 1)});
like($r[1], qr/^error 25001 .*after other statements of a pipeline/, 'a receive after another statement of a pipeline is refused');
my @refused = (
	[ 'two statements in one query string', q{SELECT 1; SELECT * FROM deliver.receive('amo3');} ],
	[ 'a DO block', q{DO $$ BEGIN PERFORM deliver.receive('amo3'); END $$;} ],
	[ 'a function', q{CREATE FUNCTION pg_temp.take() RETURNS SETOF bigint LANGUAGE plpgsql AS
                        $$ BEGIN RETURN QUERY SELECT message_id FROM deliver.receive('amo3'); END $$;
                      SELECT * FROM pg_temp.take();} ],
	[ 'a SQL function', q{CREATE FUNCTION pg_temp.take2() RETURNS SETOF bigint LANGUAGE sql VOLATILE AS
                        $$ SELECT message_id FROM deliver.receive('amo3'); SELECT 1::bigint $$;
                      SELECT * FROM pg_temp.take2();} ],
	[ 'a procedure', q{CREATE PROCEDURE pg_temp.proc() LANGUAGE plpgsql AS
                        $$ BEGIN PERFORM deliver.receive('amo3'); END $$;
                      CALL pg_temp.proc();} ],
	[ 'a subtransaction', q{BEGIN; SAVEPOINT s; SELECT * FROM deliver.receive('amo3');} ]);
for my $c (@refused)
{
	my ($what, $sql) = @$c;
	my ($rc2, $out2, $err2) = $node->psql('postgres', $what eq 'two statements in one query string'
		  ? undef : $sql, $what eq 'two statements in one query string' ? (extra_params => [ '-c', $sql ]) : ());
	my $ok = like($err2, qr/receive from at_most_once queue "amo3" cannot run/, "refused in $what");
	write_result('hostile.tsv', 'pipeline', "at-most-once receive in $what", '25001',
		$err2 =~ /ERROR:\s+(?:[0-9A-Z]{5}:\s+)?receive from at_most_once/ ? '25001' : 'accepted', $ok ? 'pass' : 'FAIL');
}
is(query_one($node, q{SELECT depth FROM deliver.metrics('amo3')}), '2',
	'the refused receives took nothing: the two other messages are still there');

$node->stop;
done_testing();
