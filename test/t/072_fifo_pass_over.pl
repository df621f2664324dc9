# FIFO fairness past the held-back bound: once a consumer group holds back
# half of its queue's share of lease slots behind busy keys (64 here), the
# cursor passes over the rows of a busy key without a slot, and every later
# row of that key, so that the keys behind a long run of one key go on; it
# reads them again when the key is free.  Passed-over rows are unfinished
# messages that the restart point does not pass: a crash brings them back.
# A random mix of receives, acks and nacks keeps each key's order, its
# limit, and acks every message once.
#
# Here deliver.max_in_flight = 256, deliver.max_queues = 8 and
# deliver.max_in_flight_per_queue = 128: a group holds back at most 64.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;

my $node = deliver_node('pass_over', "deliver.max_in_flight = 256", "deliver.max_queues = 8",
	"deliver.max_in_flight_per_queue = 128", "deliver.priority_window = 16");

# receive up to $n for $group and ack them in the same statement: the payloads
sub take_acked
{
	my ($q, $n, $group) = @_;
	$group //= 'default';
	return join(',', query_list($node, "
        SELECT payload #>> '{}' FROM deliver.receive('$q', $n, consumer_group => '$group') r
         WHERE deliver.ack('$q', r.delivery_id) ORDER BY r.message_id"));
}
# everything left for $group, $n at a time, acked: the payloads in order
sub drain_all
{
	my ($q, $n, $group) = @_;
	my @got;
	while (1)
	{
		my $b = take_acked($q, $n, $group);
		last if $b eq '';
		push @got, split /,/, $b;
		last if @got > 5000;
	}
	return @got;
}
sub depth
{
	my ($q, $group) = @_;
	$group //= 'default';
	return query_one($node, "SELECT depth FROM deliver.metrics('$q') WHERE consumer_group = '$group'");
}
# a queue with a run of $n messages of key hot (h1..), then c1 and c2 (keys
# c1, c2); returns the ids of the run
sub runs
{
	my ($q, $limit, $n) = @_;
	$node->safe_psql('postgres', qq{
        SELECT deliver.create_queue('$q', fifo => true, visibility_timeout => '1 hour');
        SELECT deliver.set_fifo_key_limit('$q', $limit);
    });
	my $ids = query_one($node, qq{
        SELECT array_to_string(deliver.send_batch('$q', ARRAY(SELECT to_jsonb('h' || i) FROM generate_series(1, $n) i),
                                                  ordering_keys => array_fill('hot'::text, ARRAY[$n])), ',')});
	$node->safe_psql('postgres', qq{
        SELECT deliver.send_batch('$q', ARRAY['"c1"', '"c2"']::jsonb[], ordering_keys => ARRAY['c1', 'c2'])});
	return split /,/, $ids;
}
# are the h<i> of the list consecutive from h1 on?
sub run_in_order
{
	my @h = map { /^h(\d+)$/ ? $1 : () } @_;
	for my $i (0 .. $#h) { return 0 if $h[$i] != $i + 1; }
	return 1;
}

# limit 1: a run of 300 of one key; the keys behind it go out at once
runs('one', 1, 300);
$node->safe_psql('postgres', q{SELECT deliver.create_consumer_group('one', 'g2', start_from => 'earliest')});
is(take_acked('one', 10), 'h1,c1,c2', 'a run of 300 of one key: the keys behind it go out');
is(depth('one'), '299', 'metrics count the 299 left (held back, or passed over)');
my @rest = drain_all('one', 10);
is(scalar(@rest), 299, 'then the other 299 of the run, read again as the key comes free');
ok(run_in_order('h1', @rest), 'in their order');
is(depth('one'), '0', 'nothing left');
is(scalar(@rest = drain_all('one', 50, 'g2')), 302, 'another group of the queue: every message once');
ok(run_in_order(@rest), 'the run in its order there too');

# keys in turn (limit 2): the same
runs('two', 2, 300);
is(take_acked('two', 10), 'h1,h2,c1,c2', 'keys in turn, a run of 300: the keys behind it go out');
@rest = drain_all('two', 7);
is(scalar(@rest), 298, 'then the rest of the run');
ok(run_in_order('h1', 'h2', @rest), 'in its order');
is(depth('two'), '0', 'nothing left');

# delete_message of a passed-over message: true, and it never comes
my @ids = runs('del', 1, 100);
is(take_acked('del', 10), 'h1,c1,c2', 'a run of 100: the keys behind it go out');
is(query_one($node, "SELECT deliver.delete_message('del', $ids[89])"), 't',
	'delete_message of h90, passed over: true');
is(query_one($node, "SELECT deliver.delete_message('del', $ids[89])"), 'f', 'and false the second time');
@rest = drain_all('del', 10);
is(scalar(@rest), 98, 'the rest of the run comes, but h90');
is(join(',', grep { $_ eq 'h90' } @rest), '', 'h90 never comes');

# a crash while rows are passed over: they come back, nothing acked does
runs('crash', 1, 200);
my @before = split /,/, take_acked('crash', 10);
is(join(',', @before), 'h1,c1,c2', 'before the crash: the keys behind the run went out, acked');
for (1 .. 100)
{
	my $b = take_acked('crash', 1);
	push @before, $b if $b ne '';
}
is(scalar(@before), 103, '100 more of the run acked one by one (read again on the way)');
crash_server($node);
my @after = drain_all('crash', 10);
my %seen = map { $_ => 1 } @before;
is(scalar(grep { $seen{$_} } @after), 0, 'nothing acked before the crash came back');
is(scalar(@after), 99, 'every message not acked came back');
ok(run_in_order(@before, @after), 'the run in its order across the crash');

# (the queues above give their slots' reserves back)
$node->safe_psql('postgres', q{SELECT deliver.drop_queue(q) FROM unnest(ARRAY['one', 'two', 'del', 'crash']) q});

# random receives (1-8), acks and nacks (a fifth, retried at once) over
# 1,500 messages, a third of them of one hot key (runs far over 64), on
# queues at limits 1 and 3, one with priorities: each key's limit holds,
# its first deliveries come in its order, and every message is acked once.
# The loop is 20_fifo_order's (its tables and q20_run, read from there).
my $sql20 = slurp_file("$FindBin::RealBin/../sql/20_fifo_order.sql");
$sql20 =~ /^(CREATE TABLE q20_out .*?^END \$\$;)$/ms or die 'no q20_run in 20_fifo_order.sql';
$node->safe_psql('postgres', $1);
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue(q, fifo => true, priorities => q = 'r_prio', visibility_timeout => '1 hour',
                                max_attempts => 1000, retry_base => '0 s', retry_max => '0 s')
      FROM unnest(ARRAY['r_one', 'r_three', 'r_prio']) q;
    SELECT deliver.set_fifo_key_limit(q, 3) FROM unnest(ARRAY['r_three', 'r_prio']) q;
    SELECT setseed(0.72);
    SELECT count(deliver.send(q, jsonb_build_object('i', i),
                              ordering_key => CASE WHEN i % 10 = 0 THEN NULL
                                                   WHEN (i / 100) % 3 = 0 THEN 'hot'
                                                   ELSE 'k' || (random() * 20)::int END,
                              priority => CASE WHEN q = 'r_prio' THEN (random() * 9)::int END))
      FROM unnest(ARRAY['r_one', 'r_three', 'r_prio']) q, generate_series(1, 1500) i;
});
$node->safe_psql('postgres', "CALL q20_run('r_one', 1); CALL q20_run('r_three', 3); CALL q20_run('r_prio', 3);");
is(query_one($node, q{
    SELECT string_agg(queue || ':' || out_of_order, ' ' ORDER BY queue)
      FROM (SELECT queue, count(*) FILTER (WHERE prev > message_id) AS out_of_order
              FROM (SELECT queue, message_id, lag(message_id) OVER (PARTITION BY queue, k ORDER BY seq) AS prev
                      FROM q20_first WHERE k IS NOT NULL) x
             GROUP BY queue) y}),
	'r_one:0 r_prio:0 r_three:0', 'random runs: each key first handed out in its order');
is(query_one($node, q{
    SELECT string_agg(queue || ':' || n || '/' || d, ' ' ORDER BY queue)
      FROM (SELECT queue, count(*) AS n, count(DISTINCT message_id) AS d FROM q20_acked GROUP BY queue) x}),
	'r_one:1500/1500 r_prio:1500/1500 r_three:1500/1500', 'random runs: every message acked once');
is(query_one($node, q{SELECT string_agg(depth::text, ',') FROM deliver.metrics() WHERE queue_name LIKE 'r\_%'}),
	'0,0,0', 'random runs: nothing left');

# three sessions at once on one queue (limit 1; with a higher limit, two
# sessions may record the messages of a key they hold in either order):
# each key's first deliveries still in order, every message acked once
$node->safe_psql('postgres', q{
    SELECT deliver.create_queue('r_conc', fifo => true, visibility_timeout => '1 hour',
                                max_attempts => 1000, retry_base => '0 s', retry_max => '0 s');
    SELECT setseed(0.27);
    SELECT count(deliver.send('r_conc', jsonb_build_object('i', i),
                              ordering_key => CASE WHEN i % 10 = 0 THEN NULL
                                                   WHEN (i / 100) % 3 = 0 THEN 'hot'
                                                   ELSE 'k' || (random() * 20)::int END))
      FROM generate_series(1, 1500) i;
    ALTER TABLE q20_out ADD COLUMN who int DEFAULT pg_backend_pid();
    CREATE PROCEDURE r_conc() LANGUAGE plpgsql AS $$
    DECLARE
        r record;
        rounds int := 0;
    BEGIN
        LOOP
            rounds := rounds + 1;
            IF (SELECT count(*) FROM q20_out WHERE who = pg_backend_pid()) < 15 THEN
                FOR r IN SELECT * FROM deliver.receive('r_conc', 1 + (random() * 7)::int) LOOP
                    INSERT INTO q20_out (queue, delivery_id, message_id, k)
                    VALUES ('r_conc', r.delivery_id, r.message_id, r.ordering_key);
                    IF r.attempt = 1 THEN
                        INSERT INTO q20_first (queue, message_id, k) VALUES ('r_conc', r.message_id, r.ordering_key);
                    END IF;
                END LOOP;
            END IF;
            FOR r IN SELECT * FROM q20_out WHERE who = pg_backend_pid() ORDER BY random() LIMIT 1 + (random() * 6)::int LOOP
                IF random() < 0.2 THEN
                    PERFORM deliver.nack('r_conc', r.delivery_id, retry_after => '0 s');
                ELSE
                    PERFORM deliver.ack('r_conc', r.delivery_id);
                    INSERT INTO q20_acked VALUES ('r_conc', r.message_id);
                END IF;
                DELETE FROM q20_out WHERE delivery_id = r.delivery_id;
            END LOOP;
            COMMIT;
            EXIT WHEN (SELECT count(*) FROM q20_acked WHERE queue = 'r_conc') >= 1500
                  AND NOT EXISTS (SELECT FROM q20_out WHERE who = pg_backend_pid());
            IF rounds > 30000 THEN
                RAISE EXCEPTION 'r_conc: still running after % rounds', rounds;
            END IF;
        END LOOP;
    END $$;
});
my @sessions;
for my $i (1 .. 3)
{
	my ($o, $e) = ('', '');
	my $h = IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
			'-c', 'CALL r_conc()'], '>', \$o, '2>', \$e);
	push @sessions, [$h, \$o, \$e];
}
for my $s (@sessions)
{
	$s->[0]->finish;
	is($s->[0]->result(0) . ${ $s->[2] }, '0', 'a concurrent session ran to the end');
}
is(query_one($node, q{
    SELECT count(*) FILTER (WHERE prev > message_id)
      FROM (SELECT message_id, lag(message_id) OVER (PARTITION BY k ORDER BY seq) AS prev
              FROM q20_first WHERE queue = 'r_conc' AND k IS NOT NULL) x}),
	'0', 'three sessions: each key first handed out in its order');
is(query_one($node, q{SELECT count(*) || '/' || count(DISTINCT message_id) FROM q20_acked WHERE queue = 'r_conc'}),
	'1500/1500', 'three sessions: every message acked once');

done_testing();
