# pooldiag.database names a database that does not exist (or does not
# accept connections): only event writing stops.  Sessions are still
# closed, pooldiag.health says why nothing is written, the log says it once
# (a WARNING a minute at most), and once the database exists the queued
# events are written there.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# The extension is created in "postgres", for the views; events belong in
# "nosuchdb".
my $node = pooldiag_node(
	'nodb', conf => q{
pooldiag.database = 'nosuchdb'
pooldiag.idle_timeout = '2s'
});
my $started = time();
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

my ($idle, $idle_pid) = open_session($node, app => 'idler', user => 'app');
my $deadline = session_row($node, $idle_pid, 'extract(epoch FROM terminate_at)');
is(wait_gone($node, [$idle_pid], $deadline + 1 - time()),
	'0', 'an idle session is closed for idle_timeout although pooldiag.database is missing');

is( wait_for_value(
		$node, 'SELECT writer_state, enforcer_state FROM pooldiag.health',
		'database-missing|running'),
	'database-missing|running',
	'pooldiag.health says why events are not written, and that the enforcer runs');
is( $node->safe_psql('postgres',
		'SELECT writer_pid IS NOT NULL, events_written, events_queued > 0, terminations FROM pooldiag.health'),
	't|0|t|1', 'the writer waits, nothing is written, events stay queued, the close is counted');

# Several re-checks (one a second) later: still one WARNING, and no worker
# ever failed or restarted.
usleep(int(($started + 6 - time()) * 1_000_000)) if time() < $started + 6;
my $log = slurp_file($node->logfile);
my @warnings = ($log =~ /WARNING:  pooldiag writer cannot store events: database "nosuchdb" does not exist/g);
is(scalar(@warnings), 1, 'exactly one WARNING in the first seconds');
like($log, qr/HINT:  Create database "nosuchdb" and the extension pooldiag in it/, 'with a hint');
# (The closed session's own "terminating connection" is the only FATAL.)
unlike($log, qr/FATAL:  (?!terminating connection due to (administrator command|pooldiag idle timeout))|background worker "pooldiag (writer|enforcer)".*exited/,
	'no other FATAL, no worker exit');

# The database and the extension appear: the writer connects, and writes
# what was queued, the terminate event of the closed session included.
$node->safe_psql('postgres', 'CREATE DATABASE nosuchdb');
$node->safe_psql('nosuchdb', 'CREATE EXTENSION pooldiag');
is( wait_for_value(
		$node,
		"SELECT writer_state = 'running' AND events_written > 0 FROM pooldiag.health", 't'),
	't', 'the writer runs once the database exists');
like(slurp_file($node->logfile), qr/LOG:  pooldiag writer is connecting to database "nosuchdb"/,
	'and says so');
wait_flushed($node);
is( $node->safe_psql('nosuchdb',
		"SELECT string_agg(event || coalesce(':' || reason, ''), ',' ORDER BY event_time, event_id) FROM pooldiag.events WHERE pid = $idle_pid"),
	'connect,terminate:idle_timeout,disconnect:killed',
	'the events queued while the database was missing are in its table');
close_session($idle);

#
# A database that does not accept connections: the same, with its own state.
#
$node->safe_psql('postgres', 'CREATE DATABASE closeddb ALLOW_CONNECTIONS false');
$node->append_conf('postgresql.conf', "pooldiag.database = 'closeddb'");
$node->restart;
is( wait_for_value(
		$node, 'SELECT writer_state FROM pooldiag.health',
		'database-not-accepting-connections'),
	'database-not-accepting-connections', 'pooldiag.health says the database is closed');
usleep(2_000_000);
$log = slurp_file($node->logfile);
@warnings = ($log =~ /WARNING:  pooldiag writer cannot store events: database "closeddb" is not accepting connections/g);
is(scalar(@warnings), 1, 'one WARNING about it');
unlike($log, qr/FATAL:  (?!terminating connection due to (administrator command|pooldiag idle timeout))/, 'and no FATAL');

$node->stop;
done_testing();
