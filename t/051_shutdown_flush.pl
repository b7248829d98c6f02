# A clean shutdown (fast or smart) loses no queued event: the writer writes
# everything queued, the disconnect events of the sessions the shutdown
# ends included, and says in the log how many it wrote.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = pooldiag_node('shutdown');

# Write what is queued, then let events wait for an hour: whatever the test
# queues after this is still queued when it stops the server.
sub hold_events
{
	set_system($node, 'pooldiag.flush_interval' => '200');
	wait_flushed($node);
	set_system($node, 'pooldiag.flush_interval' => '3600000');
}

# Queue the events of $n short sessions and open $held sessions that stay.
# Returns the held sessions and the number of events queued, taken from a
# session that ends right after (its own disconnect is not counted yet).
sub queue_events
{
	my ($app, $n, $held) = @_;
	{
		local $ENV{PGAPPNAME} = $app;
		$node->safe_psql('postgres', 'SELECT 1') for 1 .. $n;
	}
	my @held = map { (open_session($node, app => "$app-held"))[0] } 1 .. $held;
	my ($observer) = open_session($node, app => "$app-observer");
	# The observer and the held sessions remain.
	for (1 .. 600)
	{
		last if $observer->query_safe(
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'") eq 1 + $held;
		usleep(50_000);
	}
	my $queued = $observer->query_safe('SELECT events_queued FROM pooldiag.health');
	$observer->quit;
	return (\@held, $queued);
}

# The number in the writer's last "wrote N queued events" line after $offset.
sub written_at_shutdown
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @n = ($log =~ /LOG:  pooldiag writer wrote (\d+) queued events before exiting/g);
	return (scalar(@n), $n[-1] // -1, $log);
}

#
# 1. Fast shutdown: 20 short sessions (40 events), 5 sessions the shutdown
#    ends (5 connect events now, 5 disconnect events during the shutdown).
#
hold_events();
my ($held, $queued) = queue_events('fast', 20, 5);
cmp_ok($queued, '>=', 46, 'the events of 20 short sessions, 5 held ones and the observer are queued');
my $offset = -s $node->logfile;
$node->stop('fast');
my ($lines, $written, $log) = written_at_shutdown($offset);
is($lines, 1, 'the writer logged once what it wrote at shutdown');
is($written, $queued + 1 + 5,
	'it wrote every queued event, the observer\'s and the held sessions\' disconnects included');
unlike($log, qr/could not write|pooldiag lost/, 'nothing was left unwritten or lost');
close_session($_) for @$held;

$node->start;
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect') FROM pooldiag.events WHERE application_name = 'fast'}),
	'20|20', 'after the restart the table holds both events of each short session');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect' AND reason = 'killed') FROM pooldiag.events WHERE application_name = 'fast-held'}),
	'5|5', 'and the held sessions\' disconnects, "killed" by the fast shutdown');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pooldiag.events WHERE application_name = 'fast-observer'}),
	'2', 'and the observer\'s two events');
is( $node->safe_psql('postgres',
		'SELECT count(*) = count(DISTINCT event_id) AND count(*) = max(event_id) - min(event_id) + 1 FROM pooldiag.events'),
	't', 'event ids are unique and without gaps across the restart');

#
# 2. Smart shutdown: the server waits for the held sessions; they end while
#    it waits, and their disconnect events are written too.
#
hold_events();
($held, $queued) = queue_events('smart', 10, 3);
$offset = -s $node->logfile;
my $pg_ctl = IPC::Run::start(
	[ 'pg_ctl', '-D', $node->data_dir, '-m', 'smart', 'stop' ],
	'>', \my $ctl_out, '2>', \my $ctl_err);
$node->wait_for_log(qr/received smart shutdown request/, $offset);
$_->quit for @$held;
ok($pg_ctl->finish, 'pg_ctl stop -m smart succeeded');
$node->_update_pid(0);
($lines, $written, $log) = written_at_shutdown($offset);
is($lines, 1, 'the writer logged once what it wrote at shutdown');
is($written, $queued + 1 + 3, 'it wrote every queued event, the held sessions\' disconnects included');
unlike($log, qr/could not write|pooldiag lost/, 'nothing was left unwritten or lost');

$node->start;
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect') FROM pooldiag.events WHERE application_name = 'smart'}),
	'10|10', 'after the restart the table holds both events of each short session');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect' AND reason = 'normal') FROM pooldiag.events WHERE application_name = 'smart-held'}),
	'3|3', 'and the held sessions\' disconnects');

#
# 3. A lone SIGTERM (pg_terminate_backend) makes the writer write what is
#    queued and exit; the postmaster starts a new one.
#
hold_events();
{
	local $ENV{PGAPPNAME} = 'lone';
	$node->safe_psql('postgres', 'SELECT 1') for 1 .. 5;
}
my $writer = $node->safe_psql('postgres', 'SELECT writer_pid FROM pooldiag.health');
$offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($writer)");
$node->wait_for_log(qr/pooldiag writer wrote \d+ queued events before exiting/, $offset);
is( wait_for_value(
		$node,
		"SELECT writer_pid <> $writer AND writer_state = 'running' FROM pooldiag.health", 't'),
	't', 'a new writer runs after pg_terminate_backend');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pooldiag.events WHERE application_name = 'lone'}),
	'10', 'every event queued before the SIGTERM was written, once');

$node->stop;
done_testing();
