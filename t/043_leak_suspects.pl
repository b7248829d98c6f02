# pooldiag.leak_threshold: a checkout held longer than the threshold gives
# exactly one leak_suspect event (not one per scan), for an open
# transaction as for a long statement; the session is not touched; each
# new long checkout is a new suspect; the threshold can differ per role.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node(
	'leaks', conf => q{
pooldiag.leak_threshold = '1s'
});
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE patient LOGIN;
ALTER ROLE patient SET pooldiag.leak_threshold = '5s';
});

my ($holder, $holder_pid) = open_session($node, app => 'holder', user => 'app');
my ($sleeper, $sleeper_pid) = open_session($node, app => 'sleeper', user => 'app');
my ($slow, $slow_pid) = open_session($node, app => 'patient', user => 'patient');

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(application_name || ' ' || leak_threshold, ',' ORDER BY application_name) FROM pooldiag.sessions WHERE pid IN ($holder_pid, $sleeper_pid, $slow_pid)"
	),
	'holder 00:00:01,patient 00:00:05,sleeper 00:00:01',
	'effective leak_threshold: 1 s from the file, 5 s for role patient');

# Three checkouts of 3 s: an open transaction, a statement, and a statement
# of a role whose threshold is 5 s.
$holder->query_safe('BEGIN; SELECT 1;');
my $started = time();
my $sleep = send_query($sleeper, 'SELECT pg_sleep(3)');
my $slow_sleep = send_query($slow, 'SELECT pg_sleep(3)');
my $holder_start = session_row($node, $holder_pid, 'checkout_start');

# About 10 scans (naptime 200 ms) happen while the checkouts are held past 1 s.
ok(stays_alive($node, [ $holder_pid, $sleeper_pid, $slow_pid ], $started + 3 - time()),
	'no session is closed while held past the threshold');
is($holder->query_safe('SELECT 2; COMMIT;'), '2', 'the transaction goes on and commits');
my ($finished, $out, $err) = wait_query($sleeper, $sleep, 10);
ok($finished && $err eq '', 'the long statement completed');
($finished, $out, $err) = wait_query($slow, $slow_sleep, 10);
ok($finished && $err eq '', 'the other long statement completed');

wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(application_name || ' ' || n, ',' ORDER BY application_name) FROM (SELECT application_name, count(*) AS n FROM pooldiag.events WHERE event = 'leak_suspect' GROUP BY 1) c"
	),
	'holder 1,sleeper 1',
	'exactly one leak_suspect for each checkout held past 1 s, none for the 5 s role');
is( $node->safe_psql(
		'postgres',
		"SELECT reason IS NULL, usename, (detail->>'checkout_start')::timestamptz = '$holder_start', (detail->>'hold_time_ms')::numeric BETWEEN 1000 AND 2000, detail->>'leak_threshold_ms', abs(extract(epoch FROM event_time - (detail->>'checkout_start')::timestamptz) * 1000 - (detail->>'hold_time_ms')::numeric) < 0.01 FROM pooldiag.events WHERE event = 'leak_suspect' AND pid = $holder_pid"
	),
	"t|app|t|t|1000|t",
	'its detail: the checkout start, the hold time when found (1 s and a scan), the threshold');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pooldiag.events WHERE event IN ('terminate', 'would_terminate') OR (event = 'disconnect' AND pid IN ($holder_pid, $sleeper_pid, $slow_pid))"
	),
	'0',
	'nothing was closed');
is($node->safe_psql('postgres', 'SELECT leak_suspects, terminations FROM pooldiag.health'),
	'2|0', 'pooldiag.health counts two leak suspects and no termination');

# A short checkout is no suspect; the next long one is a new suspect.
$sleeper->query_safe('SELECT 1');
$sleeper->query_safe('SELECT pg_sleep(1.6)');
is(wait_event_count($node, "event = 'leak_suspect' AND pid = $sleeper_pid", '2'),
	'2', 'a second long checkout of the same session is a second suspect');
is( $node->safe_psql(
		'postgres',
		"SELECT count(DISTINCT detail->>'checkout_start') FROM pooldiag.events WHERE event = 'leak_suspect' AND pid = $sleeper_pid"
	),
	'2',
	'one per checkout');
wait_scans($node, 3);
wait_flushed($node);
is(event_count($node, "event = 'leak_suspect'"), '3',
	'and no further event once the checkouts are over');
is(backends_alive($node, $holder_pid, $sleeper_pid, $slow_pid), '3', 'all sessions are still there');

close_session($_) for $holder, $sleeper, $slow;
$node->stop;
done_testing();
