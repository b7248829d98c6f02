# pooldiag.idle_in_transaction_timeout: a session idle inside a transaction
# (or an aborted one) for longer than the timeout is closed and its
# transaction rolled back; the timeout counts idle time since the last
# statement, not the age of the transaction; sessions idle outside a
# transaction are not its business.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node(
	'idle_in_transaction', conf => q{
pooldiag.idle_in_transaction_timeout = '2s'
});
$node->safe_psql('postgres',
	'CREATE ROLE app LOGIN; CREATE TABLE t (id int, who text); GRANT ALL ON t TO app;');

# A session idle outside a transaction, there for the whole test.
my ($bystander, $bystander_pid) = open_session($node, app => 'bystander', user => 'app');

#
# 1. A transaction that wrote a row, and an aborted one, both left idle.
#
my ($writer, $writer_pid) = open_session($node, app => 'writer', user => 'app');
my ($aborted, $aborted_pid) = open_session($node, app => 'aborted', user => 'app');
$writer->query_safe("BEGIN; INSERT INTO t VALUES (1, 'writer');");
my $writer_idle = time();
my (undef, $failed) = $aborted->query('BEGIN; SELECT 1/0;');
$aborted->{stderr} = '';
my $aborted_idle = time();
ok($failed, 'the second transaction failed');
is($writer->query_safe('SELECT count(*) FROM t'), '1', 'the writer sees its row');
my $writer_idle_since = time();

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(state || ' ' || idle_in_transaction_timeout || ' ' || terminate_reason, ',' ORDER BY application_name) FROM pooldiag.sessions WHERE pid IN ($writer_pid, $aborted_pid)"
	),
	'idle in transaction (aborted) 00:00:02 idle_in_transaction_timeout,idle in transaction 00:00:02 idle_in_transaction_timeout',
	'both are due for idle_in_transaction_timeout');
is(session_row($node, $bystander_pid, 'state, idle_in_transaction_timeout, terminate_at IS NULL'),
	'idle|00:00:02|t', 'the session idle outside a transaction has no deadline');

ok(stays_alive($node, [ $writer_pid, $aborted_pid ], $aborted_idle + 1.5 - time()),
	'neither is closed within 1.5 s');
is(wait_gone($node, [ $writer_pid, $aborted_pid ], $writer_idle_since + 4 - time()),
	'0', 'both are closed within 4 s');
is($node->safe_psql('postgres', 'SELECT count(*) FROM t'), '0',
	'the row the writer inserted was rolled back');

is(event_sequence($node, $writer_pid),
	'connect,terminate:idle_in_transaction_timeout,disconnect:killed',
	'writer: terminate (idle_in_transaction_timeout), then disconnect (killed)');
is(event_sequence($node, $aborted_pid),
	'connect,terminate:idle_in_transaction_timeout,disconnect:killed',
	'aborted: terminate (idle_in_transaction_timeout), then disconnect (killed)');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg((detail->>'checkouts') || ' ' || ((detail->>'idle_ms')::numeric BETWEEN 2000 AND 3000)::text || ' ' || (event_time >= (detail->>'deadline')::timestamptz)::text, ',' ORDER BY application_name) FROM pooldiag.events WHERE event = 'terminate' AND pid IN ($writer_pid, $aborted_pid)"
	),
	'2 true true,2 true true',
	'closed in their second checkout after 2 s idle in it, at the deadline');

#
# 2. A transaction that keeps running statements: older than the timeout,
#    but never idle that long.  Once it stops, it is closed 2 s later.
#
my ($chatty, $chatty_pid) = open_session($node, app => 'chatty', user => 'app');
$chatty->query_safe('BEGIN');
my $began = time();
foreach my $n (1 .. 5)
{
	ok(stays_alive($node, [$chatty_pid], 0.7), "still there before statement $n");
	$chatty->query_safe("INSERT INTO t VALUES ($n, 'chatty')");
}
my $last_statement = time();
cmp_ok($last_statement - $began, '>', 3, 'the transaction is older than 3 s');
ok(stays_alive($node, [$chatty_pid], $last_statement + 1.5 - time()),
	'not closed within 1.5 s of its last statement');
is(wait_gone($node, [$chatty_pid], $last_statement + 4 - time()),
	'0', 'closed within 4 s of its last statement');
is($node->safe_psql('postgres', 'SELECT count(*) FROM t'), '0',
	'its five rows were rolled back');
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT reason, (detail->>'idle_ms')::numeric BETWEEN 2000 AND 3000, event_time - backend_start > interval '5 s' FROM pooldiag.events WHERE event = 'terminate' AND pid = $chatty_pid"
	),
	'idle_in_transaction_timeout|t|t',
	'closed for 2 s idle since its last statement, not for the transaction age');

# The session idle outside a transaction was never touched.
is(backends_alive($node, $bystander_pid), '1', 'the session idle outside a transaction stays');
is($bystander->query_safe('SELECT 1'), '1', 'and works');
is($node->safe_psql('postgres', 'SELECT terminations FROM pooldiag.health'),
	'3', 'three terminations');

close_session($_) for $bystander, $writer, $aborted, $chatty;
$node->stop;
done_testing();
