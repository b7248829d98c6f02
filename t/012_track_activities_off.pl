# With track_activities = off, core reports STATE_DISABLED and cannot tell a
# session that waits inside a statement from an idle one.  pooldiag then
# refuses to close such sessions (exempt_reason track_activities_off), says
# so in the log at most once a minute, and keeps enforcing everyone else.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('untracked', conf => "autovacuum = off\n");
$node->safe_psql(
	'postgres', q{
CREATE ROLE untracked LOGIN;
CREATE ROLE tracked LOGIN;
ALTER ROLE untracked SET track_activities = off;
ALTER ROLE untracked SET pooldiag.idle_timeout = '1s';
ALTER ROLE tracked SET pooldiag.idle_timeout = '1s';
CREATE TABLE t (x int);
INSERT INTO t SELECT generate_series(1, 100);
ALTER TABLE t OWNER TO untracked;
GRANT CREATE ON SCHEMA public TO untracked;
});
my $log_start = -s $node->logfile;

my ($u, $upid) = open_session($node, app => 'untracked', user => 'untracked');
my ($k, $kpid) = open_session($node, app => 'tracked', user => 'tracked');

is(session_row($node, $upid, 'state, exempt, exempt_reason, terminate_at IS NULL'),
	'disabled|t|track_activities_off|t',
	'a session with track_activities off is shown as exempt, with no deadline');
is(wait_gone($node, [$kpid], 10), '0', 'a tracked idle session is closed after idle_timeout');
ok(stays_alive($node, [$upid], 2.5), 'the untracked idle session is never closed');

# Waiting for a lock in parse analysis, past idle_timeout.
my ($holder) = open_session($node, app => 'holder');
$holder->query_safe('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;');
my $marker = send_query($u, 'SELECT count(*) FROM t');
ok(stays_alive($node, [$upid], 2.5), 'an untracked session waiting in parse analysis is not closed');
$holder->query_safe('COMMIT');
my ($done, $out) = wait_query($u, $marker, 30);
is($out, '100', 'its statement completed');

# CREATE INDEX CONCURRENTLY waiting for an old snapshot, past idle_timeout.
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class;');
$marker = send_query($u, 'CREATE INDEX CONCURRENTLY t_x ON t (x)');
ok(stays_alive($node, [$upid], 2.5), 'an untracked CREATE INDEX CONCURRENTLY is not closed');
$holder->query_safe('COMMIT');
my $err;
($done, $out, $err) = wait_query($u, $marker, 30);
ok($done, 'CREATE INDEX CONCURRENTLY finished');
unlike($err, qr/ERROR/, 'without an error') or diag($err);
is($node->safe_psql('postgres', "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass"),
	't', 'and its index is valid');

# One WARNING, not one per scan.
wait_scans($node, 3);
my $log = slurp_file($node->logfile, $log_start);
my @warnings = ($log =~ /WARNING:  pooldiag cannot enforce its policy for 1 session because "track_activities" is off for it/g);
is(scalar(@warnings), 1, 'exactly one WARNING about the untracked session');
is(wait_for_value($node, 'SELECT untracked_sessions FROM pooldiag.health', '1'),
	'1', 'pooldiag.health counts it once it is past its idle deadline');
is($node->safe_psql('postgres', "SELECT count(*) FROM pooldiag.events WHERE event = 'terminate' AND pid = $upid"),
	'0', 'no terminate event for it');

$u->quit;
$holder->quit;
$node->stop;
done_testing();
