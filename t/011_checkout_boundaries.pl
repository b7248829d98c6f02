# Where a checkout begins and ends: every way a transaction block can end,
# statements that commit inside themselves (CREATE INDEX CONCURRENTLY,
# VACUUM of several tables, procedures), waits in parse analysis, and the
# extended protocol.  Each case starts from an idle session and must add
# exactly the checkouts a pool would count, ending idle and checked in.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PgdWire;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('boundaries',
	conf => "max_prepared_transactions = 5\nautovacuum = off\n");

$node->safe_psql(
	'postgres', q{
CREATE TABLE t (x int);
INSERT INTO t SELECT g FROM generate_series(1, 1000) g;
CREATE TABLE t2 (x int);
CREATE TABLE deferred (id int UNIQUE DEFERRABLE INITIALLY DEFERRED);
CREATE PROCEDURE commits_twice() LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1; COMMIT; PERFORM 2; ROLLBACK; PERFORM 3;
END $$;
});

my ($s, $pid) = open_session($node, app => 'boundaries');

sub checkouts { return session_row($node, $pid, 'checkouts'); }

# Run $sql (several lines allowed, errors expected) and check the number of
# checkouts it added and that the session ends idle and checked in.
sub case_is
{
	my ($sql, $expected, $name) = @_;
	my $before = checkouts();
	$s->query($sql);
	my $after = session_row($node, $pid,
		'checkouts, state, checkout_start IS NULL, idle_for IS NOT NULL');
	is($after, ($before + $expected) . '|idle|t|t', $name);
}

case_is("SELECT 1/0;", 1, 'a failing autocommit statement: 1');
case_is("SELECT 1 \\; SELECT 1/0 \\; SELECT 2;", 1,
	'a multi-statement message failing part way: 1');
case_is("BEGIN;\nSELECT 1;\nCOMMIT;", 1, 'BEGIN ... COMMIT: 1');
case_is("BEGIN;\nSELECT 1;\nROLLBACK;", 1, 'BEGIN ... ROLLBACK: 1');
case_is("BEGIN;\nSELECT 1/0;\nROLLBACK;", 1, 'error in a block, then ROLLBACK: 1');
case_is("BEGIN;\nSELECT 1/0;\nCOMMIT;", 1, 'error in a block, then COMMIT: 1');
case_is("BEGIN;\nSAVEPOINT s;\nSELECT 1/0;\nROLLBACK;", 1,
	'error in a savepoint, then ROLLBACK: 1');
case_is("BEGIN;\nSAVEPOINT s;\nSELECT 1/0;\nCOMMIT;", 1,
	'error in a savepoint, then COMMIT (rolls back): 1');
case_is("BEGIN;\nSAVEPOINT s;\nSELECT 1/0;\nROLLBACK TO s;\nSELECT 1;\nCOMMIT;", 1,
	'error in a savepoint, ROLLBACK TO, COMMIT: 1');
case_is("BEGIN;\nSAVEPOINT s;\nSELECT 1;\nRELEASE s;\nSELECT 1/0;\nROLLBACK;", 1,
	'error outside a released savepoint, then ROLLBACK: 1');
case_is("BEGIN;\nSELECT 1;\nCOMMIT AND CHAIN;\nSELECT 2;\nCOMMIT;", 1,
	'COMMIT AND CHAIN, then COMMIT: 1');
case_is("BEGIN;\nSELECT 1;\nROLLBACK AND CHAIN;\nSELECT 2;\nCOMMIT;", 1,
	'ROLLBACK AND CHAIN, then COMMIT: 1');
case_is("BEGIN;\nSELECT 1/0;\nROLLBACK AND CHAIN;\nSELECT 2;\nCOMMIT;", 1,
	'error, ROLLBACK AND CHAIN, COMMIT: 1');
case_is("BEGIN;\nSELECT 1/0;\nCOMMIT AND CHAIN;\nSELECT 2;\nCOMMIT;", 1,
	'error, COMMIT AND CHAIN (rolls back and chains), COMMIT: 1');
case_is("BEGIN;\nSAVEPOINT s;\nSELECT 1/0;\nROLLBACK AND CHAIN;\nSELECT 2;\nCOMMIT;", 1,
	'error in a savepoint, ROLLBACK AND CHAIN, COMMIT: 1');
case_is("BEGIN;\nSAVEPOINT s;\nSELECT 1/0;\nCOMMIT AND CHAIN;\nSELECT 2;\nCOMMIT;", 1,
	'error in a savepoint, COMMIT AND CHAIN, COMMIT: 1');
case_is("BEGIN;\nINSERT INTO deferred VALUES (1), (1);\nCOMMIT;", 1,
	'a COMMIT failing on a deferred constraint: 1');
case_is("BEGIN;\nINSERT INTO deferred VALUES (1), (1);\nCOMMIT AND CHAIN;", 1,
	'a failing COMMIT AND CHAIN does not chain: 1, idle');
case_is("BEGIN;\nSELECT 1;\nPREPARE TRANSACTION 'p1';", 1, 'PREPARE TRANSACTION: 1');
case_is("COMMIT PREPARED 'p1';", 1, 'COMMIT PREPARED: 1');
case_is("BEGIN;\nCREATE TEMP TABLE tmp (x int);\nPREPARE TRANSACTION 'p2';", 1,
	'a failing PREPARE TRANSACTION: 1');
case_is("BEGIN;\nSAVEPOINT s;\nSELECT 1/0;\nPREPARE TRANSACTION 'p3';", 1,
	'PREPARE TRANSACTION after an error in a savepoint (rolls back): 1');
case_is("CALL commits_twice();", 1, 'a procedure that commits and rolls back: 1');
case_is("DO \$\$ BEGIN COMMIT; END \$\$;", 1, 'DO with a COMMIT: 1');
case_is("VACUUM t, t2;", 1, 'VACUUM of two tables: 1');
case_is("CREATE INDEX CONCURRENTLY t_x ON t (x);", 1, 'CREATE INDEX CONCURRENTLY: 1');
case_is("REINDEX INDEX CONCURRENTLY t_x;", 1, 'REINDEX CONCURRENTLY: 1');
case_is("ROLLBACK;", 1, 'ROLLBACK outside a block (a warning): 1');
# Session set-up statements on their own configure the connection, as
# PgBouncer's SET application_name before each transaction does.
case_is("SET application_name = 'pgbouncer-client';", 0, 'a SET on its own: 0');
case_is("RESET application_name;", 0, 'a RESET on its own: 0');
case_is("SET work_mem = 'bogus';", 0, 'a failing SET on its own: 0');
case_is("DISCARD ALL;", 0, 'DISCARD ALL on its own: 0');
case_is("SET application_name = 'boundaries';\nSELECT 1;", 1,
	'a SET, then a statement: 1 (the statement)');
# PgBouncer sends all the tracked parameters that differ as one message.
case_is("SET DateStyle = 'ISO, MDY' \\; SET application_name = 'pgbouncer-client';",
	0, 'SETs in one message (an implicit block): 0');
case_is("SET DateStyle = 'ISO, MDY' \\; RESET application_name \\; SELECT 1;", 1,
	'SETs and a statement in one message: 1');
case_is("SET DateStyle = 'ISO, MDY' \\; SELECT * FROM no_such_table;", 1,
	'a SET and a statement failing in parse analysis in one message: 1');
case_is("SET DateStyle = 'ISO, MDY' \\; SET work_mem = 'bogus';", 0,
	'SETs in one message, the last failing: 0');
case_is("BEGIN;\nSET LOCAL work_mem = '8MB';\nSELECT 1;\nCOMMIT;", 1,
	'SET inside a block is part of it: 1');
case_is("COMMIT AND CHAIN;", 1, 'COMMIT AND CHAIN outside a block (an error): 1');

# A statement that commits inside itself stays checked out for its whole
# run: CREATE INDEX CONCURRENTLY waiting for an older snapshot after its
# first internal commits, and VACUUM waiting for the lock of its second table.
my ($holder) = open_session($node, app => 'holder');

sub busy_while_waiting
{
	my ($hold, $sql, $release, $name) = @_;
	my $before = checkouts();
	$holder->query_safe($hold);
	my $marker = send_query($s, $sql);
	is( wait_for_value(
			$node,
			"SELECT wait_event_type IS NOT NULL FROM pg_stat_activity WHERE pid = $pid",
			't'),
		't',
		"$name: it waits");
	sleep 1;
	is(session_row($node, $pid,
			"state, checkout_start IS NOT NULL, idle_for IS NULL, checkouts, checkout_start <= clock_timestamp() - interval '900 ms'"),
		'active|t|t|' . ($before + 1) . '|t',
		"$name: checked out for the whole wait");
	$holder->query_safe($release);
	my ($done) = wait_query($s, $marker, 30);
	ok($done, "$name: finished");
	is(session_row($node, $pid, 'checkouts, state, checkout_start IS NULL'),
		($before + 1) . '|idle|t', "$name: one checkout in all");
}

busy_while_waiting(
	"BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t2;",
	"CREATE INDEX CONCURRENTLY t_x2 ON t (x)",
	'COMMIT', 'CREATE INDEX CONCURRENTLY behind an old snapshot');
busy_while_waiting(
	"BEGIN; LOCK TABLE t2 IN SHARE UPDATE EXCLUSIVE MODE;",
	"VACUUM t, t2", 'COMMIT', 'VACUUM t, t2 waiting for t2');

# Parse analysis opens the relation: a lock wait there, before any executor
# or utility hook, is part of the checkout (the view takes it from core).
busy_while_waiting(
	"BEGIN; LOCK TABLE t2 IN ACCESS EXCLUSIVE MODE;",
	"SELECT count(*) FROM t2", 'COMMIT', 'a lock wait in parse analysis');

# The extended protocol: an error, then Sync.
my $w = PgdWire->new($node, app => 'wire');
my $wpid = $w->pid;
my $wcount = sub { session_row($node, $wpid, 'checkouts, state, checkout_start IS NULL') };
my $base = (split /\|/, $wcount->())[0];
is($w->extended('SELECT 1/0'), '22012', 'extended protocol: the error arrives');
is($wcount->(), ($base + 1) . '|idle|t', 'extended protocol: error and Sync, 1');
$w->extended('SELECT 1', no_sync => 1);
$w->extended('SELECT 2', no_sync => 1);
is($w->sync, '', 'extended protocol: two Executes and one Sync');
is($wcount->(), ($base + 2) . '|idle|t', 'extended protocol: one transaction before Sync, 1');
is($w->simple('BEGIN'), '', 'BEGIN');
is($w->extended('SELECT 1/0'), '22012', 'an error in a block over the extended protocol');
is($w->{status}, 'E', 'the block is aborted');
is(session_row($node, $wpid, 'checkouts, state, checkout_start IS NOT NULL'),
	($base + 3) . '|idle in transaction (aborted)|t',
	'extended protocol: Sync after an error in a block keeps it checked out');
is($w->simple('ROLLBACK'), '', 'ROLLBACK');
is($wcount->(), ($base + 3) . '|idle|t', 'extended protocol: the block is 1');
$w->close;

$s->quit;
$holder->quit;
$node->stop;
done_testing();
