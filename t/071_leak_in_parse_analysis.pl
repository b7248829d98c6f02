# A checkout that waits for a lock in parse analysis (the pile-up behind an
# ALTER TABLE or a LOCK TABLE) is a checkout from the moment its statement
# arrived (README, "What counts as a checkout"; pooldiag.sessions shows its
# checkout_start), so once it is held longer than leak_threshold it is a
# leak suspect like any other.
#
# Found by the attack branch: the enforcer's scan reads core's state only
# for sessions checked out in pooldiag's own slot, or already due for an
# idle deadline.  A statement still in parse analysis has no checkout in the
# slot, so without idle_timeout or max_lifetime it is never looked at: no
# leak_suspect however long it waits, and none at all if the wait ends in an
# error (lock_timeout, statement_timeout, a cancel).  (Any other session's
# leak suspect makes the scan read everything, which hides the bug; here the
# lock is held by a prepared transaction, which has no session.)
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'leak_parse_analysis',
	conf => "max_prepared_transactions = 2\npooldiag.leak_threshold = '1s'\n");
$node->safe_psql('postgres', 'CREATE TABLE t (x int)');
$node->safe_psql('postgres',
	"BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'hold';");

my ($s, $pid) = open_session($node, app => 'waiter');
my $marker = send_query($s, 'SELECT count(*) FROM t');
is( wait_for_value(
		$node,
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid",
		't'),
	't',
	'the statement waits for the lock in parse analysis');
is( wait_for_value(
		$node,
		"SELECT checkout_start < clock_timestamp() - interval '2 s' FROM pooldiag.sessions WHERE pid = $pid",
		't'),
	't',
	'pooldiag.sessions shows it checked out for more than twice leak_threshold');
is(wait_event_count($node, "event = 'leak_suspect' AND pid = $pid", '1', 5),
	'1',
	'the waiting checkout is a leak suspect while it waits');

# Ended by lock_timeout: the checkout lasted 3 s and ends in an error.
$node->safe_psql('postgres', "COMMIT PREPARED 'hold'");
wait_query($s, $marker, 30);
$node->safe_psql('postgres',
	"BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'hold2';");
my ($t, $tpid) = open_session($node, app => 'timed-out');
my (undef, undef, $err) = wait_query($t,
	send_query($t, "SET lock_timeout = '3s'; SELECT count(*) FROM t"), 30);
like($err, qr/lock timeout/, 'the second waiter gives up after 3 s');
wait_scans($node, 3);
wait_flushed($node);
is(event_count($node, "event = 'leak_suspect' AND pid = $tpid"), '1', 'a 3 s checkout that ended in lock_timeout was a leak suspect');
$node->safe_psql('postgres', "COMMIT PREPARED 'hold2'");

$s->quit;
$t->quit;
$node->stop;
done_testing();
