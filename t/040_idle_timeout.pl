# pooldiag.idle_timeout: a session idle outside a transaction is closed a
# little after the timeout; a running statement or an open transaction is
# never interrupted, and is closed only once idle again for the timeout; and
# the worker wakes for a deadline instead of waiting out its naptime.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node(
	'idle', conf => q{
pooldiag.idle_timeout = '2s'
});
# Superusers are exempt by default: the sessions to close use this role.
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

#
# 1. Three sessions: one idle, one running a 3.5 s statement, one idle in an
#    open transaction.
#
my ($idle, $idle_pid) = open_session($node, app => 'idler', user => 'app');
my $idle_opened = time();
my ($busy, $busy_pid) = open_session($node, app => 'sleeper', user => 'app');
my $sleep = send_query($busy, "SELECT pg_sleep(3.5), 'slept'");
my ($txn, $txn_pid) = open_session($node, app => 'in-transaction', user => 'app');
$txn->query_safe('BEGIN; SELECT 1;');

is( session_row(
		$node, $idle_pid,
		"state, idle_timeout, terminate_reason, exempt, abs(extract(epoch FROM terminate_at - (now() - idle_for) - interval '2 s')) < 0.1"
	),
	'idle|00:00:02|idle_timeout|f|t',
	'the idle session is due 2 s after its last checkin');
is(session_row($node, $txn_pid, 'state, terminate_at IS NULL, idle_for IS NULL'),
	'idle in transaction|t|t', 'a session in a transaction has no idle deadline');

ok(stays_alive($node, [ $idle_pid, $busy_pid, $txn_pid ], $idle_opened + 1.5 - time()),
	'no session is closed in the first 1.5 s');
is(wait_gone($node, [$idle_pid], $idle_opened + 4 - time()),
	'0', 'the idle session is closed within 4 s');
my $idle_gone = time() - $idle_opened;
cmp_ok($idle_gone, '>=', 1.5, 'and not before 1.5 s');
note sprintf('idle session closed %.2f s after it was opened', $idle_gone);

is(backends_alive($node, $busy_pid, $txn_pid), '2',
	'the running statement and the open transaction are still there');
is(session_row($node, $busy_pid, 'state, checkout_start IS NOT NULL'),
	'active|t', 'the statement is still running');

my ($finished, $out, $err) = wait_query($busy, $sleep, 10);
my $busy_idle_since = time();
ok($finished, 'the 3.5 s statement completed');
is($out, '|slept', 'with its result');
is($err, '', 'and without an error');

# Past the timeout in its transaction: still there, and it can commit.
cmp_ok(time() - $idle_opened, '>', 3, 'the transaction has been open for more than the timeout');
is($txn->query_safe('SELECT 42; COMMIT;'), '42', 'the open transaction goes on and commits');
my $txn_idle_since = time();

# Now both are idle: closed after 2 s more, not before.
ok(stays_alive($node, [ $busy_pid, $txn_pid ], $busy_idle_since + 1.5 - time()),
	'neither is closed within 1.5 s of going idle');
is(wait_gone($node, [ $busy_pid, $txn_pid ], $txn_idle_since + 4 - time()),
	'0', 'both are closed within 4 s of going idle');

# The events: a terminate with the reason and the facts of the decision,
# then the session's own disconnect as "killed".
is(event_sequence($node, $idle_pid), 'connect,terminate:idle_timeout,disconnect:killed',
	'idle session: terminate (idle_timeout), then disconnect (killed)');
is(event_sequence($node, $busy_pid),
	'connect,checkin,terminate:idle_timeout,disconnect:killed',
	'busy session: its slow checkin, then terminate and disconnect');
is(event_sequence($node, $txn_pid),
	'connect,checkin,terminate:idle_timeout,disconnect:killed',
	'transaction session: its slow checkin, then terminate and disconnect');

my $detail = q{
SELECT (detail->>'checkouts')::int,
       (detail->>'idle_ms')::numeric BETWEEN 2000 AND 3000,
       event_time >= (detail->>'deadline')::timestamptz,
       event_time - (detail->>'deadline')::timestamptz < interval '1 s',
       usename, application_name
FROM pooldiag.events WHERE event = 'terminate' AND pid = };
is($node->safe_psql('postgres', $detail . $idle_pid), '1|t|t|t|app|idler',
	'idle session: closed for 2 s idle after its one checkout, at its deadline');
is($node->safe_psql('postgres', $detail . $busy_pid), '2|t|t|t|app|sleeper',
	'busy session: the idle time counts from the end of the statement');
is($node->safe_psql('postgres', $detail . $txn_pid), '2|t|t|t|app|in-transaction',
	'transaction session: the idle time counts from the commit');
is( $node->safe_psql(
		'postgres',
		"SELECT event_time - backend_start > interval '5.4 s' FROM pooldiag.events WHERE event = 'terminate' AND pid = $busy_pid"
	),
	't',
	'the busy session lived through its statement and 2 s idle');
is($node->safe_psql('postgres', 'SELECT terminations, would_terminations FROM pooldiag.health'),
	'3|0', 'pooldiag.health counts three terminations');
close_session($_) for $idle, $busy, $txn;

#
# 2. The worker sleeps until the earliest deadline, not a whole naptime.
#    With naptime and flush_interval at 5 s, a session known to the worker
#    and due in 2 s must still be closed at its deadline.
#
my ($late, $late_pid) = open_session($node, app => 'deadline', user => 'app');
my $late_opened = time();
set_system($node, 'pooldiag.naptime' => '5000', 'pooldiag.flush_interval' => '5000');
is(wait_gone($node, [$late_pid], 10), '0', 'the session is closed');
my $late_gone = time() - $late_opened;
note sprintf('closed %.2f s after it was opened, naptime 5 s', $late_gone);
cmp_ok($late_gone, '<', 4.0, 'within 4 s of opening it, not after a 5 s naptime');
set_system($node, 'pooldiag.naptime' => undef, 'pooldiag.flush_interval' => undef);
is( wait_event_count(
		$node,
		"pid = $late_pid AND event = 'terminate' AND reason = 'idle_timeout' AND event_time - (detail->>'deadline')::timestamptz BETWEEN interval '0' AND interval '1 s'",
		'1'),
	'1',
	'its terminate event is within 1 s of its deadline (a naptime would make it 3 s)');
close_session($late);

$node->stop;
done_testing();
