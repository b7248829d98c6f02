# Enforcement does not depend on the event table: a lock on pooldiag.events
# and a writer busy with a stream of events both leave deadlines met within
# naptime, because the enforcer and the writer are separate processes.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

# naptime is 200 ms (PoolDiagTest); a close may come that much after its
# deadline, plus the time a busy two-core machine needs to schedule it.
my $slack = 0.8;

my $node = pooldiag_node(
	'independent', conf => q{
pooldiag.idle_timeout = '2s'
});
# Superusers are exempt by default: the sessions to close use this role.
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
wait_flushed($node);

# The deadline of a session, in seconds since the epoch.
sub deadline_of
{
	my ($pid) = @_;
	return session_row($node, $pid, 'extract(epoch FROM terminate_at)');
}

#
# 1. LOCK TABLE pooldiag.events for 10 s: the writer cannot write, and says
#    so in pooldiag.health; the enforcer closes an idle session on time.
#
my ($locker) = open_session($node, app => 'locker');
$locker->query_safe('BEGIN; LOCK TABLE pooldiag.events IN ACCESS EXCLUSIVE MODE;');
my $locked_at = time();

my ($idle, $idle_pid) = open_session($node, app => 'idler', user => 'app');
my $deadline = deadline_of($idle_pid);
is(wait_gone($node, [$idle_pid], $deadline + 0.2 + $slack - time()),
	'0', 'the idle session is closed within naptime of its deadline while the table is locked');
my $closed_after = time() - $deadline;
note sprintf('closed %.2f s after its deadline', $closed_after);
cmp_ok($closed_after, '<', 0.2 + $slack, 'not later');

# The session's connect event is queued and cannot be written.
is( wait_for_value(
		$node, 'SELECT writer_state FROM pooldiag.health', 'write-blocked', 10),
	'write-blocked',
	'pooldiag.health says that the writer is blocked by the lock');
cmp_ok(
	$node->safe_psql('postgres', 'SELECT events_queued FROM pooldiag.health'),
	'>=', 2, 'events stay queued meanwhile');
is( $node->safe_psql(
		'postgres',
		"SELECT enforcer_state, lateness < interval '1 s', max_lateness < interval '1 s' FROM pooldiag.health"),
	'running|t|t',
	'the enforcer runs, and its last close was less than 1 s late');

# Keep the lock for 10 s in all, then let go.
my $rest = $locked_at + 10 - time();
usleep(int($rest * 1_000_000)) if $rest > 0;
$locker->query_safe('COMMIT');

is(wait_for_value($node, 'SELECT writer_state FROM pooldiag.health', 'running'),
	'running', 'the writer runs again once the lock is gone');
is(event_sequence($node, $idle_pid),
	'connect,terminate:idle_timeout,disconnect:killed',
	'the close was recorded once, with its reason, when the lock was released');
is( $node->safe_psql(
		'postgres',
		"SELECT event_time - (detail->>'deadline')::timestamptz < interval '1 s' FROM pooldiag.events WHERE event = 'terminate' AND pid = $idle_pid"
	),
	't',
	'the terminate event is less than 1 s after the deadline');
my $log = slurp_file($node->logfile);
my @blocked = ($log =~ /LOG:  pooldiag writer could not write events: table "pooldiag.events" is locked/g);
is(scalar(@blocked), 1, 'the writer logged the lock once, not once per retry');
like($log, qr/LOG:  pooldiag writer resumed writing events/, 'and that it resumed');
unlike($log, qr/pooldiag (writer|enforcer).*(FATAL|ERROR)/, 'no worker failed');
$locker->quit;

#
# 2. log_checkouts = all under pgbench load: a stream of events keeps the
#    writer busy; idle sessions opened during the run are closed on time.
#
# Statement logging would slow pgbench down more than anything pooldiag does.
# Indexes that an operator might add for queries make each write slower.
set_system($node, 'pooldiag.log_checkouts' => 'all', 'log_statement' => 'none');
$node->safe_psql('postgres', q{
CREATE INDEX events_by_app ON pooldiag.events (application_name, event_time);
CREATE INDEX events_by_detail ON pooldiag.events USING gin (detail);
});
$node->command_ok([ 'pgbench', '-i', '-q', '-s', '1', '-h', $node->host, '-p', $node->port, 'postgres' ],
	'pgbench tables created');
my ($out, $err) = ('', '');
my $pgbench;
{
	local $ENV{PGAPPNAME} = 'pgbench-load';
	$pgbench = IPC::Run::start(
		[
			'pgbench', '-n', '-S', '-c', '4', '-j', '2', '-T', '14',
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
}
is( wait_for_value(
		$node,
		"SELECT count(*) FROM pooldiag.sessions WHERE application_name = 'pgbench-load'", '4'),
	'4',
	'pgbench runs 4 clients');

# Eight idle sessions, one a second, each due 2 s after it opened.
my (@sessions, @pids, %deadline);
for my $i (1 .. 8)
{
	my ($s, $pid) = open_session($node, app => "idle-$i", user => 'app');
	push @sessions, $s;
	push @pids, $pid;
	$deadline{$pid} = deadline_of($pid);
	usleep(1_000_000);
}
my $last_deadline = (sort { $a <=> $b } values %deadline)[-1];
is(wait_gone($node, \@pids, $last_deadline + 0.2 + $slack - time()),
	'0', 'every idle session is closed within naptime of its deadline under load');

$pgbench->finish;
like($out, qr/number of transactions actually processed: \d+/, 'pgbench ran');
my $written = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pooldiag.events WHERE event = 'checkout'});
note "checkout events written so far: $written";

wait_flushed($node);
# The writer may not keep up with this stream: the ring then drops events
# (counted in events_dropped), terminate events among them.  The enforcer's
# own accounting in pooldiag.health covers every close.
note 'events dropped: '
  . $node->safe_psql('postgres', 'SELECT events_dropped FROM pooldiag.health');
is($node->safe_psql('postgres', 'SELECT terminations FROM pooldiag.health'),
	'9', 'pooldiag.health counts the 8 closes (and the one of part 1)');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE event_time - (detail->>'deadline')::timestamptz >= interval '1 s')
		 FROM pooldiag.events WHERE event = 'terminate' AND pid IN (" . join(',', @pids) . ')'),
	'0',
	'no terminate event written is 1 s or more after its deadline');
is($node->safe_psql('postgres', "SELECT max_lateness < interval '1 s' FROM pooldiag.health"),
	't', "pooldiag.health's max_lateness, over all closes, stayed under 1 s");
close_session($_) for @sessions;

$node->stop;
done_testing();
