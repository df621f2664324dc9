# The TAP harness: a cluster with deliver preloaded creates the extension.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'deliver'");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION deliver');
is($node->safe_psql('postgres',
        "SELECT extversion FROM pg_extension WHERE extname = 'deliver'"),
    '0.1', 'extension is installed');

$node->stop;
done_testing();
