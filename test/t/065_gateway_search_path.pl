# deliverd's statements name Postgres' own functions without a schema
# (json_build_object, coalesce, json_agg...), and it runs them as the
# caller's role.  A database owner who is not a superuser owns schema
# public, on the default search_path: a json_build_object(text, boolean) of
# theirs there is a better match for json_build_object('acked', ...) than
# pg_catalog's variadic one, and would run with the rights of every role
# that acks through the gateway.  The gateway's connections pin
# search_path to pg_catalog, pg_temp before preparing anything.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DeliverTest;
use GatewayTest;

my $node = deliver_node('gw_search_path');
$node->safe_psql('postgres', q{
    CREATE ROLE dbo LOGIN;
    CREATE ROLE app NOLOGIN;
    CREATE DATABASE gwdb OWNER dbo;
});
$node->safe_psql('gwdb', q{
    CREATE EXTENSION deliver;
    SELECT deliver.create_queue('q');
    SELECT deliver.grant_queue('q', 'app', 'all');
});

# the database owner's functions, better matches than pg_catalog's for
# what the send, receive and ack routes build their answers with
$node->safe_psql('gwdb', q{
    SET ROLE dbo;
    CREATE FUNCTION public.json_build_object(text, text) RETURNS json LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the json_build_object of schema public ran as %', current_user;
    END $$;
    CREATE FUNCTION public.json_build_object(text, boolean) RETURNS json LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the json_build_object of schema public ran as %', current_user;
    END $$;
    CREATE FUNCTION public.to_json(timestamptz) RETURNS json LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the to_json of schema public ran as %', current_user;
    END $$;
});

my $tok = 'app-token-0123456789abcdef';
my $gw = gateway_start($node, tokens => { $tok => 'app' },
	conf => { conninfo => "'" . $node->connstr('gwdb') . "'" });

my ($st, $body) = gw_req($gw, 'POST', '/v1/queues/q/messages', token => $tok, body => { payload => { n => 1 } });
is($st, 201, 'send: 201') or diag explain $body;
ok(ref $body eq 'HASH' && defined $body->{message_id}, 'send: its message id') or diag explain $body;

($st, $body) = gw_req($gw, 'POST', '/v1/queues/q/receive?max=1', token => $tok);
is($st, 200, 'receive: 200') or diag explain $body;
my $d = ref $body eq 'ARRAY' && @$body ? $body->[0]{delivery_id} : undef;
ok(defined $d, 'receive: the message') or diag explain $body;

($st, $body) = gw_req($gw, 'POST', "/v1/queues/q/deliveries/" . ($d // 0) . "/ack", token => $tok);
is($st, 200, 'ack: 200') or diag explain $body;
is(ref $body eq 'HASH' ? $body->{acked} : undef, 1, 'ack: acked');

is(gw_stop($gw), 0, 'deliverd stops cleanly');
is(gw_sanitizer_reports($gw), '', 'no sanitizer reports');

$node->stop;
done_testing();
