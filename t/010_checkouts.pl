# Checkout accounting and session states as another session sees them, and
# which backends are tracked.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = pooldiag_node('checkouts', init => { allows_streaming => 'logical' });

my ($app, $pid) = open_session($node, app => 'orders-api');

# open_session ran one statement (SELECT pg_backend_pid()).
is(session_row($node, $pid, 'checkouts, state, checkout_start IS NULL, idle_for IS NOT NULL'),
	'1|idle|t|t', 'one checkout after connecting, idle and checked in');
is(session_row($node, $pid, 'application_name, usename, datname'),
	'orders-api|' . $node->safe_psql('postgres', 'SELECT current_user') . '|postgres',
	'identity');

# Five autocommit transactions: exactly five checkouts.
$app->query_safe("SELECT $_") for 1 .. 5;
is(session_row($node, $pid, 'checkouts'), '6', 'five autocommit transactions, five checkouts');

# A block with three statements is one checkout, held until COMMIT.
$app->query_safe('BEGIN');
$app->query_safe("SELECT $_") for 1 .. 3;
is(session_row($node, $pid, "checkouts, state, checkout_start IS NOT NULL, idle_for IS NULL"),
	'7|idle in transaction|t|t', 'inside a block: one checkout, idle in transaction, checked out');
$app->query_safe('COMMIT');
is(session_row($node, $pid, 'checkouts, state, checkout_start IS NULL'),
	'7|idle|t', 'COMMIT checks in; still one checkout for the block');

# An error inside a block: aborted, still checked out, until ROLLBACK.
$app->query('BEGIN; SELECT 1/0;');
is(session_row($node, $pid, 'checkouts, state, checkout_start IS NOT NULL'),
	'8|idle in transaction (aborted)|t', 'failed block stays checked out');
# (psql may print the division error late, so this is not query_safe.)
$app->query('ROLLBACK');
is(session_row($node, $pid, 'checkouts, state, checkout_start IS NULL'),
	'8|idle|t', 'ROLLBACK of the failed block checks in');

# A running statement is "active" and checked out.
$app->{stdin} .= "SELECT pg_sleep(3);\n";
$app->{run}->pump_nb;
is( wait_for_value(
		$node,
		"SELECT state || ' ' || (checkout_start IS NOT NULL) FROM pooldiag.sessions WHERE pid = $pid",
		'active true'),
	'active true',
	'a running statement is active and checked out');
is(session_row($node, $pid, 'checkouts'), '9', 'its checkout is counted when it starts');

# Hold and idle times add up: the sleep is held, the pause is idle.
is(wait_for_value($node, "SELECT state FROM pooldiag.sessions WHERE pid = $pid", 'idle'),
	'idle', 'back to idle after the statement');
usleep(600_000);
is(session_row($node, $pid,
		"hold_time >= interval '3 s', idle_for >= interval '0.5 s', idle_time >= idle_for, age >= hold_time + idle_time - interval '1 ms'"),
	't|t|t|t', 'hold_time covers the sleep, idle_for the pause, age covers both');

# Only client backends are tracked: not pooldiag's enforcer and writer,
# autovacuum, the checkpointer, nor a WAL sender.
my $walsender = $node->background_psql('postgres', replication => 'database');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE s.pid IS NULL AND a.backend_type = 'client backend'),
       count(*) FILTER (WHERE s.pid IS NOT NULL AND a.backend_type <> 'client backend'),
       count(*) FILTER (WHERE a.backend_type = 'walsender'),
       count(*) FILTER (WHERE a.backend_type IN ('pooldiag enforcer', 'pooldiag writer'))
FROM pg_stat_activity a LEFT JOIN pooldiag.sessions s USING (pid)}),
	'0|0|1|2',
	'every client backend has a row and no other process has one');
$walsender->quit;

# A session that ends leaves the registry.
$app->quit;
is(wait_for_value($node, "SELECT count(*) FROM pooldiag.sessions WHERE pid = $pid", '0'),
	'0', 'a closed session has no row');

# Privacy follows pg_stat_activity: everyone sees that a session exists;
# its details only its own role, roles with its privileges, and
# pg_read_all_stats.
$node->safe_psql(
	'postgres', q{
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE carol LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE dave LOGIN IN ROLE alice;
});
my ($alice, $alice_pid) = open_session($node, app => 'alice-app', user => 'alice');
my $detail = 'pid IS NOT NULL, usename, application_name, state, checkouts, hold_time IS NOT NULL, client_addr';
my $row_as = sub {
	my ($role) = @_;
	return $node->safe_psql('postgres',
		"SET ROLE $role; SELECT $detail FROM pooldiag.sessions WHERE pid = $alice_pid");
};
is($row_as->('bob'), 't|alice||||f|', 'another role sees only pid, database and role');
is($row_as->('alice'), 't|alice|alice-app|idle|1|t|', 'the role itself sees everything');
is($row_as->('dave'), 't|alice|alice-app|idle|1|t|', 'a member of the role sees everything');
is($row_as->('carol'), 't|alice|alice-app|idle|1|t|', 'pg_read_all_stats sees everything');
$alice->quit;

$node->stop;
done_testing();
