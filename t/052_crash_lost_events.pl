# A crash (here: SIGKILL of the writer, as the OOM killer would do) makes
# the postmaster restart the server and re-create shared memory, which
# loses the events still queued.  PostgreSQL's rule for any process
# attached to shared memory; pooldiag counts what was lost, in the log and
# in pooldiag.health.events_lost_in_crash.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = pooldiag_node(
	'crash', conf => q{
restart_after_crash = on
});

# Write what is queued, then let events wait for an hour, so that they are
# queued when the crash comes.
sub hold_events
{
	set_system($node, 'pooldiag.flush_interval' => '200');
	wait_flushed($node);
	set_system($node, 'pooldiag.flush_interval' => '3600000');
}
hold_events();

{
	local $ENV{PGAPPNAME} = 'before-crash';
	$node->safe_psql('postgres', 'SELECT 1') for 1 .. 10;
}
my ($observer) = open_session($node, app => 'observer');
for (1 .. 600)
{
	last if $observer->query_safe(
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'") eq '1';
	usleep(50_000);
}
# Nothing adds events from here on: no policy is set, the observer's own
# disconnect will never come (the crash kills it with SIGQUIT), and nobody
# connects until the server is back.
my ($queued, $writer) = split /\|/,
  $observer->query_safe('SELECT events_queued, writer_pid FROM pooldiag.health');
cmp_ok($queued, '>=', 21, 'the events of 10 sessions and the observer are queued');

my $offset = -s $node->logfile;
kill 'KILL', $writer;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
close_session($observer);

like(slurp_file($node->logfile, $offset),
	qr/LOG:  pooldiag lost $queued events that were still queued when the server reinitialized shared memory after a crash/,
	'the postmaster logged exactly how many queued events the crash lost');
is($node->safe_psql('postgres', 'SELECT events_lost_in_crash FROM pooldiag.health'),
	$queued, 'pooldiag.health shows them after the restart');
is( wait_for_value(
		$node, 'SELECT writer_state, enforcer_state FROM pooldiag.health', 'running|running'),
	'running|running', 'both workers run again');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pooldiag.events WHERE application_name = 'before-crash'}),
	'0', 'the lost events are indeed not in the table');

# A second crash adds to the count.
hold_events();
($observer) = open_session($node, app => 'observer');
for (1 .. 600)
{
	last if $observer->query_safe(
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'") eq '1';
	usleep(50_000);
}
my ($queued2, $backend) = split /\|/,
  $observer->query_safe('SELECT events_queued, pg_backend_pid() FROM pooldiag.health');
$offset = -s $node->logfile;
kill 'KILL', $backend;    # this time a client backend
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
close_session($observer);
is($node->safe_psql('postgres', 'SELECT events_lost_in_crash FROM pooldiag.health'),
	$queued + $queued2, 'a second crash adds what it lost');

$node->stop;
done_testing();
