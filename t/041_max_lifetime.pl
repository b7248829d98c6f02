# pooldiag.max_lifetime with lifetime_jitter: each session gets its own
# recycle_at within [1 - jitter, 1] of the lifetime after its start; idle
# sessions are closed after it and never before; a session in an open
# transaction is left alone until it commits and has been idle for
# recycle_min_idle; so is a session running a statement past its recycle_at.
# A session's jitter fraction is fixed when it connects.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node(
	'lifetime', conf => q{
pooldiag.max_lifetime = '5s'
pooldiag.lifetime_jitter = 0.4
});
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

# 20 idle sessions opened together, one that opens a transaction, and one
# that runs a statement for 5.5 s.
my (@pool, @pids, %recycle);
my ($txn, $txn_pid) = open_session($node, app => 'in-transaction', user => 'app');
$txn->query_safe('BEGIN; SELECT 1;');
my ($busy, $busy_pid) = open_session($node, app => 'sleeper', user => 'app');
my $sleep = send_query($busy, "SELECT pg_sleep(5.5), 'slept'");
foreach my $n (1 .. 20)
{
	my ($s, $pid) = open_session($node, app => "pool-$n", user => 'app');
	push @pool, $s;
	push @pids, $pid;
}
# recycle_at as pooldiag.sessions shows it before anything is closed.
$node->safe_psql('postgres',
	"CREATE TABLE seen AS SELECT pid, backend_start, recycle_at, max_lifetime FROM pooldiag.sessions WHERE usename = 'app'"
);
note 'recycle ages (s): '
  . $node->safe_psql('postgres',
	"SELECT string_agg(round(extract(epoch FROM recycle_at - backend_start), 3)::text, ' ' ORDER BY pid) FROM seen"
  );
is( $node->safe_psql(
		'postgres', q{
SELECT count(*),
       count(*) FILTER (WHERE recycle_at BETWEEN backend_start + interval '3 s' AND backend_start + interval '5 s'),
       count(*) FILTER (WHERE max_lifetime = interval '5 s')
FROM seen}),
	'22|22|22',
	'every session has a recycle_at within [start + 3 s, start + 5 s]');
is( $node->safe_psql(
		'postgres', q{
SELECT max(recycle_at) - min(recycle_at) >= interval '1 s',
       max(recycle_at - backend_start) - min(recycle_at - backend_start) >= interval '1 s'
FROM seen}),
	't|t',
	'recycle_at values (and recycle ages) spread over at least 1 s');

# Never before recycle_at: no idle session goes before the earliest one
# (a look takes a few tens of milliseconds, hence the margin; the events
# below compare exact times).
my $first_recycle = $node->safe_psql('postgres',
	'SELECT extract(epoch FROM min(recycle_at)) FROM seen WHERE pid IN (' . join(',', @pids) . ')');
my $last_recycle = $node->safe_psql('postgres',
	'SELECT extract(epoch FROM max(recycle_at)) FROM seen');
ok(stays_alive($node, [ @pids, $txn_pid, $busy_pid ], $first_recycle - 0.25 - time()),
	'no session is closed before the earliest recycle_at');
is(wait_gone($node, \@pids, $last_recycle + 2 - time()),
	'0', 'all 20 idle sessions are closed within 2 s of the last recycle_at');

# The running statement is not interrupted.
my $busy_recycle = $node->safe_psql('postgres',
	"SELECT extract(epoch FROM recycle_at) FROM seen WHERE pid = $busy_pid");
my ($finished, $out, $err) = wait_query($busy, $sleep, 10);
my $busy_done = time();
ok($finished && $out eq '|slept' && $err eq '', 'the 5.5 s statement completed');
cmp_ok($busy_done, '>', $busy_recycle, 'past its session\'s recycle_at');

# The transaction is past its recycle_at and still there.
my $txn_recycle = $node->safe_psql('postgres',
	"SELECT extract(epoch FROM recycle_at) FROM seen WHERE pid = $txn_pid");
ok(stays_alive($node, [$txn_pid], $txn_recycle + 1.5 - time()),
	'the session in a transaction stays 1.5 s past its recycle_at');
is( session_row(
		$node, $txn_pid,
		'state, recycle_at < now(), terminate_at IS NULL, terminate_reason IS NULL'),
	'idle in transaction|t|t|t',
	'past its recycle_at, but no deadline while in the transaction');
is($txn->query_safe('SELECT 42; COMMIT;'), '42', 'its transaction goes on and commits');
my $committed = time();
is(session_row($node, $txn_pid, "terminate_reason, terminate_at - recycle_at > interval '0'"),
	'max_lifetime|t', 'after the commit it is due recycle_min_idle later, past recycle_at');
ok(stays_alive($node, [$txn_pid], $committed + 0.8 - time()),
	'it is not closed before it has been idle for recycle_min_idle (1 s)');
is(wait_gone($node, [$txn_pid], $committed + 3 - time()),
	'0', 'then it is closed');
is(wait_gone($node, [$busy_pid], $busy_done + 3 - time()),
	'0', 'the session of the long statement is closed after it, too');

# Events: one terminate (max_lifetime) per session, at or after its
# recycle_at, and a disconnect "killed" after that.
wait_flushed($node);
is( $node->safe_psql(
		'postgres', q{
SELECT count(*),
       count(*) FILTER (WHERE e.reason = 'max_lifetime'),
       count(*) FILTER (WHERE e.event_time >= s.recycle_at),
       count(*) FILTER (WHERE e.event_time < s.recycle_at + interval '1.5 s'),
       count(*) FILTER (WHERE (e.detail->>'deadline')::timestamptz >= s.recycle_at),
       count(*) FILTER (WHERE e.backend_start = s.backend_start)
FROM pooldiag.events e JOIN seen s USING (pid)
WHERE e.event = 'terminate' AND e.application_name LIKE 'pool-%'}),
	'20|20|20|20|20|20',
	'20 terminate events, reason max_lifetime, each at or after its recycle_at');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(*) FILTER (WHERE e.event_time >= s.recycle_at)
FROM pooldiag.events e JOIN seen s USING (pid)
WHERE e.event = 'disconnect' AND e.reason = 'killed'}),
	'22|22',
	'22 disconnect events, reason killed, none before recycle_at');
is( $node->safe_psql(
		'postgres',
		"SELECT reason, (detail->>'checkouts')::int, (detail->>'idle_ms')::numeric >= 1000, event_time >= (detail->>'deadline')::timestamptz FROM pooldiag.events WHERE event = 'terminate' AND pid = $txn_pid"
	),
	'max_lifetime|2|t|t',
	'the transaction session: closed for max_lifetime after 1 s idle following its commit');
is( $node->safe_psql(
		'postgres',
		"SELECT reason, (detail->>'checkouts')::int, (detail->>'idle_ms')::numeric >= 1000, event_time - backend_start > interval '6.4 s' FROM pooldiag.events WHERE event = 'terminate' AND pid = $busy_pid"
	),
	'max_lifetime|2|t|t',
	'the statement session: closed for max_lifetime after 1 s idle following the statement');
is($node->safe_psql('postgres', "SELECT count(*) FROM pooldiag.events WHERE event IN ('terminate', 'would_terminate')"),
	'22', 'no other terminate events');

close_session($_) for @pool, $txn, $busy;

#
# The jitter fraction is the session's own, fixed at connect: raising
# lifetime_jitter later must not pull the recycle_at of sessions already
# connected forward (which would make many of them due at once).
#
set_system($node, 'pooldiag.max_lifetime' => '100000', 'pooldiag.lifetime_jitter' => '0.1');
my ($fixed, $fixed_pid) = open_session($node, app => 'jitter-fixed', user => 'app');
my $recycle_before = session_row($node, $fixed_pid, 'recycle_at');
is( session_row(
		$node, $fixed_pid,
		"recycle_at BETWEEN backend_start + interval '90 s' AND backend_start + interval '100 s'"),
	't',
	'with jitter 0.1, recycle_at is within 90-100 s of a 100 s lifetime');
set_system($node, 'pooldiag.lifetime_jitter' => '0.5');
is(session_row($node, $fixed_pid, 'recycle_at'), $recycle_before,
	'raising lifetime_jitter to 0.5 leaves the recycle_at of a connected session as it was');
close_session($fixed);
$node->stop;
done_testing();
