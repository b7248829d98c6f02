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

# A database still on version 1.0: its thirteen health columns work with
# this library, and the update to 1.1 adds the others.
$node->safe_psql('postgres', 'CREATE DATABASE v10');
# Version 1.0 expected its schema to exist.
$node->safe_psql('v10', "CREATE SCHEMA pooldiag; CREATE EXTENSION pooldiag VERSION '1.0'");
is( $node->safe_psql('v10',
		q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'pooldiag.health'::regclass AND attnum > 0}),
	'13', 'version 1.0 declares 13 health columns');
is( $node->safe_psql('v10', 'SELECT worker_pid IS NOT NULL, event_buffer_size FROM pooldiag.health'),
	't|32768', 'and they work with this library');
$node->safe_psql('v10', 'ALTER EXTENSION pooldiag UPDATE');
is( $node->safe_psql('v10',
		'SELECT enforcer_pid IS NOT NULL, writer_pid = worker_pid, events_lost_in_crash FROM pooldiag.health'),
	't|t|0', 'the update to 1.1 adds the columns of the two workers');
is( $node->safe_psql('v10', q{SELECT has_table_privilege('public', 'pooldiag.health', 'SELECT')}),
	't', 'and everyone may read the view again');

# Any other declaration is refused instead of read past.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.bad_health(OUT a bigint, OUT b bigint) RETURNS record
AS 'pooldiag', 'pooldiag_health' LANGUAGE C;
});
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT * FROM public.bad_health()');
like($stderr,
	qr/ERROR:  pooldiag.get_health\(\) is declared with 2 result columns, but the pooldiag library returns 23/,
	'a declaration with another number of columns is refused');

$node->stop;
done_testing();
