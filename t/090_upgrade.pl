# Upgrades: a database at version 1.0, with a history of events and
# settings, is updated with ALTER EXTENSION pooldiag UPDATE.  Every row and
# setting must survive, new ids must continue above the old ones, the new
# objects must work, and the result must be the same extension, object for
# object, as a fresh install of the newest version.  Keep this test for every
# later version: install the oldest version and update step by step.  Part 5
# installs 1.1 and updates it to 1.2 while the writer keeps writing, and then
# to 1.3, whose new objects (pools, capacity, metrics, recommend) must work.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('upgrade', create_extension => 0);

# Everything that defines the extension as SQL sees it, one line per fact,
# without OIDs, so that two databases can be compared as text.
my $surface_sql = q{
WITH ext AS (SELECT e.* FROM pg_extension e WHERE e.extname = 'pooldiag'),
m AS (SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
      WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
        AND d.deptype = 'e'),
rels AS (SELECT c.oid AS reloid, c.* FROM pg_class c
         JOIN m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid)
SELECT line FROM (
  SELECT 'extension ' || extname || ' ' || extversion
         || ' schema=' || extnamespace::regnamespace
         || ' relocatable=' || extrelocatable
         || ' config=' || coalesce(extconfig::regclass[]::text, '-')
         || ' condition=' || coalesce(extcondition::text, '-') AS line
  FROM ext
  UNION ALL
  SELECT 'extension depends on ' || pg_describe_object(refclassid, refobjid, refobjsubid)
         || ' (' || deptype::text || ')'
  FROM pg_depend d, ext
  WHERE d.classid = 'pg_extension'::regclass AND d.objid = ext.oid
  UNION ALL
  SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
         || ' comment=' || coalesce(obj_description(objid, classid::regclass::text), '-')
  FROM m
  UNION ALL
  SELECT 'schema ' || nspname || ' owned by the extension owner: '
         || (nspowner = (SELECT extowner FROM ext)) || ' acl=' || coalesce(nspacl::text, '-')
  FROM pg_namespace WHERE nspname = 'pooldiag'
  UNION ALL
  SELECT 'relation ' || relname || ' kind=' || relkind::text
         || ' owned by the extension owner: ' || (relowner = (SELECT extowner FROM ext))
         || ' acl=' || coalesce(relacl::text, '-')
         || ' rls=' || relrowsecurity || '/' || relforcerowsecurity
         || ' persistence=' || relpersistence::text
  FROM rels
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || ' notnull=' || a.attnotnull || ' identity=' || a.attidentity::text
         || ' generated=' || a.attgenerated::text
         || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
         || ' acl=' || coalesce(a.attacl::text, '-')
         || ' comment=' || coalesce(col_description(c.oid, a.attnum), '-')
  FROM rels c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
  UNION ALL
  SELECT 'view ' || relname || ': ' || pg_get_viewdef(reloid) FROM rels WHERE relkind = 'v'
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN rels ON co.conrelid = rels.reloid
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN rels ON i.indrelid = rels.reloid
  UNION ALL
  SELECT 'trigger ' || tgname FROM pg_trigger t JOIN rels ON t.tgrelid = rels.reloid
  UNION ALL
  SELECT 'rule ' || rulename FROM pg_rewrite r JOIN rels ON r.ev_class = rels.reloid
  WHERE rulename <> '_RETURN'
  UNION ALL
  SELECT 'policy ' || polname || ' on ' || polrelid::regclass || ' cmd=' || polcmd::text
         || ' permissive=' || polpermissive || ' roles=' || polroles::regrole[]::text
         || ' using=' || coalesce(pg_get_expr(polqual, polrelid), '-')
         || ' check=' || coalesce(pg_get_expr(polwithcheck, polrelid), '-')
  FROM pg_policy p JOIN rels ON p.polrelid = rels.reloid
  UNION ALL
  SELECT 'sequence ' || seqrelid::regclass || ' ' || seqtypid::regtype || ' start=' || seqstart
         || ' increment=' || seqincrement || ' min=' || seqmin || ' max=' || seqmax
         || ' cache=' || seqcache || ' cycle=' || seqcycle
  FROM pg_sequence s JOIN rels ON s.seqrelid = rels.reloid
  UNION ALL
  SELECT 'dependency ' || pg_describe_object(d.classid, d.objid, d.objsubid) || ' -> '
         || pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || ' (' || d.deptype::text || ')'
  FROM pg_depend d JOIN rels ON d.classid = 'pg_class'::regclass AND d.objid = rels.reloid
  WHERE d.refclassid = 'pg_class'::regclass
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '-')
         || ' owned by the extension owner: ' || (p.proowner = (SELECT extowner FROM ext))
  FROM pg_proc p JOIN m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
  UNION ALL
  SELECT 'initial privileges of ' || pg_describe_object(classoid, objoid, ip.objsubid) || ': '
         || initprivs::text || ' (' || privtype::text || ')'
  FROM pg_init_privs ip JOIN m ON ip.classoid = m.classid AND ip.objoid = m.objid
) s ORDER BY line;
};

# is() for two surfaces, showing only the lines that differ.
sub same_surface
{
	my ($got, $expected, $name) = @_;
	my %in_got = map { $_ => 1 } split /\n/, $got;
	my %in_expected = map { $_ => 1 } split /\n/, $expected;
	my @missing = grep { !$in_got{$_} } split /\n/, $expected;
	my @extra = grep { !$in_expected{$_} } split /\n/, $got;
	ok($got eq $expected, $name)
	  or diag(join("\n", (map { "missing: $_" } @missing), (map { "extra:   $_" } @extra)));
	return;
}

# The newest version, installed fresh, is the reference.
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pooldiag');
my $fresh_version = $node->safe_psql('fresh',
	q{SELECT extversion FROM pg_extension WHERE extname = 'pooldiag'});
my $fresh_surface = $node->safe_psql('fresh', $surface_sql);

#
# 1. Version 1.0 as it was installed: its control file said
#    "schema = pooldiag", so CREATE EXTENSION created that schema (or took
#    the one that existed) and recorded it as the extension's schema.  This
#    control file says pg_catalog, so the test creates the schema, installs
#    1.0 from its script, and records the schema as 1.0's control file did.
#
$node->safe_psql(
	'postgres', q{
CREATE SCHEMA pooldiag;
CREATE EXTENSION pooldiag VERSION '1.0';
UPDATE pg_extension SET extnamespace = 'pooldiag'::regnamespace
 WHERE extname = 'pooldiag';
INSERT INTO pg_depend (classid, objid, objsubid, refclassid, refobjid, refobjsubid, deptype)
SELECT 'pg_extension'::regclass, oid, 0, 'pg_namespace'::regclass,
       'pooldiag'::regnamespace, 0, 'n'
  FROM pg_extension WHERE extname = 'pooldiag';
});
is( $node->safe_psql(
		'postgres',
		q{SELECT extversion || ' ' || extnamespace::regnamespace || ' ' || extconfig::regclass[]::text
		  FROM pg_extension WHERE extname = 'pooldiag'}),
	'1.0 pooldiag {pooldiag.events}',
	'version 1.0 is installed as its control file did it');

# A history written by 1.0, with the ids 1.0 gave (from ring positions):
# rows of every kind, NULLs included.
$node->safe_psql(
	'postgres', q{
INSERT INTO pooldiag.events (event_id, event_time, event, reason, pid,
    backend_start, datname, usename, application_name, client_addr, detail)
SELECT i,
       now() - interval '1 day' + i * interval '1 second',
       (ARRAY['connect', 'disconnect', 'checkin', 'rejected', 'terminate'])[1 + i % 5],
       CASE i % 5 WHEN 1 THEN 'client_eof' WHEN 3 THEN 'too_many_connections'
                  WHEN 4 THEN 'idle_timeout' END,
       10000 + i,
       CASE WHEN i % 7 <> 0 THEN now() - interval '2 days' END,
       'postgres', 'history_user', 'app-' || i % 3,
       CASE WHEN i % 2 = 0 THEN ('10.0.0.' || i % 250)::inet END,
       CASE WHEN i % 5 = 1 THEN jsonb_build_object('checkouts', i, 'age_ms', i * 1.5) END
FROM generate_series(1, 500) i;
});

# Settings users made, which the update must not touch.
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
ALTER ROLE app SET pooldiag.idle_timeout = '5min';
ALTER DATABASE postgres SET pooldiag.log_checkouts = 'all';
ALTER ROLE app IN DATABASE postgres SET pooldiag.max_lifetime = '1h';
GRANT EXECUTE ON FUNCTION pooldiag.drain(name, name, text) TO app;
});
my $settings_sql = q{
SELECT string_agg(coalesce(setrole::regrole::text, '-') || '@' || setdatabase || '=' || setconfig::text, ' ' ORDER BY 1)
FROM pg_db_role_setting};
my $settings_before = $node->safe_psql('postgres', $settings_sql);

# Sessions come and go while the old SQL is in place: their events are
# queued, and the library does not write them into a table it does not know.
{
	local $ENV{PGAPPNAME} = 'before-update';
	$node->safe_psql('postgres', 'SELECT 1') for 1 .. 5;
}
is(wait_for_value($node, 'SELECT worker_state FROM pooldiag.health', 'needs-update'),
	'needs-update', 'the worker waits for ALTER EXTENSION UPDATE');
my @update_warnings = (slurp_file($node->logfile) =~
	  /WARNING:  pooldiag writer cannot write events: extension "pooldiag" in database "postgres" is at version 1\.0/g);
is(scalar(@update_warnings), 1, 'it says so once');
like(slurp_file($node->logfile),
	qr/HINT:  Run ALTER EXTENSION pooldiag UPDATE in database "postgres"\./,
	'with the command to run');

# The columns every version has (1.2 added client_port, NULL in old rows).
my $old_cols =
  'event_id, event_time, event, reason, pid, backend_start, datname, usename, application_name, client_addr, detail';
my $rows_sql = qq{
SELECT count(*) || ' ' || md5(string_agg(row($old_cols)::text, '|' ORDER BY event_id))
FROM pooldiag.events e WHERE event_id <= 500};
my $rows_before = $node->safe_psql('postgres', $rows_sql);
is($node->safe_psql('postgres', 'SELECT count(*) FROM pooldiag.events'),
	'500', 'nothing was written into the 1.0 table');

#
# 2. The update.
#
$node->safe_psql('postgres', 'ALTER EXTENSION pooldiag UPDATE');
is( $node->safe_psql('postgres',
		q{SELECT extversion FROM pg_extension WHERE extname = 'pooldiag'}),
	$fresh_version, "updated to $fresh_version");

is($node->safe_psql('postgres', $rows_sql), $rows_before,
	'every row of the history survived, unchanged');
is($node->safe_psql('postgres', $settings_sql), $settings_before,
	'role and database settings survived');
is( $node->safe_psql('postgres',
		q{SELECT has_function_privilege('app', 'pooldiag.drain(name, name, text)', 'EXECUTE')}),
	't', 'a privilege granted on an extension function survived');

# The queued events are written now, after the old ones.
is(wait_for_value($node, 'SELECT worker_state FROM pooldiag.health', 'running'),
	'running', 'the worker writes again');
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect') || '|' || bool_and(event_id > 500)
		  FROM pooldiag.events WHERE application_name = 'before-update'}),
	'5|5|true',
	'events queued before the update are written after it, with ids above the old ones');
{
	local $ENV{PGAPPNAME} = 'after-update';
	$node->safe_psql('postgres', 'SELECT 1') for 1 .. 3;
}
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event IN ('connect', 'disconnect')) || '|'
		         || (min(event_id) > (SELECT max(event_id) FROM pooldiag.events WHERE application_name = 'before-update'))
		  FROM pooldiag.events WHERE application_name = 'after-update'}),
	'6|true', 'new events continue the ids in order');
is( $node->safe_psql(
		'postgres',
		q{SELECT events_written = (SELECT count(*) FROM pooldiag.events WHERE event_id > 500)
		  FROM pooldiag.health}),
	't', 'events_written counts exactly the rows written');

# The new objects work.
is( $node->safe_psql(
		'postgres',
		q{INSERT INTO pooldiag.events (event_time, event) VALUES (now(), 'connect')
		  RETURNING event_id > (SELECT max(event_id) FROM pooldiag.events)}),
	't', 'event_id is assigned by the database');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event_id IS NOT NULL) FROM pooldiag.recent_events()}),
	'0', 'recent_events() answers, without ids for events not written yet');
is($node->safe_psql('postgres', 'SELECT count(*) > 0 FROM pooldiag.sessions'),
	't', 'pooldiag.sessions answers');

#
# 3. The updated database can be dumped and restored.
#
my $dump = $node->basedir . '/updated.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump of the updated database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore of it into a new database');
is( $node->safe_psql('restored',
		q{SELECT has_function_privilege('app', 'pooldiag.drain(name, name, text)', 'EXECUTE')}),
	't', 'with the privilege granted on the extension function');

#
# 4. The result is the fresh install, object for object.
#
# Without the privilege a user granted, which a fresh install does not have.
$node->safe_psql($_, 'REVOKE EXECUTE ON FUNCTION pooldiag.drain(name, name, text) FROM app')
  for ('postgres', 'restored');
same_surface($node->safe_psql('postgres', $surface_sql), $fresh_surface,
	'the updated extension equals a fresh install');

# Version 1.0 installed with this control file (schema pooldiag created
# first, then CREATE EXTENSION pooldiag VERSION '1.0'): the same result.
$node->safe_psql('postgres', 'CREATE DATABASE variant');
$node->safe_psql('variant',
	q{CREATE SCHEMA pooldiag; CREATE EXTENSION pooldiag VERSION '1.0'});
$node->safe_psql('variant', 'ALTER EXTENSION pooldiag UPDATE');
same_surface($node->safe_psql('variant', $surface_sql), $fresh_surface,
	'1.0 installed into a schema created beforehand updates to the same result');

same_surface($node->safe_psql('restored', $surface_sql), $fresh_surface,
	'the restored extension equals a fresh install');

$node->stop;

#
# 5. Version 1.1 with this library, then the update to 1.2.  Until the
#    update the writer goes on writing the 1.1 table (which has no
#    client_port) and the 1.1 views answer; the update keeps every row,
#    old rows get a NULL client_port, new ones the client's port.
#
my $node11 = pooldiag_node('upgrade11', create_extension => 0);
$node11->safe_psql('postgres', q{CREATE EXTENSION pooldiag VERSION '1.1'});
$node11->safe_psql('postgres', 'CREATE DATABASE fresh');
$node11->safe_psql('fresh', 'CREATE EXTENSION pooldiag');
{
	local $ENV{PGAPPNAME} = 'on-1.1';
	$node11->safe_psql('postgres', 'SELECT 1') for 1 .. 4;
}
wait_flushed($node11);
is( $node11->safe_psql(
		'postgres',
		q{SELECT (SELECT writer_state FROM pooldiag.health) || ' '
		         || count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect')
		  FROM pooldiag.events WHERE application_name = 'on-1.1'}),
	'running 4|4',
	'with version 1.1 installed, the writer writes its table');
is( $node11->safe_psql(
		'postgres',
		q{SELECT count(*) > 0 AND bool_and(client_addr IS NULL) FROM pooldiag.sessions}),
	't', "1.1's sessions view answers");
# (The writer goes on writing the events of the test's own sessions.)
my $max11 = $node11->safe_psql('postgres', 'SELECT max(event_id) FROM pooldiag.events');
my $rows11_sql = qq{SELECT count(*) || ' ' || md5(string_agg(row($old_cols)::text, '|' ORDER BY event_id)) FROM pooldiag.events WHERE event_id <= $max11};
my $rows11_before = $node11->safe_psql('postgres', $rows11_sql);

$node11->safe_psql('postgres', q{ALTER EXTENSION pooldiag UPDATE TO '1.2'});
is($node11->safe_psql('postgres', $rows11_sql), $rows11_before,
	'every row written under 1.1 survived the update to 1.2, unchanged');
is( $node11->safe_psql('postgres',
		"SELECT count(*) FROM pooldiag.events WHERE event_id <= $max11 AND client_port IS NOT NULL"),
	'0', 'rows written before the update have no client_port');
{
	local $ENV{PGAPPNAME} = 'on-1.2';
	$node11->safe_psql('postgres', 'SELECT 1') for 1 .. 2;
}
wait_flushed($node11);
is( $node11->safe_psql(
		'postgres',
		q{SELECT count(*) || ' ' || bool_and(client_port = -1) || ' ' || bool_and(event_id > (SELECT max(event_id) FROM pooldiag.events WHERE application_name = 'on-1.1'))
		  FROM pooldiag.events WHERE application_name = 'on-1.2' AND event IN ('connect', 'disconnect')}),
	'4 true true',
	'events written after it have the client port (-1: a Unix socket), with ids above the old ones');
is( $node11->safe_psql(
		'postgres',
		q{SELECT client_port FROM pooldiag.sessions WHERE pid = pg_backend_pid()}),
	'-1', 'the updated sessions view has client_port');

# At 1.2, with this 1.3 library: the 1.2 objects answer and the writer
# writes; 1.3's objects are not there yet.
is( $node11->safe_psql(
		'postgres',
		q{SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pooldiag') || ' '
		         || (SELECT writer_state FROM pooldiag.health) || ' '
		         || (to_regclass('pooldiag.pools') IS NULL)}),
	'1.2 running true',
	'at 1.2 the writer runs and pooldiag.pools does not exist yet');
my $max12 = $node11->safe_psql('postgres', 'SELECT max(event_id) FROM pooldiag.events');
my $rows12_sql = qq{SELECT count(*) || ' ' || md5(string_agg(row($old_cols, client_port)::text, '|' ORDER BY event_id)) FROM pooldiag.events WHERE event_id <= $max12};
my $rows12_before = $node11->safe_psql('postgres', $rows12_sql);

$node11->safe_psql('postgres', q{ALTER EXTENSION pooldiag UPDATE});
is($node11->safe_psql('postgres', $rows12_sql), $rows12_before,
	'every row written under 1.1 and 1.2 survived the update to 1.3, unchanged');
is( $node11->safe_psql(
		'postgres',
		q{SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pooldiag') || ' '
		         || (SELECT count(*) FROM pooldiag.pools WHERE sessions > 0 AND usename = current_user) || ' '
		         || (SELECT in_use >= 1 FROM pooldiag.capacity) || ' '
		         || (pooldiag.metrics() LIKE '%pooldiag_pool_sessions%') || ' '
		         || (SELECT count(*) >= 0 FROM pooldiag.recommend())}),
	'1.3 1 true true true',
	"1.3's pools, capacity, metrics() and recommend() answer after the update");
same_surface($node11->safe_psql('postgres', $surface_sql),
	$node11->safe_psql('fresh', $surface_sql),
	'1.1 updated to 1.2 and then 1.3 equals a fresh install');
$node11->stop;

done_testing();
