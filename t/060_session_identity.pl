# Requests between processes name a session, not a pid or a slot: a drain
# mark never reaches a later session in the same slot, even one with the
# same (reused) pid; and drain() checks the target's role as it is now, as
# pg_terminate_backend() does, not as it was at connect.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PgdWire;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('identity', conf => "autovacuum = off\n");
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE op LOGIN IN ROLE pg_signal_backend;
GRANT EXECUTE ON FUNCTION pooldiag.drain(name, name, text) TO op;
});

# --- A drain mark and a reused pid --------------------------------------
# Session A is marked while in a transaction (a drain waits for idle), then
# ends.  Session B is made to get A's pid: fork short-lived processes until
# the kernel's next pid is the one before A's, then connect (the postmaster
# forks the backend).  pid_max is 32768 here, so this takes a few seconds.
my $a = PgdWire->new($node, user => 'app', app => 'victim-a');
my $apid = $a->pid;
is($a->simple('BEGIN'), '', 'A opens a transaction');
is($node->safe_psql('postgres', "SELECT pooldiag.drain(NULL, NULL, 'victim-a')"),
	'1', 'A is marked for draining');
is(session_row($node, $apid, 'draining'), 't', 'A shows draining');
$a->close;
is(wait_gone($node, [$apid], 10), '0', 'A ended before it was ever idle');

sub last_forked_pid
{
	my $p = fork();
	POSIX::_exit(0) if $p == 0;
	waitpid($p, 0);
	return $p;
}

my $b;
my $offset = 1;    # pids the postmaster's fork is ahead of our last fork
for my $attempt (1 .. 10)
{
	my $want = $apid - $offset;
	my $forks = 0;
	while (1)
	{
		my $p = last_forked_pid();
		last if $p == $want;
		die 'could not reach the pid' if ++$forks > 200_000;
		# Past the target with no way back until the pids wrap: keep going.
	}
	my $before = $want;
	$b = PgdWire->new($node, user => 'app', app => 'newcomer');
	last if $b->pid == $apid;
	diag("attempt $attempt: got pid " . $b->pid . " for $apid");
	$offset = $b->pid - $before if $b->pid > $before && $b->pid - $before < 50;
	$b->close;
	undef $b;
}
ok(defined $b, 'a new session got the pid of the drained one')
  or BAIL_OUT('could not reuse the pid');
my $bpid = $b->pid;
is(session_row($node, $bpid, 'draining, application_name'), 'f|newcomer',
	'the new session does not inherit the drain mark');
ok(stays_alive($node, [$bpid], 2), 'the new session with the reused pid is not closed');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pooldiag.events WHERE event = 'terminate' AND reason = 'drain' AND pid = $bpid"),
	'0', 'no drain terminate event for the pid');
$b->close;

# --- Permission checks use the role as it is now ------------------------
my $promoted = PgdWire->new($node, user => 'app', app => 'promoted');
$node->safe_psql('postgres', 'ALTER ROLE app SUPERUSER');
my ($res, $out, $err);
$node->psql('postgres', "SELECT pooldiag.drain(NULL, NULL, 'promoted')",
	extra_params => [ '-U', 'op' ], stdout => \$out, stderr => \$err);
is($out, '0', 'a session whose role became superuser cannot be drained by a non-superuser');
like($err, qr/permission denied to drain 1 matching session/, 'with a permission WARNING');
is(session_row($node, $promoted->pid, 'draining'), 'f', 'it is not marked');
$promoted->close;

$node->safe_psql('postgres', 'CREATE ROLE boss LOGIN SUPERUSER');
my $demoted = PgdWire->new($node, user => 'boss', app => 'demoted');
$node->safe_psql('postgres', 'ALTER ROLE boss NOSUPERUSER');
$node->psql('postgres', "SELECT pooldiag.drain(NULL, NULL, 'demoted')",
	extra_params => [ '-U', 'op' ], stdout => \$out, stderr => \$err);
is($out, '1', 'a session whose role is no longer superuser can be drained with pg_signal_backend');
is(wait_gone($node, [ $demoted->pid ], 10), '0', 'and is closed');

$node->stop;
done_testing();
