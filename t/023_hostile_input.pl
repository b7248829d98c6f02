# Strings that come from clients, before and after authentication, end up in
# pooldiag.events as text that is valid in the database encoding: bytes that
# are not are written as \xNN, names cut at NAMEDATALEN never end in half a
# character, and the table can be read in any client encoding and copied
# out and back in.  Also: a rejected attempt keeps the application_name of its
# startup packet.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PoolDiagRawClient;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'hostile',
	init => { extra => [ '--encoding=UTF8', '--locale=C' ] },
	conf => q{
listen_addresses = '127.0.0.1'
});
is($node->safe_psql('postgres', 'SHOW server_encoding'),
	'UTF8', 'the events database is UTF8');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

# TCP from 127.0.0.1 is trusted; 127.0.0.2 has no pg_hba.conf entry at all.
my $hba = $node->data_dir . '/pg_hba.conf';
open(my $fh, '>', $hba) or die "could not write $hba: $!";
print $fh "local all all trust\nhost all all 127.0.0.1/32 trust\n";
close $fh;
$node->reload;

# application_name is cleaned by core before any hook sees it: 15 replaces
# non-ASCII bytes with '?', 16 and later write them as \xNN.
my $cleaned_appname = $node->pg_version >= 16 ? '\xff\xfeapp' : '??app';

# Each attempt: where from, the startup packet, the SQLSTATE it must get,
# and the row it must leave: reason|sqlstate|host|usename|datname|appname.
# Single-quoted strings below are the stored text (a backslash and "x").
my @attempts = (
	{
		name => 'invalid UTF-8 user and application_name',
		from => '127.0.0.1',
		params => [ user => "\xff\xfe", database => 'postgres',
			application_name => "\xff\xfeapp" ],
		sqlstate => '28000',
		row => 'authentication_failed|28000|127.0.0.1|\xff\xfe|postgres|'
		  . $cleaned_appname,
	},
	{
		name => 'LATIN1 database name',
		from => '127.0.0.1',
		params => [ user => 'app', database => "caf\xe9",
			application_name => 'latin1-name' ],
		sqlstate => '3D000',
		row => 'database_does_not_exist|3D000|127.0.0.1|app|caf\xe9|latin1-name',
	},
	{
		name => 'refused by pg_hba.conf, valid and invalid bytes mixed',
		from => '127.0.0.2',
		params => [ user => "b\xc3\xa9\x80", database => "\xc0\xaf",
			application_name => 'no-hba' ],
		sqlstate => '28000',
		row => "authentication_failed|28000|127.0.0.2|b\xc3\xa9" . '\x80|\xc0\xaf|no-hba',
	},
	{
		name => 'database name cut by core inside a character',
		from => '127.0.0.1',
		params => [ user => 'app', database => ('y' x 61) . "\xe2\x82\xac",
			application_name => 'cut-db' ],
		sqlstate => '3D000',
		row => 'database_does_not_exist|3D000|127.0.0.1|app|' . ('y' x 61) . '|cut-db',
	},
	{
		name => 'user name cut by core inside a character',
		from => '127.0.0.2',
		params => [ user => ('x' x 62) . "\xc3\xa9", database => 'postgres',
			application_name => 'cut-user' ],
		sqlstate => '28000',
		row => 'authentication_failed|28000|127.0.0.2|' . ('x' x 62) . '|postgres|cut-user',
	},
	{
		name => 'escapes that do not fit in a name',
		from => '127.0.0.2',
		params => [ user => "\xff" x 40, database => 'postgres',
			application_name => 'long-escape' ],
		sqlstate => '28000',
		# 63 bytes hold 15 escapes of 4 bytes; the 16th is left out whole.
		row => 'authentication_failed|28000|127.0.0.2|' . ('\xff' x 15) . '|postgres|long-escape',
	},);

foreach my $try (@attempts)
{
	is(raw_startup($node, from => $try->{from}, params => $try->{params}),
		$try->{sqlstate}, "refused: $try->{name}");
}

# A refused libpq connection: the startup packet's application_name is kept.
$node->connect_fails(
	'dbname=nosuchdb user=app application_name=refused-app',
	'missing database refused',
	expected_stderr => qr/database "nosuchdb" does not exist/);

wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(concat_ws('|', reason, detail->>'sqlstate',
		                                coalesce(host(client_addr), 'local'),
		                                usename, datname, application_name),
		                    E'\n' ORDER BY event_id)
		  FROM pooldiag.events WHERE event = 'rejected'}),
	join("\n",
		(map { $_->{row} } @attempts),
		'database_does_not_exist|3D000|local|app|nosuchdb|refused-app'),
	'rejected attempts are stored with invalid bytes escaped, names cut at a character, and their application_name'
);

#
# A session that is valid in its own database but not in the events
# database: a role whose name is LATIN1, in a LATIN1 database.  The writer
# escapes what the events database's encoding does not allow.
#
$node->safe_psql('postgres',
	"CREATE DATABASE latin1db ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
);
{
	local $ENV{PGCLIENTENCODING} = 'LATIN1';
	$node->safe_psql('latin1db', "CREATE ROLE \"caf\xe9\" LOGIN");
	local $ENV{PGUSER} = "caf\xe9";
	local $ENV{PGAPPNAME} = 'latin1-session';
	is($node->safe_psql('latin1db', 'SELECT length(current_user)'),
		'4', 'the LATIN1 role logs in to its LATIN1 database');
}
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(event || '|' || usename || '|' || datname, ',' ORDER BY event_id)
		  FROM pooldiag.events WHERE application_name = 'latin1-session'}),
	'connect|caf\xe9|latin1db,disconnect|caf\xe9|latin1db',
	'a name that is invalid in the events database is escaped by the writer');

#
# Everything in the table is valid UTF8: it reads in LATIN1, and it copies
# out and back in (what a dump and its restore do), row for row.
#
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET client_encoding = 'LATIN1'; SELECT * FROM pooldiag.events; SELECT * FROM pooldiag.recent_events();"
);
is($ret, 0, 'pooldiag.events reads with client_encoding = LATIN1');
is($stderr, '', 'reading in LATIN1 raises no error');

my $copy = "$PostgreSQL::Test::Utils::tmp_check/hostile_events.copy";
$node->safe_psql('postgres', "\\copy pooldiag.events TO '$copy'");
my $copied = () = slurp_file($copy) =~ /\n/g;
cmp_ok($copied, '>=', scalar(@attempts) + 3, 'the copy holds the events');
$node->safe_psql('postgres', 'CREATE TABLE public.events_copy (LIKE pooldiag.events)');
($ret, $stdout, $stderr) =
  $node->psql('postgres', "\\copy public.events_copy FROM '$copy'");
is($ret, 0, 'the copy loads back');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.events_copy'),
	$copied, 'every copied row loads back');

$node->stop;
done_testing();
