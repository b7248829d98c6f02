# max_lifetime under load: pgbench clients that run transactions back to
# back live far past a 1.5 s lifetime and never see an error, because a
# session is closed only after recycle_min_idle (1 s) of idleness; idle
# sessions opened during the same run are recycled on time.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node(
	'lifetime_load', conf => q{
max_connections = 30
pooldiag.max_lifetime = '1500ms'
});
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

# Transactions with two statements each, back to back, as a non-superuser.
my $script = $node->basedir . '/load.sql';
append_to_file(
	$script, q{\set id random(1, 1000)
BEGIN;
SELECT :id;
SELECT pg_backend_pid();
END;
});
my ($out, $err) = ('', '');
my $pgbench;
{
	local $ENV{PGAPPNAME} = 'pgbench-load';
	$pgbench = IPC::Run::start(
		[
			'pgbench', '-n', '-c', '4', '-j', '2', '-T', '10',
			'-f', $script, '-h', $node->host, '-p', $node->port,
			'-U', 'app', 'postgres'
		],
		'>', \$out, '2>', \$err);
}
my $started = time();
is( wait_for_value(
		$node,
		"SELECT count(*) FROM pooldiag.sessions WHERE application_name = 'pgbench-load'", '4'),
	'4',
	'pgbench runs 4 clients');

# Idle sessions opened during the run, at the start and in the middle.
my (@idle, @idle_pids);
my $open_idle = sub {
	my ($name) = @_;
	my ($s, $pid) = open_session($node, app => $name, user => 'app');
	push @idle, $s;
	push @idle_pids, $pid;
	return ($pid, time());
};
my ($first, $first_opened) = $open_idle->('idle-1');
$open_idle->('idle-2');
is(wait_gone($node, [ @idle_pids ], $first_opened + 3.5 - time()),
	'0', 'the idle sessions opened with the run are recycled');

is( wait_for_value(
		$node,
		"SELECT count(*) FROM pooldiag.sessions WHERE application_name = 'pgbench-load' AND recycle_at < now() - interval '2 s' AND terminate_at IS NULL",
		'4'),
	'4',
	'the pgbench clients are well past their recycle_at, with no pending deadline');
my ($late, $late_opened) = $open_idle->('idle-3');
$open_idle->('idle-4');
is(wait_gone($node, [ @idle_pids ], $late_opened + 3.5 - time()),
	'0', 'idle sessions opened in the middle of the run are recycled');
cmp_ok(time() - $started, '<', 10, 'all while pgbench was running');

# pgbench ends by itself after 10 s.
my $ok = eval { $pgbench->finish; 1 };
ok($ok, 'pgbench finished');
is($pgbench->result(0), 0, 'pgbench exit code 0');
note "pgbench output:\n$out";
note "pgbench stderr:\n$err" if $err ne '';
like($out, qr/^number of clients: 4$/m, '4 clients');
like($out, qr/^number of failed transactions: 0 \(/m, 'no failed transaction');
like($out, qr/^number of transactions actually processed: [1-9]\d*$/m,
	'transactions were processed');
unlike($err, qr/server closed the connection|terminating connection|aborted|error/i,
	'no client error or closed connection on stderr');

# Events: only the idle sessions were closed, all for max_lifetime, none
# before its recycle_at.
wait_flushed($node);
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(application_name || ' ' || reason, ',' ORDER BY application_name)
FROM pooldiag.events WHERE event = 'terminate'}),
	'idle-1 max_lifetime,idle-2 max_lifetime,idle-3 max_lifetime,idle-4 max_lifetime',
	'the four idle sessions were closed for max_lifetime, and no pgbench client');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE (detail->>'age_ms')::numeric >= 1350 AND (detail->>'idle_ms')::numeric >= 1000)
FROM pooldiag.events WHERE event = 'terminate'}),
	'4',
	'each after at least its jittered lifetime and recycle_min_idle');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE (detail->>'age_ms')::numeric > 9000),
       count(*) FILTER (WHERE reason NOT IN ('normal', 'client_eof'))
FROM pooldiag.events WHERE event = 'disconnect' AND application_name = 'pgbench-load'}),
	'4|0',
	'the 4 pgbench clients lived the whole 10 s and every pgbench connection ended by itself'
);

close_session($_) for @idle;
$node->stop;
done_testing();
