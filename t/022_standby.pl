# On a hot standby the worker runs, enforces nothing that needs writing,
# and never writes: events stay readable through pooldiag.recent_events().
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = pooldiag_node('primary', init => { allows_streaming => 1 });
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is( wait_for_value($standby, 'SELECT worker_state FROM pooldiag.health', 'standby'),
	'standby', 'the worker runs on the standby in state "standby"');
is( $standby->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pooldiag worker'}),
	'1', 'the worker shows in the standby pg_stat_activity');

# Sessions on the standby produce events, visible through recent_events().
my ($s, $pid) = open_session($standby, app => 'replica-reader');
$s->query_safe('SELECT 1');
$s->quit;
is( wait_for_value(
		$standby,
		"SELECT string_agg(event || '|' || coalesce(reason, ''), ',' ORDER BY event_time) FROM pooldiag.recent_events() WHERE pid = $pid",
		'connect|,disconnect|normal'),
	'connect|,disconnect|normal',
	'standby events are readable through recent_events()');
is( $standby->safe_psql('postgres',
		"SELECT application_name FROM pooldiag.recent_events() WHERE pid = $pid AND event = 'connect'"),
	'replica-reader', 'with the session identity');

# Nothing is written: not on the standby (impossible anyway), and no attempt
# is made, so the standby log has no write errors and the table is empty of
# standby events on the primary too.
$primary->safe_psql('postgres', 'SELECT 1');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT count(*) FROM pooldiag.events WHERE pid = $pid"),
	'0', 'the standby wrote no events');
is($standby->safe_psql('postgres', 'SELECT events_written FROM pooldiag.health'),
	'0', 'the standby worker counts nothing written');
unlike(slurp_file($standby->logfile),
	qr/read-only transaction|pooldiag worker could not write/,
	'the worker never tried to write on the standby');

# The session view works the same on the standby.
($s, $pid) = open_session($standby, app => 'replica-pool');
is(session_row($standby, $pid, 'application_name, state, checkouts'),
	'replica-pool|idle|1', 'sessions are tracked on the standby');
$s->quit;

$standby->stop;
$primary->stop;
done_testing();
