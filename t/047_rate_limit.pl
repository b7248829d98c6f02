# pooldiag.max_terminations_per_second: when many sessions are overdue at
# once, they are closed at the configured rate, oldest deadline first;
# 0 means no limit.
#
# The sessions are opened with idle_timeout off, one after the other (so
# their last checkins, and therefore their deadlines, differ); then
# idle_timeout is set to 1 s through ALTER SYSTEM and a reload, which makes
# all of them overdue at the same moment.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node(
	'rate_limit', conf => q{
max_connections = 60
pooldiag.max_terminations_per_second = 5
});
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

# Open $n sessions named "$prefix-1" .. "$prefix-$n", then make them all
# overdue at once.  Returns the sessions and their pids.
sub overdue_sessions
{
	my ($prefix, $n) = @_;
	my (@sessions, @pids);

	foreach my $i (1 .. $n)
	{
		my ($s, $pid) = open_session($node, app => "$prefix-$i", user => 'app');
		push @sessions, $s;
		push @pids, $pid;
	}
	my $newest = $pids[-1];
	is( wait_for_value(
			$node,
			"SELECT idle_for > interval '1.2 s' AND terminate_at IS NULL FROM pooldiag.sessions WHERE pid = $newest",
			't'),
		't',
		"$n sessions idle for more than 1.2 s, without a deadline");
	set_system($node, 'pooldiag.idle_timeout' => '1000');
	return (\@sessions, \@pids);
}

# A query over the terminate events of one batch of sessions (by
# application_name prefix), available as "e".
sub terminates
{
	my ($prefix, $select) = @_;
	return $node->safe_psql('postgres', qq{
WITH e AS (
  SELECT event_time, event_id, application_name, (detail->>'deadline')::timestamptz AS deadline
  FROM pooldiag.events WHERE event = 'terminate' AND application_name LIKE '$prefix-%')
SELECT $select});
}

#
# 1. 30 overdue sessions at 5 per second: about 6 s, oldest deadline first.
#
my ($pool, $pids) = overdue_sessions('pool', 30);
is(wait_gone($node, $pids, 15), '0', 'all 30 sessions are closed');
wait_flushed($node);
is(terminates('pool', "count(*), count(DISTINCT application_name) FROM e"),
	'30|30', '30 terminate events, one per session');
my $span = terminates('pool', 'extract(epoch FROM max(event_time) - min(event_time)) FROM e');
note "first to last terminate: $span s";
cmp_ok($span, '>=', 4.5, 'the closes take at least 4.5 s');
cmp_ok($span, '<=', 8, 'and at most 8 s');
my $densest = terminates('pool',
	q{max(n) FROM (SELECT count(*) OVER (ORDER BY event_time RANGE BETWEEN CURRENT ROW AND interval '999 ms' FOLLOWING) AS n FROM e) w}
);
cmp_ok($densest, '<=', 6, 'no more than 6 closes within any 1 s');
is( terminates(
		'pool', q{count(*) FROM (SELECT deadline, lag(deadline) OVER (ORDER BY event_time, event_id) AS previous FROM e) o WHERE deadline < previous}
	),
	'0',
	'closed in order of non-decreasing deadline');
is(terminates('pool', q{string_agg(application_name, ',' ORDER BY event_time, event_id) FROM e}),
	join(',', map { "pool-$_" } 1 .. 30),
	'that is, in the order they went idle: oldest deadline first');
is($node->safe_psql('postgres', 'SELECT terminations FROM pooldiag.health'),
	'30', 'pooldiag.health counts 30 terminations');
close_session($_) for @$pool;

#
# 2. Without a limit: 20 overdue sessions go together.
#
set_system($node,
	'pooldiag.idle_timeout' => undef,
	'pooldiag.max_terminations_per_second' => '0');
my ($burst, $burst_pids) = overdue_sessions('burst', 20);
is(wait_gone($node, $burst_pids, 5), '0', 'all 20 sessions are closed');
wait_flushed($node);
is(terminates('burst', 'count(*) FROM e'), '20', '20 terminate events');
$span = terminates('burst', 'extract(epoch FROM max(event_time) - min(event_time)) FROM e');
note "first to last terminate: $span s";
cmp_ok($span, '<', 0.5, 'within 0.5 s of each other (10 per second would take 1.9 s)');
close_session($_) for @$burst;

$node->stop;
done_testing();
