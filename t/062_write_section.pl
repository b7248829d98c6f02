# A registry write section cannot be left half done.  A die() (SIGTERM,
# pg_terminate_backend) that is pending while a backend writes its slot must
# wait until the section is closed; otherwise the slot's change count stays
# odd and every reader (the enforcer, pooldiag.sessions, drain()) spins.
#
# gdb stops a connecting backend inside pgd_registry_attach()'s write
# section, after it stored the pid (post_auth_delay gives time to attach
# gdb), checks that the section is a critical section (so that a
# CHECK_FOR_INTERRUPTS() or an error reached from inside it could not leave
# it open), and delivers a SIGTERM there.  (Debian's postgres has no debug
# symbols, hence the casts.)
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

# gdb comes with the test dependencies (scripts/install-deps.sh).
my ($gdb) = grep { -x } map { "$_/gdb" } split /:/, $ENV{PATH};
die 'gdb is not installed' unless $gdb;

# The line of the write section to stop at, from the source under test.
my $source = "$FindBin::RealBin/../src/registry.c";
my $line;
{
	open my $fh, '<', $source or die "$source: $!";
	my $in_attach = 0;
	while (<$fh>)
	{
		$in_attach = 1 if /^pgd_registry_attach\(/;
		if ($in_attach && /slot->beentry = MyBEEntry;/)
		{
			$line = $.;
			last;
		}
	}
}
ok($line, "found the write section of pgd_registry_attach() at registry.c:$line");

my $node = pooldiag_node('write_section');

# A connection that sleeps in InitPostgres() before it attaches.
my ($out, $err) = ('', '');
my $psql = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', 'SELECT 1' ],
	'>', \$out, '2>', \$err,
	init => sub { $ENV{PGOPTIONS} = '-c post_auth_delay=3'; });
# It has no row in pg_stat_activity yet: find it among the postmaster's
# children by its process title.
my $postmaster = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time() IS NOT NULL')
  && (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
my $pid;
for (1 .. 200)
{
	foreach my $stat (glob '/proc/[0-9]*/stat')
	{
		my $content = eval { slurp_file($stat) } // next;
		my ($child, $ppid) = $content =~ /^(\d+) \(.*\) \S (\d+)/ or next;
		next unless $ppid == $postmaster;
		my $cmdline = eval { slurp_file("/proc/$child/cmdline") } // '';
		$pid = $child if $cmdline =~ /startup/;
	}
	last if $pid;
	select(undef, undef, undef, 0.05);
}
ok($pid, "the connecting backend $pid sleeps in post_auth_delay");

my ($gout, $gerr) = ('', '');
IPC::Run::run(
	[
		$gdb, '-nx', '-batch', '-p', $pid,
		'-ex', "break registry.c:$line",
		'-ex', 'continue',
		'-ex', 'print *(unsigned int *) &CritSectionCount',
		'-ex', 'signal SIGTERM'
	],
	'>', \$gout, '2>', \$gerr);
note("gdb:\n$gout\n$gerr");
like($gout, qr/Breakpoint 1, pgd_registry_attach/, 'gdb stopped inside the write section')
  or diag("gdb stdout:\n$gout\ngdb stderr:\n$gerr");
like($gout, qr/\$1 = 1/, 'the write section is a critical section');

$psql->finish;
is(wait_for_value($node, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0', 10),
	'0', 'the backend ended once the section was closed (the die was honoured)');

# Readers still get consistent copies of every slot, promptly.
my ($ret, $rows) = $node->psql('postgres',
	"SET statement_timeout = '5s'; SELECT count(*) FROM pooldiag.sessions WHERE pid = $pid",
	stdout => \$out, stderr => \$err);
is($ret, 0, 'pooldiag.sessions answers (no slot left half written)');
is($out, '0', 'and the ended session has no row');
my ($s, $spid) = open_session($node, app => 'after');
is(session_row($node, $spid, 'application_name, checkouts'), 'after|1',
	'new sessions attach normally');
$s->quit;

$node->stop;
done_testing();
