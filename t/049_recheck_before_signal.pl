# Right before it signals, the worker must re-check the session it decided
# to close: the same pid and backend_start, still in the state that
# justified it, and no checkout started since the decision.  A session that
# ran a statement after the decision has a new idle period and must not be
# closed for the old one.
#
# To hold the worker between its decision and its signal, the test locks
# pg_authid: the worker looks up role names (for its events) in a
# transaction it starts after deciding, and blocks on the first role it has
# not looked up before.  While it waits, the due session B runs a statement
# and goes idle again.  Once the lock is gone, B must stay until its new
# deadline, 2 s later.  The worker is held in two places:
#
#   1. recording a leak suspect found in the same scan (default rate limit);
#   2. closing another due session first (max_terminations_per_second = 0);
#   3. as 2, for idle_in_transaction_timeout, where the statement B runs
#      stays inside its transaction (no new checkout, but a new idle period).
#
# Nothing may open a new connection while pg_authid is locked, so the test
# talks to the server through sessions opened beforehand.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node('recheck');
$node->safe_psql('postgres',
	'CREATE ROLE role_l LOGIN; CREATE ROLE role_b LOGIN; CREATE ROLE role_a LOGIN; CREATE ROLE role_c LOGIN;'
);
my $worker_pid = $node->safe_psql('postgres', 'SELECT enforcer_pid FROM pooldiag.health');

my ($admin) = open_session($node, app => 'admin');
my ($locker) = open_session($node, app => 'locker');
$admin->query_safe('SELECT pg_reload_conf()');
$locker->query_safe('SELECT count(*) FROM pg_locks');

# Lock pg_authid, apply the settings, wait until the worker blocks on the
# lock, run one statement on $victim, release.  Returns when the victim's
# new idle period started.
sub hold_worker_and_touch
{
	my ($victim, %settings) = @_;

	$locker->query_safe('BEGIN; LOCK TABLE pg_catalog.pg_authid IN ACCESS EXCLUSIVE MODE;');
	$admin->query_safe("ALTER SYSTEM SET $_ = '$settings{$_}'") for sort keys %settings;
	$admin->query_safe('SELECT pg_reload_conf()');

	my $blocked;
	my $until = time() + 15;
	do
	{
		usleep(50_000);
		$blocked = $locker->query_safe(
			"SELECT count(*) FROM pg_locks WHERE pid = $worker_pid AND NOT granted AND relation = 'pg_catalog.pg_authid'::regclass"
		);
	} while ($blocked ne '1' && time() < $until);
	is($blocked, '1', 'the worker made its decisions and waits for the lock');

	is($victim->query_safe('SELECT 1'), '1', 'B runs a statement after the decision');
	my $idle_since = time();
	$locker->query_safe('COMMIT');
	return $idle_since;
}

# B must stay until 2 s after $idle_since, then go, for the right reason.
sub check_victim
{
	my ($b_pid, $idle_since, $checkouts, $reason) = @_;
	$reason //= 'idle_timeout';

	ok(stays_alive($node, [$b_pid], $idle_since + 1.5 - time()),
		'B is not closed for the idle period that ended');
	is(wait_gone($node, [$b_pid], $idle_since + 4 - time()),
		'0', 'B is closed after its new idle period');
	wait_flushed($node);
	note 'B terminate event: '
	  . $node->safe_psql('postgres',
		"SELECT event_time || ' ' || detail FROM pooldiag.events WHERE event = 'terminate' AND pid = $b_pid"
	  );
	is( $node->safe_psql(
			'postgres',
			"SELECT reason, (detail->>'checkouts')::int, (detail->>'idle_ms')::numeric >= 2000 FROM pooldiag.events WHERE event = 'terminate' AND pid = $b_pid"
		),
		"$reason|$checkouts|t",
		'B was closed for 2 s idle after its last statement');
}

#
# 1. Held while recording a leak suspect.  L holds a checkout (an open
#    transaction) and B is idle; one reload makes L a leak suspect and B
#    overdue, so one scan decides both.
#
my ($l, $l_pid) = open_session($node, app => 'leaker', user => 'role_l');
$l->query_safe('BEGIN; SELECT 1;');
my ($b, $b_pid) = open_session($node, app => 'victim-b', user => 'role_b');
is( wait_for_value(
		$node,
		"SELECT bool_and(coalesce(idle_for, now() - checkout_start) > interval '2.3 s') FROM pooldiag.sessions WHERE pid IN ($l_pid, $b_pid)",
		't'),
	't',
	'B idle and L checked out for more than 2 s');

my $idle_since = hold_worker_and_touch($b,
	'pooldiag.idle_timeout' => '2s',
	'pooldiag.leak_threshold' => '1s');
check_victim($b_pid, $idle_since, 2);
is(wait_event_count($node, "pid = $l_pid AND event = 'leak_suspect'", '1'),
	'1', 'the leak suspect was recorded');
is($l->query_safe('COMMIT; SELECT 1;'), '1', 'L was not touched');
close_session($_) for $l, $b;

#
# 2. Held while closing another session first: without a rate limit the
#    worker closes every due session in one pass.  A is due first.
#
set_system($node,
	'pooldiag.idle_timeout' => undef,
	'pooldiag.leak_threshold' => undef,
	'pooldiag.max_terminations_per_second' => '0');
my ($a, $a_pid) = open_session($node, app => 'victim-a', user => 'role_a');
my ($c, $c_pid) = open_session($node, app => 'victim-b2', user => 'role_c');
is( wait_for_value(
		$node,
		"SELECT bool_and(idle_for > interval '2.3 s') FROM pooldiag.sessions WHERE pid IN ($a_pid, $c_pid)",
		't'),
	't',
	'A and B have been idle for more than 2 s');

$idle_since = hold_worker_and_touch($c, 'pooldiag.idle_timeout' => '2s');
check_victim($c_pid, $idle_since, 2);
is(wait_gone($node, [$a_pid], 5), '0', 'A, decided first, is closed');
is(event_sequence($node, $a_pid), 'connect,terminate:idle_timeout,disconnect:killed',
	'A: terminate and disconnect');

#
# 3. The same for idle_in_transaction_timeout: a statement inside the
#    transaction starts a new idle period without a new checkout, so the
#    re-check must also notice that the state changed since the decision.
#
set_system($node, 'pooldiag.idle_timeout' => undef);
$node->safe_psql('postgres',
	'CREATE ROLE role_e LOGIN; CREATE ROLE role_f LOGIN; CREATE TABLE t (who text); GRANT ALL ON t TO role_e, role_f;'
);
my ($e, $e_pid) = open_session($node, app => 'victim-a3', user => 'role_e');
$e->query_safe("BEGIN; INSERT INTO t VALUES ('a3');");
my ($f, $f_pid) = open_session($node, app => 'victim-b3', user => 'role_f');
$f->query_safe("BEGIN; INSERT INTO t VALUES ('b3');");
is( wait_for_value(
		$node,
		"SELECT bool_and(state = 'idle in transaction' AND state_change < now() - interval '2.3 s') FROM pooldiag.sessions WHERE pid IN ($e_pid, $f_pid)",
		't'),
	't',
	'A and B have been idle in their transactions for more than 2 s');

$idle_since = hold_worker_and_touch($f, 'pooldiag.idle_in_transaction_timeout' => '2s');
check_victim($f_pid, $idle_since, 2, 'idle_in_transaction_timeout');
is(wait_gone($node, [$e_pid], 5), '0', 'A, decided first, is closed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM t'), '0', 'both transactions were rolled back');

close_session($_) for $a, $c, $e, $f, $admin, $locker;
$node->stop;
done_testing();
