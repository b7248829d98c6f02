# pooldiag.drain(): marks the matching sessions (never the caller's own)
# and returns how many; idle ones are closed at once, busy ones (a running
# statement, an open transaction) only after they finish, which they do
# successfully.  Permissions are pg_terminate_backend()'s, and the function
# is not executable by PUBLIC.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node('drain');
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE someone LOGIN;
CREATE ROLE ops LOGIN;
CREATE ROLE signaller LOGIN IN ROLE pg_signal_backend;
CREATE ROLE lead LOGIN IN ROLE app;
});

my $draining = sub {
	my (@pids) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(application_name || ' ' || draining, ',' ORDER BY pid) FROM pooldiag.sessions WHERE pid IN ("
		  . join(',', @pids) . ')');
};

#
# 1. A superuser drains application "web": two idle sessions, one running
#    a statement, one in an open transaction.  The caller is itself "web",
#    and a session of another application must not be touched.
#
my ($caller, $caller_pid) = open_session($node, app => 'web');
my ($idle1, $idle1_pid) = open_session($node, app => 'web', user => 'app');
my ($idle2, $idle2_pid) = open_session($node, app => 'web', user => 'app');
my ($sleeper, $sleeper_pid) = open_session($node, app => 'web', user => 'app');
my ($txn, $txn_pid) = open_session($node, app => 'web', user => 'app');
my ($batch, $batch_pid) = open_session($node, app => 'batch', user => 'app');
my $sleep = send_query($sleeper, "SELECT pg_sleep(2.5), 'slept'");
my $sleep_started = time();
$txn->query_safe('BEGIN; SELECT 1;');
is( wait_for_value($node, "SELECT state FROM pooldiag.sessions WHERE pid = $sleeper_pid", 'active'),
	'active', 'one session is running a statement');

is($caller->query_safe("SELECT pooldiag.drain(application_name => 'web')"),
	'4', 'drain marks the four other "web" sessions');
my $drained = time();
# (The idle ones may be gone already.)
is( $draining->($sleeper_pid, $txn_pid, $batch_pid, $caller_pid),
	join(',', map { "$_->[0] $_->[1]" } sort { $a->[2] <=> $b->[2] } (
		[ 'web', 'true', $sleeper_pid ], [ 'web', 'true', $txn_pid ],
		[ 'batch', 'false', $batch_pid ], [ 'web', 'false', $caller_pid ])),
	'the busy ones are draining; "batch" and the caller are not');
is(wait_gone($node, [ $idle1_pid, $idle2_pid ], 1.0), '0',
	'the idle ones are closed within 1 s');
note sprintf('idle sessions closed %.2f s after the drain', time() - $drained);
is(session_row($node, $txn_pid, 'terminate_at IS NULL, draining'), 't|t',
	'the open transaction has no deadline yet');

ok(stays_alive($node, [ $sleeper_pid, $txn_pid ], $sleep_started + 2.3 - time()),
	'the busy ones stay while busy');
my ($finished, $out, $err) = wait_query($sleeper, $sleep, 10);
my $sleep_done = time();
ok($finished, 'the running statement completed');
is("$out|$err", '|slept|', 'successfully, with its result');
is($txn->query_safe('SELECT 2; COMMIT;'), '2', 'the open transaction runs on and commits');
my $committed = time();
is(wait_gone($node, [$sleeper_pid], $sleep_done + 1.5 - time()), '0',
	'the statement\'s session is closed within 1.5 s after it finished');
is(wait_gone($node, [$txn_pid], $committed + 1.5 - time()), '0',
	'the transaction\'s session is closed within 1.5 s after its commit');

is(backends_alive($node, $batch_pid, $caller_pid), '2', '"batch" and the caller are still there');
wait_flushed($node);
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*), count(*) FILTER (WHERE reason = 'drain'),
       count(*) FILTER (WHERE event_time >= (detail->>'deadline')::timestamptz)
FROM pooldiag.events WHERE event = 'terminate'}),
	'4|4|4',
	'four terminate events, reason drain');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pooldiag.events WHERE event = 'disconnect' AND reason = 'killed'"
	),
	join(',', sort { $a <=> $b } ($idle1_pid, $idle2_pid, $sleeper_pid, $txn_pid)),
	'and a disconnect "killed" for each of them');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg((detail->>'checkouts') || ' ' || ((detail->>'idle_ms')::numeric < 1000)::text, ',' ORDER BY pid) FROM pooldiag.events WHERE event = 'terminate' AND pid IN ($sleeper_pid, $txn_pid)"
	),
	'2 true,2 true',
	'the busy ones were closed right after the checkout they were in');
is($node->safe_psql('postgres', "SELECT pooldiag.drain(application_name => 'nobody')"),
	'0', 'no match, nothing marked');

#
# 2. Permissions.
#
my ($target, $target_pid) = open_session($node, app => 'target', user => 'app');
my ($su_target, $su_target_pid) = open_session($node, app => 'target');
my ($other_target, $other_target_pid) = open_session($node, app => 'target', user => 'someone');

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT pooldiag.drain(application_name => 'target')", extra_params => [ '-U', 'ops' ]);
isnt($ret, 0, 'without EXECUTE, drain fails');
like($stderr, qr/ERROR:  permission denied for function drain/, 'with "permission denied for function drain"');

$node->safe_psql('postgres',
	'GRANT EXECUTE ON FUNCTION pooldiag.drain(name, name, text) TO ops, signaller, lead');

# No privileges on any target role: nothing marked, a WARNING for all three.
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT pooldiag.drain(application_name => 'target')", extra_params => [ '-U', 'ops' ]);
is($stdout, '0', 'a role without privileges on the targets marks none');
like($stderr, qr/WARNING:  permission denied to drain 3 matching sessions/,
	'and is warned about the 3 it may not drain');

# A member of "app": only the session of app.
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT pooldiag.drain(application_name => 'target')", extra_params => [ '-U', 'lead' ]);
is($stdout, '1', 'a member of role app marks the session of app');
like($stderr, qr/WARNING:  permission denied to drain 2 matching sessions/,
	'and is warned about the two others');
is(wait_gone($node, [$target_pid], 1.0), '0', 'that session is closed');

# pg_signal_backend: every non-superuser session, no superuser session.
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT pooldiag.drain(application_name => 'target')", extra_params => [ '-U', 'signaller' ]);
is($stdout, '1', 'a member of pg_signal_backend marks the non-superuser session');
like($stderr, qr/WARNING:  permission denied to drain 1 matching session$/m,
	'and is warned about the superuser\'s session');
is(wait_gone($node, [$other_target_pid], 1.0), '0', 'that session is closed');
is($draining->($su_target_pid), 'target false', 'the superuser\'s session was not marked');
ok(stays_alive($node, [$su_target_pid], 0.5), 'and stays');
wait_flushed($node);

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(usename || ' ' || reason, ',' ORDER BY usename) FROM pooldiag.events WHERE event = 'terminate' AND pid IN ($target_pid, $other_target_pid, $su_target_pid)"
	),
	'app drain,someone drain',
	'both drained sessions have a terminate event with reason drain');

close_session($_) for $caller, $idle1, $idle2, $sleeper, $txn, $batch, $target, $su_target,
  $other_target;
$node->stop;
done_testing();
