# Events of one session's life: connect, disconnect with each cause,
# checkouts and checkins under each log_checkouts level, and rejected
# connection attempts with each reason.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = pooldiag_node(
	'events', conf => q{
max_connections = 8
superuser_reserved_connections = 0
});
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE limited LOGIN CONNECTION LIMIT 1;
CREATE ROLE secret LOGIN PASSWORD 'right';
CREATE ROLE cannot_login NOLOGIN;
CREATE DATABASE small CONNECTION LIMIT 1;
});

# Password authentication for "secret" only; everything else stays trust.
my $hba = $node->data_dir . '/pg_hba.conf';
my $old_hba = slurp_file($hba);
open(my $fh, '>', $hba) or die "could not write $hba: $!";
print $fh "local all secret scram-sha-256\n$old_hba";
close $fh;
$node->reload;

# The event of one pid, as "event|reason".
sub events_of
{
	my ($pid) = @_;
	wait_flushed($node);
	return $node->safe_psql('postgres',
		"SELECT string_agg(event || '|' || coalesce(reason, ''), ',' ORDER BY event_id) FROM pooldiag.events WHERE pid = $pid");
}

#
# Disconnect causes.
#
my ($s, $pid) = open_session($node, app => 'quitter', user => 'app');
$s->query_safe('SELECT 1');
$s->query_safe('SELECT 2');
$s->quit;
is(events_of($pid), 'connect|,disconnect|normal', 'a clean quit is "normal"');
is( $node->safe_psql(
		'postgres',
		"SELECT usename, application_name, datname, (detail->>'checkouts')::int, (detail->>'age_ms')::numeric > 0, (detail->>'hold_time_ms')::numeric >= 0, backend_start IS NOT NULL FROM pooldiag.events WHERE pid = $pid AND event = 'disconnect'"
	),
	'app|quitter|postgres|3|t|t|t',
	'disconnect carries identity, checkouts, age and hold time');

($s, $pid) = open_session($node, app => 'crasher', user => 'app');
$s->{run}->kill_kill;
is(wait_for_value($node, "SELECT count(*) FROM pooldiag.sessions WHERE pid = $pid", '0'),
	'0', 'the backend of a vanished client exits');
is(events_of($pid), 'connect|,disconnect|client_eof',
	'a client that vanished is "client_eof"');

($s, $pid) = open_session($node, app => 'victim', user => 'app');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
is(wait_for_value($node, "SELECT count(*) FROM pooldiag.sessions WHERE pid = $pid", '0'),
	'0', 'the terminated backend exits');
is(events_of($pid), 'connect|,disconnect|killed', 'pg_terminate_backend is "killed"');
$s->quit;

($s, $pid) = open_session($node, app => 'timed-out', user => 'app');
$s->query("SET idle_in_transaction_session_timeout = '100ms'; BEGIN; SELECT 1;");
is(wait_for_value($node, "SELECT count(*) FROM pooldiag.sessions WHERE pid = $pid", '0'),
	'0', 'the backend exits on its FATAL');
is(events_of($pid), 'connect|,disconnect|fatal', 'a FATAL error is "fatal"');
$s->quit;

#
# Checkins: "slow" (the default) logs only checkouts held log_min_hold (1s).
#
($s, $pid) = open_session($node, app => 'slowpoke', user => 'app');
$s->query_safe('SELECT pg_sleep(1.2)');
$s->query_safe("SELECT $_") for 1 .. 3;
$s->query_safe('BEGIN; SELECT pg_sleep(0.6); SELECT pg_sleep(0.6); COMMIT;');
$s->quit;
is( events_of($pid),
	'connect|,checkin|,checkin|,disconnect|normal',
	'"slow" logs the two slow checkouts, not the fast ones');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(((detail->>'hold_time_ms')::numeric >= 1200)::text || ' ' || ((detail->>'checkout_start')::timestamptz < event_time)::text, ',' ORDER BY event_id) FROM pooldiag.events WHERE pid = $pid AND event = 'checkin'"
	),
	'true true,true true',
	'checkin detail holds the checkout start and the hold time');

# "all" logs every checkout and checkin; a new session picks up the reload.
$node->safe_psql('postgres', "ALTER SYSTEM SET pooldiag.log_checkouts = 'all'");
$node->reload;
($s, $pid) = open_session($node, app => 'chatty', user => 'app');
is($s->query_safe('SHOW pooldiag.log_checkouts'), 'all', 'the new session logs all');
$s->query_safe("SELECT $_") for 1 .. 3;
$s->quit;
is( events_of($pid),
	'connect|,' . ('checkout|,checkin|,' x 5) . 'disconnect|normal',
	'"all" logs a checkout and a checkin for each of the 5 statements');

# "none" logs none, even slow ones; per role.
$node->safe_psql('postgres', "ALTER SYSTEM RESET pooldiag.log_checkouts");
$node->safe_psql('postgres', "ALTER ROLE app SET pooldiag.log_checkouts = 'none'");
$node->reload;
($s, $pid) = open_session($node, app => 'quiet', user => 'app');
$s->query_safe('SELECT pg_sleep(1.1)');
$s->quit;
is(events_of($pid), 'connect|,disconnect|normal', '"none" set per role logs no checkin');
$node->safe_psql('postgres', "ALTER ROLE app RESET pooldiag.log_checkouts");

#
# Rejected connection attempts.
#
sub rejections
{
	my ($reason) = @_;
	wait_flushed($node);
	return $node->safe_psql('postgres',
		"SELECT count(*) || '|' || coalesce(string_agg(DISTINCT coalesce(usename, '?') || '\@' || coalesce(datname, '?') || ' ' || (detail->>'sqlstate'), ','), '') FROM pooldiag.events WHERE event = 'rejected' AND reason = '$reason'"
	);
}

$node->connect_fails('dbname=nosuchdb user=app', 'missing database refused',
	expected_stderr => qr/database "nosuchdb" does not exist/);
is(rejections('database_does_not_exist'), '1|app@nosuchdb 3D000',
	'missing database recorded');

{
	local $ENV{PGPASSWORD} = 'wrong';
	$node->connect_fails('dbname=postgres user=secret', 'wrong password refused',
		expected_stderr => qr/password authentication failed/);
}
$node->connect_fails('dbname=postgres user=cannot_login', 'NOLOGIN role refused',
	expected_stderr => qr/is not permitted to log in/);
is(rejections('authentication_failed'),
	'2|cannot_login@postgres 28000,secret@postgres 28P01',
	'authentication failures recorded');

my ($held) = open_session($node, app => 'holder', user => 'limited');
$node->connect_fails('dbname=postgres user=limited', 'role limit refuses',
	expected_stderr => qr/too many connections for role "limited"/);
$held->quit;
is(rejections('role_connection_limit'), '1|limited@postgres 53300',
	'role connection limit recorded');

($held) = open_session($node, app => 'holder', user => 'app', db => 'small');
$node->connect_fails('dbname=small user=app', 'database limit refuses',
	expected_stderr => qr/too many connections for database "small"/);
$held->quit;
is(rejections('database_connection_limit'), '1|app@small 53300',
	'database connection limit recorded');

# Exhaust max_connections (8, none reserved): the ninth is refused.
wait_for_value($node,
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'", '1');
my @pool;
push @pool, (open_session($node, app => "pool-$_", user => 'app'))[0] for 1 .. 8;
$node->connect_fails('dbname=postgres user=app', 'max_connections refuses',
	expected_stderr => qr/sorry, too many clients already/);
$_->quit for @pool;
is(wait_for_value($node, "SELECT count(*) FROM pooldiag.sessions WHERE application_name LIKE 'pool-%'", '0'),
	'0', 'the pool is gone');
is(rejections('too_many_connections'), '1|app@postgres 53300',
	'too many clients recorded');

# A refused attempt is not a session: no connect or disconnect for it.
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pooldiag.events e
		  WHERE e.event IN ('connect', 'disconnect')
		    AND e.pid IN (SELECT pid FROM pooldiag.events WHERE event = 'rejected')}),
	'0',
	'rejected attempts have no connect or disconnect events');

$node->stop;
done_testing();
