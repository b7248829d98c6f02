# The incident behind issue 8, replayed: SQLAlchemy-like pools (pool_size 5,
# max_overflow 10) of one role from 127.0.0.1 with an empty
# application_name, declared as pool "web" by two application processes.
# In instance web-1:4711, three handlers leaked their connections after
# COMMIT, one holds SELECT ... FOR UPDATE inside a transaction, and eleven
# requests are blocked behind it: its 15 connections are all taken.
# Instance web-2:4712 has one idle connection.  pooldiag.pools must give
# the exact counts, and the three idle leaks, and neither the blocked
# victims nor the other instance's idle connection, must be reported as
# leak_suspect with reason idle_while_pool_busy.  pooldiag.sessions tells
# the blocker from its victims (blocked_by), and pooldiag.recommend() gives
# the settings to change and says that the two instances, 2 x (5 + 10) = 30,
# oversubscribe the server's 22 slots (max_connections 25).  These are the
# questions of issue 8's "Done when", answered from pools, sessions and
# recommend() alone.
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
max_connections = 25
});
$node->safe_psql(
	'postgres', q{
CREATE ROLE web LOGIN;
ALTER ROLE web SET pooldiag.leak_threshold = '2s';
CREATE TABLE accounts (id int PRIMARY KEY, n int);
INSERT INTO accounts VALUES (1, 0), (2, 0);
GRANT SELECT, UPDATE ON accounts TO web;
});

my $declare = '-c pooldiag.client_pool=web -c pooldiag.client_pool_size=5 -c pooldiag.client_max_overflow=10';
my (@sessions, %pid);
for my $name ((map { "leak$_" } 1 .. 3), 'holder',
	(map { "victim$_" } 1 .. 11), 'other')
{
	my $instance = $name eq 'other' ? 'web-2:4712' : 'web-1:4711';
	my ($s, $pid) = open_session($node, app => '', user => 'web',
		hostaddr => '127.0.0.1',
		options => "$declare -c pooldiag.client_instance=$instance");
	push @sessions, [ $name, $s ];
	$pid{$name} = $pid;
}
my %s = map { $_->[0] => $_->[1] } @sessions;
my $pool = "pool = 'web' AND usename = 'web'";
is( $node->safe_psql('postgres',
		"SELECT count(*), min(kind), min(sessions), min(declared_instances), min(declared_max) FROM pooldiag.pools WHERE $pool"),
	'1|declared|16|2|30',
	'all 16 sessions are in declared pool web: 2 instances of 5 + 10 each');
$node->safe_psql('postgres', 'SELECT pooldiag.reset()');

# Three handlers run a transaction each, one after the other, and never
# return their connection to the pool.
$s{$_}->query_safe('BEGIN; SELECT n FROM accounts WHERE id = 2; COMMIT;')
  for qw(leak1 leak2 leak3);

# The culprit locks the row and sits in its transaction; eleven requests
# queue behind the lock.
$s{holder}->query_safe('BEGIN; SELECT n FROM accounts WHERE id = 1 FOR UPDATE;');
my %blocked;
$blocked{$_} = send_query($s{$_}, 'UPDATE accounts SET n = n + 1 WHERE id = 1')
  for map { "victim$_" } 1 .. 11;

is(wait_for_value($node, "SELECT waiting_on_lock FROM pooldiag.pools WHERE $pool", '11'),
	'11', 'eleven sessions wait on the lock');
# Blocker or victim, from pooldiag.sessions alone: the eleven waiting
# sessions are exactly the victims; the holder waits for nothing and is
# idle in its transaction; it blocks one victim directly (the first in the
# row lock's queue), which blocks the rest, so that every victim's chain of
# blocked_by ends at the holder.
my $victim_set = join(',', sort { $a <=> $b } map { $pid{"victim$_"} } 1 .. 11);
is( $node->safe_psql('postgres',
		q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pooldiag.sessions
		  WHERE usename = 'web' AND cardinality(blocked_by) > 0 AND wait_event_type = 'Lock'}),
	$victim_set, 'the sessions blocked by another are exactly the eleven victims');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(s.pid::text || ' ' || s.state, ',') FROM pooldiag.sessions s
		  WHERE cardinality(s.blocked_by) = 0
		    AND EXISTS (SELECT 1 FROM pooldiag.sessions v WHERE s.pid = ANY (v.blocked_by))}),
	"$pid{holder} idle in transaction",
	'the one session that blocks others and waits for nothing is the holder, idle in its transaction');
is( $node->safe_psql('postgres',
		qq{WITH RECURSIVE chain(pid, root) AS (
		     SELECT pid, pid FROM pooldiag.sessions WHERE usename = 'web' AND cardinality(blocked_by) > 0
		     UNION
		     SELECT b, c.root FROM chain c JOIN pooldiag.sessions s ON s.pid = c.pid, unnest(s.blocked_by) b)
		   SELECT count(DISTINCT root) FROM chain WHERE pid = $pid{holder}}),
	'11', "every victim's chain of blocked_by leads to the holder");
is( $node->safe_psql(
		'postgres',
		"SELECT sessions, busy, idle, idle_in_transaction, waiting_on_lock, peak_busy, longest_idle >= longest_checkout FROM pooldiag.pools WHERE $pool"
	),
	'16|12|4|1|11|12|t',
	'pools: 16 sessions, 12 busy (holder, 11 victims), 4 idle (3 leaks, web-2), 1 idle in transaction, 11 waiting on a lock, peak_busy 12');

# Once the leaks have been idle for the threshold while the pool is stuck,
# exactly they are reported, once each.
my $leak_pids = join(',', sort { $a <=> $b } map { $pid{"leak$_"} } 1 .. 3);
# (Queued or already written: the writer may take an event from the queue
# between two looks.)
is( wait_for_value(
		$node,
		q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM (
		    SELECT pid FROM pooldiag.recent_events() WHERE event = 'leak_suspect' AND reason = 'idle_while_pool_busy'
		    UNION
		    SELECT pid FROM pooldiag.events WHERE event = 'leak_suspect' AND reason = 'idle_while_pool_busy') e},
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
my $victim_pids = join(',', map { $pid{"victim$_"} } 1 .. 11) . ",$pid{holder},$pid{other}";
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pooldiag.events WHERE reason = 'idle_while_pool_busy' AND pid IN ($victim_pids)"
	),
	'0',
	'no blocked victim, nor the holder, nor the idle connection of instance web-2 gets the idle-leak reason');
is( $node->safe_psql(
		'postgres',
		"SELECT (detail->>'pool_busy')::int, (detail->>'idle_ms')::numeric >= 2000, detail->>'leak_threshold_ms' FROM pooldiag.events WHERE reason = 'idle_while_pool_busy' AND pid = $pid{leak1}"
	),
	'12|t|2000',
	'the event says how busy the pool was, how long the session had been idle, and the threshold');
is($node->safe_psql('postgres', "SELECT idle_leaks, leak_suspects >= idle_leaks FROM pooldiag.pools WHERE $pool"),
	'3|t', 'pools counts the three idle leaks');
is( $node->safe_psql(
		'postgres',
		"SELECT count(DISTINCT s.client_port), min(s.client_instance), max(s.client_instance) FROM pooldiag.sessions s JOIN pooldiag.events e ON e.pid = s.pid AND e.reason = 'idle_while_pool_busy'"
	),
	'3|web-1:4711|web-1:4711',
	'the leaked connections: three client ports, all of instance web-1:4711');

# The culprit commits: the queue drains, and no more idle leaks are reported.
$s{holder}->query_safe('COMMIT');
for my $v (map { "victim$_" } 1 .. 11)
{
	my ($finished) = wait_query($s{$v}, $blocked{$v}, 30);
	ok($finished, "$v finished once the lock was released");
}
is(wait_for_value($node, "SELECT busy FROM pooldiag.pools WHERE $pool", '0'),
	'0', 'nothing is busy any more');
wait_scans($node, 15);
wait_flushed($node);
is(event_count($node, "reason = 'idle_while_pool_busy'"), '3',
	'no further idle leak once the pool is no longer stuck');

# The settings to change, from pooldiag.recommend(): peak_busy 12 over the
# 2 instances is 6 each, so pool_size ceil(6 x 1.2) = 8 and bursts to 12,
# max_overflow 4; but 2 x 12 = 24 is more than the 22 slots
# (max_connections 25 less 3 reserved), so max_overflow is cut to
# 22 / 2 - 8 = 3.  Nothing closes sessions on this server, so nothing to
# recycle below and no need to pre-ping.
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(setting || ' ' || coalesce(current, 'NULL') || ' -> '
		                    || coalesce(recommended, 'NULL'), ', ' ORDER BY setting)
		  FROM pooldiag.recommend() WHERE pool = 'web' AND usename = 'web'
		   AND setting IN ('pool_size', 'max_overflow', 'pool_recycle', 'pre_ping')}),
	'max_overflow 10 -> 3, pool_recycle NULL -> NULL, pool_size 5 -> 8, pre_ping NULL -> false',
	'recommend(): pool_size 8 from peak_busy 12 over 2 instances, max_overflow 3 to fit the slots');
like( $node->safe_psql('postgres',
		q{SELECT reason FROM pooldiag.recommend() WHERE pool = 'web' AND setting = 'max_overflow'}),
	qr/^bursts up to 2 x 6 = 12 per instance, less pool_size 8 = 4; 2 x 12 = 24 > 22 slots: cut to 2 x \(8 \+ 3\) = 22; /,
	'the reason gives the numbers: 2 x 12 = 24 > 22 slots, cut to 2 x (8 + 3) = 22');
# The oversubscription: the two instances may open 2 x (5 + 10) = 30
# connections, more than the 22 slots.
is( $node->safe_psql('postgres',
		q{SELECT current || ' -> ' || recommended || ': ' || reason FROM pooldiag.recommend() WHERE pool = '(server)'}),
	q{25 -> 33: declared pools may open 30 connections (web 2 x 15) > 22 slots (max_connections 25 - 3 reserved): lower pool_size + max_overflow per instance (see the pools' rows), or raise max_connections to 33, or put PgBouncer in front of the server},
	'recommend() says the declared pools oversubscribe the server: 30 > 22 slots');

close_session($_->[1]) for @sessions;
$node->stop;
done_testing();
