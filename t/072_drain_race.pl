# A drain() that is about to mark a session that has just ended must not
# undo another drain() of the next session in the same registry slot.
#
# Found by the attack branch: pgd_registry_request_drain() stored the serial
# it was given unconditionally, then, seeing that the slot held another
# session by now, reset the request to 0.  If a second drain() had marked
# the slot's new session in between, that mark was overwritten and then
# cleared: the second drain() returned 1, yet the session was never closed.
#
# gdb stops the first drainer's backend as it enters
# pgd_registry_request_drain() for session S1.  S1 then ends, S2 gets the
# same slot and starts a transaction, and a second drainer marks S2 (drain
# waits until the transaction ends).  The first drainer goes on and finds its
# session gone.  S2 must still be marked, and be closed once its transaction
# ends.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PgdWire;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my ($gdb) = grep { -x } map { "$_/gdb" } split /:/, $ENV{PATH};
die 'gdb is not installed' unless $gdb;

my $node = pooldiag_node('drain_race');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

sub backend_id
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT b FROM pg_stat_get_backend_idset() b WHERE pg_stat_get_backend_pid(b) = $pid");
}

my $a = PgdWire->new($node, app => 'drainer-a');
my $b = PgdWire->new($node, app => 'drainer-b');
my $s1 = PgdWire->new($node, user => 'app', app => 's1');
my $s1_slot = backend_id($s1->pid);

my $go = $PostgreSQL::Test::Utils::tmp_check . '/drain_race_go';
unlink $go;
my ($gout, $gerr) = ('', '');
my $gdb_run = IPC::Run::start(
	[
		$gdb, '-nx', '-batch', '-p', $a->pid,
		'-ex', 'break pgd_registry_request_drain',
		'-ex', 'continue',
		'-ex', "shell while [ ! -f $go ]; do sleep 0.05; done",
		'-ex', 'detach'
	],
	'>', \$gout, '2>', \$gerr);
# Wait until gdb has set the breakpoint and let the process run again.
for (1 .. 600)
{
	$gdb_run->pump_nb;
	last if $gout =~ /Breakpoint 1 at/ && $gout =~ /Continuing|\n/;
	select(undef, undef, undef, 0.05);
}
select(undef, undef, undef, 0.5);

# The first drainer reaches the breakpoint with S1's serial.
$a->{sock}->syswrite(PgdWire::_msg('Q', "SELECT pooldiag.drain(NULL, 'app', NULL)\0"));
for (1 .. 600)
{
	$gdb_run->pump_nb;
	last if $gout =~ /Breakpoint 1, pgd_registry_request_drain/;
	select(undef, undef, undef, 0.05);
}
like($gout, qr/Breakpoint 1, pgd_registry_request_drain/,
	'the first drainer stopped before marking S1')
  or diag("gdb stdout:\n$gout\ngdb stderr:\n$gerr");

# S1 ends; S2 takes its slot and opens a transaction.
my $s1_pid = $s1->pid;
$s1->close;
is(wait_for_value($node, "SELECT count(*) FROM pooldiag.sessions WHERE pid = $s1_pid", '0'),
	'0', 'S1 is gone');
my $s2 = PgdWire->new($node, user => 'app', app => 's2');
is(backend_id($s2->pid), $s1_slot, 'S2 has the slot S1 had');
is($s2->simple('BEGIN'), '', 'S2 is in a transaction');

# The second drainer marks S2.
$b->{sock}->syswrite(PgdWire::_msg('Q', "SELECT pooldiag.drain(NULL, 'app', NULL)\0"));
my @msgs = $b->read_until_ready;
my ($row) = grep { $_->[0] eq 'D' } @msgs;
is(substr($row->[1], 6), '1', 'the second drain() marked one session');
is(session_row($node, $s2->pid, 'draining'), 't', 'S2 is draining');

# The first drainer goes on.
open my $fh, '>', $go or die "$go: $!";
close $fh;
$gdb_run->finish;
@msgs = $a->read_until_ready;
($row) = grep { $_->[0] eq 'D' } @msgs;
is(substr($row->[1], 6), '0', 'the first drain() found its session gone');

is(session_row($node, $s2->pid, 'draining'), 't',
	'S2 is still draining after the first drain() returned');
my $s2_pid = $s2->pid;
is($s2->simple('COMMIT'), '', 'S2 ends its transaction');
is(wait_gone($node, [$s2_pid], 10), '0', 'S2 is closed by the drain');

$a->close;
$b->close;
$node->stop;
done_testing();
