# What enforcement leaves alone: in a dry run every session (one
# would_terminate per session and idle period, not one per scan); exempt
# sessions (superusers, exempt_roles, exempt_applications with a * pattern);
# and any process that is not a client backend, even with superusers no
# longer exempt and a tiny idle_timeout.  A non-exempt session in the same
# run is closed each time, so that enforcement is known to be running.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node(
	'exemptions',
	init => { allows_streaming => 'logical' },
	conf => q{
max_connections = 30
pooldiag.idle_timeout = '1s'
pooldiag.dry_run = on
pooldiag.exempt_roles = 'batch'
pooldiag.exempt_applications = 'cron-*, admin-console'
});
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE ROLE batch LOGIN;');

my ($su, $su_pid) = open_session($node, app => 'su-tool');
my ($batch, $batch_pid) = open_session($node, app => 'batch-job', user => 'batch');
my ($cron, $cron_pid) = open_session($node, app => 'cron-nightly', user => 'app');
my ($console, $console_pid) = open_session($node, app => 'admin-console', user => 'app');
my @exempt = ($su_pid, $batch_pid, $cron_pid, $console_pid);

#
# 1. Dry run: a would_terminate event instead of a close, once per idle
#    period.
#
my ($dry, $dry_pid) = open_session($node, app => 'web-dry', user => 'app');
is( wait_event_count($node, "pid = $dry_pid AND event = 'would_terminate'", '1'),
	'1', 'the idle session gets a would_terminate event');
wait_scans($node, 5);
wait_flushed($node);
is(event_count($node, "pid = $dry_pid AND event = 'would_terminate'"),
	'1', 'only one over five more scans of the same idle period');
is(backends_alive($node, $dry_pid), '1', 'the session is not closed');
is( $node->safe_psql(
		'postgres',
		"SELECT reason, (detail->>'checkouts')::int, (detail->>'idle_ms')::numeric BETWEEN 1000 AND 2000, event_time >= (detail->>'deadline')::timestamptz FROM pooldiag.events WHERE event = 'would_terminate' AND pid = $dry_pid"
	),
	'idle_timeout|1|t|t',
	'it says why and when');

# A new idle period is a new would_terminate.
$dry->query_safe('SELECT 1');
is( wait_event_count($node, "pid = $dry_pid AND event = 'would_terminate'", '2'),
	'2', 'a new idle period gives a second would_terminate');
wait_scans($node, 5);
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(detail->>'checkouts', ',' ORDER BY event_id) FROM pooldiag.events WHERE event = 'would_terminate' AND pid = $dry_pid"
	),
	'1,2',
	'one per idle period (after checkout 1 and after checkout 2)');
is( event_count(
		$node,
		"event = 'terminate' OR (event = 'would_terminate' AND pid IN (" . join(',', @exempt) . '))'),
	'0',
	'no terminate at all, and no would_terminate for exempt sessions');
is($node->safe_psql('postgres', 'SELECT would_terminations, terminations FROM pooldiag.health'),
	'2|0', 'pooldiag.health counts two would_terminations and no termination');
is(backends_alive($node, @exempt, $dry_pid), '5', 'every session is still there');

#
# 2. Enforcing: exempt sessions stay, the others are closed.
#
is( $node->safe_psql(
		'postgres',
		'SELECT string_agg(application_name || \' \' || exempt || \' \' || coalesce(exempt_reason, \'-\'), \',\' ORDER BY application_name) FROM pooldiag.sessions WHERE pid IN ('
		  . join(',', @exempt, $dry_pid) . ')'),
	'admin-console true exempt_applications,batch-job true exempt_roles,cron-nightly true exempt_applications,su-tool true superuser,web-dry false -',
	'pooldiag.sessions shows who is exempt and why');

set_system($node, 'pooldiag.dry_run' => 'off');
my ($web, $web_pid) = open_session($node, app => 'web', user => 'app');
my $web_opened = time();
is(wait_gone($node, [$dry_pid], 3), '0', 'with dry_run off, the overdue session is closed');
is(wait_gone($node, [$web_pid], $web_opened + 3 - time()),
	'0', 'a new non-exempt session is closed after idle_timeout');
ok(stays_alive($node, \@exempt, 1.5), 'the exempt sessions stay, though overdue');
is(event_sequence($node, $web_pid), 'connect,terminate:idle_timeout,disconnect:killed',
	'the non-exempt session: terminate and disconnect');
is($node->safe_psql('postgres', 'SELECT terminations FROM pooldiag.health'),
	'2', 'two terminations');
is( event_count($node,
		"event IN ('terminate', 'would_terminate') AND pid IN (" . join(',', @exempt) . ')'),
	'0',
	'no event for the exempt sessions');

#
# 3. Only client backends are ever closed.  Superusers are no longer exempt
#    and idle_timeout is 300 ms: the superuser session goes, while the
#    pooldiag enforcer and writer, the other background processes and a WAL sender
#    (connected as a superuser) stay.
#
my $walsender = $node->background_psql('postgres', replication => 'database');
# Autovacuum and parallel workers come and go on their own; the rest must
# not change.
my $others = q{SELECT string_agg(backend_type || ' ' || pid, ',' ORDER BY backend_type, pid)
FROM pg_stat_activity
WHERE backend_type NOT IN ('client backend', 'autovacuum worker', 'parallel worker')};
is( wait_for_value(
		$node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('walsender', 'pooldiag enforcer', 'pooldiag writer', 'autovacuum launcher')",
		'4'),
	'4',
	'a WAL sender, the pooldiag enforcer and writer and the autovacuum launcher are running');
my $before = $node->safe_psql('postgres', $others);
my $other_pids = $node->safe_psql('postgres',
	"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type <> 'client backend'");
my $worker_pids = $node->safe_psql('postgres', 'SELECT enforcer_pid, writer_pid FROM pooldiag.health');
note "non-client processes: $before";

set_system($node,
	'pooldiag.exempt_superusers' => 'off',
	'pooldiag.idle_timeout' => '300');
is(wait_gone($node, [$su_pid], 3), '0', 'the superuser session is closed now');
is( wait_for_value(
		$node, "SELECT count(*) FROM pooldiag.events WHERE event = 'terminate' AND pid = $su_pid", '1'),
	'1',
	'with a terminate event');
ok(stays_alive($node, [ $batch_pid, $cron_pid, $console_pid ], 0.1),
	'the other exempt sessions stay');

# Several times the idle_timeout, polled.
my $stable = 1;
my $end = time() + 2;
while (time() < $end)
{
	my $now = $node->safe_psql('postgres', $others);
	if ($now ne $before)
	{
		diag("non-client processes changed: $now");
		$stable = 0;
		last;
	}
	usleep(100_000);
}
ok($stable, 'no non-client process was closed or restarted over 2 s');
is($node->safe_psql('postgres', 'SELECT enforcer_pid, writer_pid FROM pooldiag.health'),
	$worker_pids, 'the pooldiag enforcer and writer are the same processes');
is($node->safe_psql('postgres', 'SELECT enforcer_state, writer_state FROM pooldiag.health'),
	'running|running', 'and both run');
is($walsender->query_safe('SELECT 42'), '42', 'the WAL sender still answers');
wait_flushed($node);
is(event_count($node, "event IN ('terminate', 'would_terminate') AND pid IN ($other_pids)"),
	'0', 'no terminate event names a non-client process');

#
# 4. Exemptions follow a reload too: emptied, they no longer protect.
#
set_system($node,
	'pooldiag.exempt_roles' => '',
	'pooldiag.exempt_applications' => '');
is(wait_gone($node, [ $batch_pid, $cron_pid, $console_pid ], 3),
	'0', 'with empty exemption lists the remaining sessions are closed');
is( wait_event_count($node,
		"event = 'terminate' AND reason = 'idle_timeout' AND pid IN (" . join(',', @exempt) . ')', '4'),
	'4',
	'each of them with a terminate event');

close_session($_) for $su, $batch, $cron, $console, $dry, $web, $walsender;
$node->stop;
done_testing();
