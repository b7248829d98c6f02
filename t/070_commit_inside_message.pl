# A COMMIT or ROLLBACK inside one simple Query message of several
# statements ("SELECT 1; COMMIT; SELECT 2"), or inside one extended-protocol
# pipeline before its Sync, ends a transaction but not the busy period: the
# session never goes idle in between (core keeps it "active", and no
# ReadyForQuery is sent).  The README defines a checkout as the busy period
# up to the moment the session is idle again outside a transaction block,
# and says that the Executes up to a Sync are one checkout.
#
# Found by the attack branch: pooldiag ends the checkout at the COMMIT and
# starts another one at the next statement, with the start time of the
# whole message, so
#   - one message counts as two checkouts (a pipeline with two COMMITs, as
#     three);
#   - the second checkout starts before the first one ended: hold_time grows
#     faster than the clock and exceeds the session's age;
#   - while the statement after the COMMIT waits for a lock in parse
#     analysis, pooldiag.sessions shows the active session with
#     checkout_start NULL and a growing idle_for.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PgdWire;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('commit_inside_message');
$node->safe_psql('postgres', 'CREATE TABLE t (x int)');

my ($s, $pid) = open_session($node, app => 'multi');

sub checkouts { return session_row($node, $pid, 'checkouts'); }

# One message, two statements of 0.5 s each around a COMMIT.
my $before = checkouts();
my $hold_before = session_row($node, $pid, 'extract(epoch FROM hold_time)');
$s->query("SELECT pg_sleep(0.5) \\; COMMIT \\; SELECT pg_sleep(0.5);");
is(checkouts(), $before + 1, 'one message with a COMMIT inside: one checkout');
my $hold = session_row($node, $pid, 'extract(epoch FROM hold_time)') - $hold_before;
cmp_ok($hold, '<', 1.4,
	'one message of about 1 s adds about 1 s of hold_time, not more');
is(session_row($node, $pid, 'hold_time <= age'), 't',
	'hold_time never exceeds the age of the session');

# The statement after the COMMIT waits for a lock in parse analysis.
my ($holder) = open_session($node, app => 'holder');
$holder->query_safe('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;');
$before = checkouts();
my $marker = send_query($s, 'SELECT 1 \\; COMMIT \\; SELECT count(*) FROM t');
is( wait_for_value(
		$node,
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid",
		't'),
	't',
	'the statement after the COMMIT waits for the lock');
is(session_row($node, $pid, 'state, checkout_start IS NOT NULL, idle_for IS NULL'),
	'active|t|t', 'while it waits, the active session is checked out, not idle');
$holder->query_safe('COMMIT');
my ($done) = wait_query($s, $marker, 30);
ok($done, 'the message finished');
is(checkouts(), $before + 1, 'that message too is one checkout');

# The extended protocol: the Executes up to a Sync are one checkout, COMMITs
# among them included.
my $w = PgdWire->new($node, app => 'pipeline');
my $wpid = $w->pid;
my $base = session_row($node, $wpid, 'checkouts');
$w->extended('SELECT 1', no_sync => 1);
$w->extended('COMMIT', no_sync => 1);
$w->extended('SELECT 2', no_sync => 1);
$w->extended('COMMIT', no_sync => 1);
$w->extended('SELECT 3', no_sync => 1);
is($w->sync, '', 'a pipeline with two COMMITs before its Sync');
is(session_row($node, $wpid, 'checkouts, state, checkout_start IS NULL'),
	($base + 1) . '|idle|t', 'the pipeline is one checkout');
$w->close;

$s->quit;
$holder->quit;
$node->stop;
done_testing();
