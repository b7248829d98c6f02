# Dumps: every dump that works without pooldiag works with it, and
# restores.  A database owner who is not a superuser dumps a database that
# has pooldiag (and events in it) in plain and custom format; a superuser
# restores both into new databases of a server that preloads pooldiag.  A
# superuser's dump restores too.  pooldiag.events is not part of logical
# dumps (README: "Dump and restore").
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('dump', create_extension => 0);
$node->safe_psql(
	'postgres', q{
CREATE ROLE dbowner LOGIN;
CREATE DATABASE appdb OWNER dbowner;
});
$node->safe_psql('appdb', 'CREATE EXTENSION pooldiag');
# The application's own objects, owned by the database owner.
$node->safe_psql(
	'appdb', q{
SET ROLE dbowner;
CREATE TABLE public.orders (id int PRIMARY KEY, item text);
INSERT INTO public.orders SELECT i, 'item ' || i FROM generate_series(1, 100) i;
COMMENT ON TABLE public.orders IS 'the application''s data';
});

# The worker writes its events into appdb.
$node->append_conf('postgresql.conf', "pooldiag.database = 'appdb'");
$node->restart;
{
	local $ENV{PGAPPNAME} = 'dumped-app';
	$node->safe_psql('appdb', 'SELECT 1') for 1 .. 5;
}
is( $node->poll_query_until(
		'appdb',
		q{SELECT count(*) FROM pooldiag.events WHERE application_name = 'dumped-app'},
		'10'),
	1, 'the worker wrote events into the dumped database');

my $dir = $node->basedir;
my @as_owner = ('-U', 'dbowner');

#
# The database owner, not a superuser, dumps it.
#
$node->command_ok(
	[ 'pg_dump', @as_owner, '-Fp', '-f', "$dir/owner.sql", '-d', $node->connstr('appdb') ],
	'the database owner can pg_dump it in plain format');
$node->command_ok(
	[ 'pg_dump', @as_owner, '-Fc', '-f', "$dir/owner.dump", '-d', $node->connstr('appdb') ],
	'the database owner can pg_dump it in custom format');
$node->command_ok(
	[ 'pg_dump', @as_owner, '--data-only', '-f', "$dir/owner-data.sql", '-d', $node->connstr('appdb') ],
	'the database owner can pg_dump its data only');

my $plain = -e "$dir/owner.sql" ? slurp_file("$dir/owner.sql") : '';
unlike($plain, qr/COPY pooldiag\.events/, 'events are not part of the dump');
like($plain, qr/CREATE EXTENSION IF NOT EXISTS pooldiag WITH SCHEMA pg_catalog;/,
	'the extension is');
unlike($plain, qr/CREATE SCHEMA pooldiag/, 'its schema is created by the extension, not by the dump');

#
# A superuser restores both into new databases.
#
sub check_restored
{
	my ($db, $how) = @_;
	is( $node->safe_psql(
			$db,
			q{SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pooldiag')
			  || '=' || (SELECT default_version FROM pg_available_extensions WHERE name = 'pooldiag')
			  || ' ' || (SELECT count(*) FROM public.orders)
			  || ' ' || (SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.orders'::regclass)
			  || ' ' || (SELECT count(*) FROM pooldiag.events)
			  || ' ' || (SELECT count(*) > 0 FROM pooldiag.sessions)}),
		'1.3=1.3 100 dbowner 0 true',
		"$how: the extension works and the application's data is back");
}

$node->safe_psql('postgres', 'CREATE DATABASE restored_plain OWNER dbowner');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$dir/owner.sql", '-d', $node->connstr('restored_plain') ],
	'the plain dump restores with psql, without an error');
check_restored('restored_plain', 'plain');

$node->safe_psql('postgres', 'CREATE DATABASE restored_custom OWNER dbowner');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored_custom'), "$dir/owner.dump" ],
	'the custom dump restores with pg_restore, without an error');
check_restored('restored_custom', 'custom');

# The database owner restores it too, into a database where a superuser
# created the extension beforehand; only COMMENT ON EXTENSION needs the
# extension's owner, so the comments are left out.
$node->safe_psql('postgres', 'CREATE DATABASE restored_by_owner OWNER dbowner');
$node->safe_psql('restored_by_owner', 'CREATE EXTENSION pooldiag');
$node->command_ok(
	[ 'pg_restore', @as_owner, '--no-comments', '--exit-on-error', '-d', $node->connstr('restored_by_owner'), "$dir/owner.dump" ],
	'the database owner restores the custom dump where the extension exists');
check_restored('restored_by_owner', 'by the owner');

#
# A superuser's own dump and restore.
#
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', "$dir/super.dump", '-d', $node->connstr('appdb') ],
	'a superuser can pg_dump it');
$node->safe_psql('postgres', 'CREATE DATABASE restored_super');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored_super'), "$dir/super.dump" ],
	'and restore it');
check_restored('restored_super', 'superuser');

# The dumped database's events are untouched, and the worker goes on.
is($node->safe_psql('appdb', 'SELECT worker_state FROM pooldiag.health'),
	'running', 'the worker kept running');

$node->stop;
done_testing();
