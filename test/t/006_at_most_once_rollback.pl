# At-most-once: a message a receive returned is never handed out again, even
# when the receiving transaction rolls back or its backend is killed before
# committing, and even after a restart or a crash.  (Refusing at-most-once
# receives inside a transaction block would also keep the promise: then
# nothing is handed out in the first place.)
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

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

$node->stop;
done_testing();
