# pooldiag.pools: sessions grouped by pool (implicit: database, role,
# application_name, client address), exact peak_busy, hold-time
# percentiles, a session that changes its application_name moves, totals
# fold in at disconnect (by cause) and at a close (by reason), survive a
# clean restart and not a crash, start over at reset; pools beyond
# max_pools are counted in the "other" row; other roles see only that a
# pool exists.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'pools', conf => q{
listen_addresses = '127.0.0.1'
pooldiag.max_pools = 3
});
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE plain LOGIN;
CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE victim LOGIN;
ALTER ROLE victim SET pooldiag.idle_timeout = '1s';
});

sub pool_row
{
	my ($where, $columns, $user) = @_;
	return $node->safe_psql('postgres',
		"SELECT $columns FROM pooldiag.pools WHERE $where",
		$user ? (extra_params => [ '-U', $user ]) : ());
}

my @web;
for my $i (1 .. 3)
{
	my ($s, $pid) = open_session($node, app => 'web', user => 'app',
		hostaddr => '127.0.0.1');
	push @web, $s;
}
is( pool_row(
		"application_name = 'web'",
		'kind, pool IS NULL, datname, usename, client_addr, sessions, busy, idle, connects'),
	'implicit|t|postgres|app|127.0.0.1|3|0|3|3',
	'three sessions of one role, application_name and address form one implicit pool');

# peak_busy is exact: three open transactions at once, then one at a time.
$_->query_safe('BEGIN; SELECT 1;') for @web;
is(pool_row("application_name = 'web'", 'busy, idle_in_transaction, peak_busy'),
	'3|3|3', 'three checkouts open at once: busy 3, all idle in a transaction, peak_busy 3');
$_->query_safe('COMMIT') for @web;
$web[0]->query_safe('SELECT 1') for 1 .. 4;
is(pool_row("application_name = 'web'", 'busy, idle, peak_busy, checkouts'),
	'0|3|3|10',
	'after: nothing busy, peak_busy still 3, 10 checkouts ended (3 pid look-ups, 3 transactions, 4)');

# Hold times: five checkouts of ~200 ms in a fresh pool; the percentiles are
# bucket midpoints within 5% of a value in the bucket.
my ($sleeper) = open_session($node, app => 'sleeper', user => 'app',
	hostaddr => '127.0.0.1');
$sleeper->query_safe('SELECT pg_sleep(0.2)') for 1 .. 5;
is( pool_row(
		"application_name = 'sleeper'",
		"checkouts, hold_p50 BETWEEN '190ms' AND '300ms', hold_p99 <= hold_max, hold_max >= '200ms', hold_avg BETWEEN '150ms' AND hold_max"
	),
	'6|t|t|t|t',
	'hold time (a fast pid look-up and five 200 ms sleeps): p50 near 200 ms, p99 at most max, avg below max');

# A session that changes its application_name moves before its next checkout.
$web[2]->query_safe("SET application_name = 'sleeper'");
$web[2]->query_safe('SELECT 1');
is( pool_row(
		"application_name IN ('web', 'sleeper') ORDER BY application_name",
		"application_name, sessions, connects"),
	"sleeper|2|1\nweb|2|3",
	'SET application_name moves the session (no connect, no disconnect counted)');

# Pools beyond max_pools (3 here: web, sleeper, and the superuser's psql
# sessions of this test) are counted in the other row.
my ($extra) = open_session($node, app => 'extra', user => 'app');
is(pool_row("kind = 'other'", 'sessions, connects, overflow'),
	'1|1|1', 'a fourth pool goes into the other row, which counts it as overflow');
is(pool_row("application_name = 'extra'", 'count(*)'), '0', 'and has no row of its own');

# Other roles see that the pool exists, nothing more; pg_read_all_stats
# members and the pool's own role see all.
is( pool_row(
		"application_name IS NULL AND usename = 'app' AND kind = 'implicit'",
		'count(*), bool_and(sessions IS NULL AND checkouts IS NULL AND client_addr IS NULL AND pool IS NULL)',
		'plain'),
	'2|t',
	'role plain sees the two pools of role app, without their detail');
is(pool_row("kind = 'other'", 'sessions IS NULL', 'plain'),
	't', 'nor the detail of the other row');
is(pool_row("application_name = 'web'", 'sessions', 'watcher'),
	'2', 'a member of pg_read_all_stats sees the detail');
is(pool_row("application_name = 'web'", 'sessions', 'app'),
	'2', 'so does the pool\'s own role');

# Disconnects fold the sessions' totals in, by cause.
close_session($_) for @web[0, 1];
is( wait_for_value(
		$node,
		"SELECT sessions || ' ' || disconnects_normal || ' ' || checkouts FROM pooldiag.pools WHERE application_name = 'web'",
		'0 2 10'),
	'0 2 10',
	'two sessions left with Terminate: the pool keeps its 10 checkouts (the moved session\'s too)');

# A close by pooldiag counts as killed, and as a close with its reason.
close_session($extra);
$node->safe_psql('postgres', 'SELECT pooldiag.reset()');
my ($victim, $victim_pid) = open_session($node, app => 'victim', user => 'victim');
wait_gone($node, [$victim_pid], 30);
is( wait_for_value(
		$node,
		"SELECT disconnects_killed || ' ' || closes_idle_timeout FROM pooldiag.pools WHERE application_name = 'victim'",
		'1 1'),
	'1 1',
	'a session closed for idle_timeout: one killed disconnect, one idle_timeout close');
close_session($victim);

# The reset dropped pools without sessions (web), kept the others.
is(pool_row("application_name = 'web'", 'count(*)'), '0',
	'reset drops pools without sessions');
is(pool_row("application_name = 'sleeper'", 'sessions, checkouts, peak_busy'),
	'2|0|0', 'and starts the totals of the others over');

# A clean restart keeps the totals; the sessions end as it stops.
$sleeper->query_safe('SELECT 1');
close_session($_) for $sleeper, $web[2];
my $before = wait_for_value($node,
	"SELECT sessions || ' ' || checkouts || ' ' || connects FROM pooldiag.pools WHERE application_name = 'sleeper'",
	'0 1 0');
is($before, '0 1 0', 'before the restart: 1 checkout since the reset');
$node->restart;
is( pool_row(
		"application_name = 'sleeper'",
		"sessions, checkouts, peak_busy, disconnects_normal, hold_max IS NOT NULL"),
	'0|1|1|2|t',
	'after a clean restart the totals are back');
ok(!-e $node->data_dir . '/pg_stat/pooldiag_pools.stat',
	'the file is deleted once loaded');

# A crash loses them (documented).
$node->append_conf('postgresql.conf', 'restart_after_crash = on');
$node->reload;
my ($doomed, $doomed_pid) = open_session($node, app => 'doomed');
my $offset = -s $node->logfile;
kill 'KILL', $doomed_pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
close_session($doomed);
is(pool_row("application_name = 'sleeper'", 'count(*)'), '0',
	'after a crash the totals are gone');

$node->stop;
done_testing();
