# pooldiag works only from shared_preload_libraries.  Loaded any other way,
# every SQL function must fail with a clear error and a hint, and nothing
# else may break.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->start;

# The extension can be created (so that a preload can follow), but its
# functions refuse to run.
$node->safe_psql('postgres', 'CREATE EXTENSION pooldiag');

foreach my $query (
	'SELECT * FROM pooldiag.sessions',
	'SELECT * FROM pooldiag.health',
	'SELECT * FROM pooldiag.recent_events()',
	'SELECT pooldiag.drain()')
{
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $query);
	isnt($ret, 0, "'$query' fails without shared_preload_libraries");
	like(
		$stderr,
		qr/ERROR:  pooldiag must be loaded via "shared_preload_libraries"/,
		"'$query' says why");
	like(
		$stderr,
		qr/HINT:  Add pooldiag to "shared_preload_libraries" in postgresql.conf and restart the server./,
		"'$query' says how to fix it");
}

# A plain LOAD does not install hooks or break the session.
is($node->safe_psql('postgres', "LOAD 'pooldiag'; SELECT 1"),
	'1', 'LOAD leaves the session working');

# With the library preloaded the same functions work.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pooldiag'");
$node->restart;
is($node->safe_psql('postgres',
		'SELECT count(*) FROM pooldiag.sessions WHERE pid = pg_backend_pid()'),
	'1', 'works once preloaded');

$node->stop;
done_testing();
