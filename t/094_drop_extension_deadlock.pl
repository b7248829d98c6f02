# DROP EXTENSION pooldiag while the writer is writing events must not
# deadlock with it.  DROP EXTENSION locks the events table's identity
# sequence and then the table; the writer used to lock the table and then,
# in the INSERT's nextval(), the sequence.  The deadlock detector then
# cancelled one of them, often the user's DROP ("deadlock detected"): 21 of
# 60 DROPs failed that way before the writer took the sequence first.
#
# pgbench -S with log_checkouts = 'all' keeps the writer writing (two events
# per transaction, flushed every 10 ms) while the extension is dropped and
# created again 40 times.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = pooldiag_node('drop_deadlock', conf => q{
pooldiag.log_checkouts = 'all'
pooldiag.flush_interval = '10ms'
});
$node->command_ok([ 'pgbench', '-i', '-s', '1', '-q', '-d', $node->connstr('postgres') ],
	'pgbench tables');
my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-S', '-c', '2', '-T', '60', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);

my ($drops, @failed) = (0);
for my $i (1 .. 40)
{
	is(wait_for_value($node,
			q{SELECT writer_state FROM pooldiag.health}, 'running', 10),
		'running', "round $i: the writer is writing") if $i % 10 == 1;
	my ($ret, $o, $e) = $node->psql('postgres', 'DROP EXTENSION pooldiag');
	if ($ret == 0) { $drops++ } else { push @failed, "round $i: $e" }
	$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS pooldiag');
	select(undef, undef, undef, 0.2);
}
$bench->kill_kill;
is($drops, 40, 'every DROP EXTENSION succeeded while the writer wrote')
  or diag(join("\n", @failed));
is(wait_for_value($node, q{SELECT writer_state FROM pooldiag.health}, 'running', 10),
	'running', 'the writer writes to the last extension created');

$node->stop;
done_testing();
