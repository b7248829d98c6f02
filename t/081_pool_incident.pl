# The incident behind issue 8, replayed: a SQLAlchemy-like pool of one role
# from 127.0.0.1 with an empty application_name.  Three handlers leaked
# their connections after COMMIT, one holds SELECT ... FOR UPDATE inside a
# transaction, eleven requests are blocked behind it, and one slow request
# runs.  pooldiag.pools must give the exact counts, and the three idle
# leaks, and not the blocked victims, must be reported as leak_suspect with
# reason idle_while_pool_busy.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'incident', conf => q{
listen_addresses = '127.0.0.1'
max_connections = 40
});
$node->safe_psql(
	'postgres', q{
CREATE ROLE web LOGIN;
ALTER ROLE web SET pooldiag.leak_threshold = '2s';
CREATE TABLE accounts (id int PRIMARY KEY, n int);
INSERT INTO accounts VALUES (1, 0), (2, 0);
GRANT SELECT, UPDATE ON accounts TO web;
});

my (@sessions, %pid);
for my $name ((map { "leak$_" } 1 .. 3), 'holder', 'slow',
	(map { "victim$_" } 1 .. 11))
{
	my ($s, $pid) = open_session($node, app => '', user => 'web',
		hostaddr => '127.0.0.1');
	push @sessions, [ $name, $s ];
	$pid{$name} = $pid;
}
my %s = map { $_->[0] => $_->[1] } @sessions;
my $pool = "usename = 'web' AND application_name = '' AND client_addr = '127.0.0.1'";
is($node->safe_psql('postgres', "SELECT count(*), min(sessions) FROM pooldiag.pools WHERE $pool"),
	'1|16', 'all 16 sessions are in one pool');
$node->safe_psql('postgres', 'SELECT pooldiag.reset()');

# Three handlers run a transaction each, one after the other, and never
# return their connection to the pool.
$s{$_}->query_safe('BEGIN; SELECT n FROM accounts WHERE id = 2; COMMIT;')
  for qw(leak1 leak2 leak3);

# The culprit locks the row and sits in its transaction; a slow request
# runs; eleven requests queue behind the lock.
$s{holder}->query_safe('BEGIN; SELECT n FROM accounts WHERE id = 1 FOR UPDATE;');
my $slow = send_query($s{slow}, 'SELECT pg_sleep(60)');
my %blocked;
$blocked{$_} = send_query($s{$_}, 'UPDATE accounts SET n = n + 1 WHERE id = 1')
  for map { "victim$_" } 1 .. 11;

is(wait_for_value($node, "SELECT waiting_on_lock FROM pooldiag.pools WHERE $pool", '11'),
	'11', 'eleven sessions wait on the lock');
is( $node->safe_psql(
		'postgres',
		"SELECT sessions, busy, idle, idle_in_transaction, waiting_on_lock, peak_busy, longest_idle >= longest_checkout FROM pooldiag.pools WHERE $pool"
	),
	'16|13|3|1|11|13|t',
	'pools: 16 sessions, 13 busy (holder, slow, 11 victims), 3 idle, 1 idle in transaction, 11 waiting on a lock, peak_busy 13');

# Once the leaks have been idle for the threshold while the pool is stuck,
# exactly they are reported, once each.
my $leak_pids = join(',', sort { $a <=> $b } map { $pid{"leak$_"} } 1 .. 3);
is( wait_for_value(
		$node,
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pooldiag.recent_events() WHERE event = 'leak_suspect' AND reason = 'idle_while_pool_busy'",
		$leak_pids, 30),
	$leak_pids,
	'the three idle leaks get leak_suspect with reason idle_while_pool_busy');
wait_scans($node, 5);
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pooldiag.events WHERE event = 'leak_suspect' AND reason = 'idle_while_pool_busy'"
	),
	$leak_pids,
	'once each, over several scans');
my $victim_pids = join(',', map { $pid{"victim$_"} } 1 .. 11) . ",$pid{holder},$pid{slow}";
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pooldiag.events WHERE reason = 'idle_while_pool_busy' AND pid IN ($victim_pids)"
	),
	'0',
	'no blocked victim, nor the holder, nor the slow request gets the idle-leak reason');
is( $node->safe_psql(
		'postgres',
		"SELECT (detail->>'pool_busy')::int, (detail->>'idle_ms')::numeric >= 2000, detail->>'leak_threshold_ms' FROM pooldiag.events WHERE reason = 'idle_while_pool_busy' AND pid = $pid{leak1}"
	),
	'13|t|2000',
	'the event says how busy the pool was, how long the session had been idle, and the threshold');
is($node->safe_psql('postgres', "SELECT idle_leaks, leak_suspects >= idle_leaks FROM pooldiag.pools WHERE $pool"),
	'3|t', 'pools counts the three idle leaks');

# The culprit commits: the queue drains, and no more idle leaks are reported.
$s{holder}->query_safe('COMMIT');
for my $v (map { "victim$_" } 1 .. 11)
{
	my ($finished) = wait_query($s{$v}, $blocked{$v}, 30);
	ok($finished, "$v finished once the lock was released");
}
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid{slow})");
wait_query($s{slow}, $slow, 30);
is(wait_for_value($node, "SELECT busy FROM pooldiag.pools WHERE $pool", '0'),
	'0', 'nothing is busy any more');
wait_scans($node, 15);
wait_flushed($node);
is(event_count($node, "reason = 'idle_while_pool_busy'"), '3',
	'no further idle leak once the pool is no longer stuck');

close_session($_->[1]) for @sessions;
$node->stop;
done_testing();
