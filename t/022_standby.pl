# On a hot standby the enforcer enforces as on a primary, and the writer
# runs but never writes: events stay readable through
# pooldiag.recent_events().
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = pooldiag_node('primary', init => { allows_streaming => 1 });
$primary->safe_psql('postgres', 'CREATE ROLE app LOGIN');
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->append_conf('postgresql.conf', "pooldiag.idle_timeout = '2s'");
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is( wait_for_value($standby, 'SELECT writer_state, enforcer_state FROM pooldiag.health', 'standby|running'),
	'standby|running', 'on the standby the writer is in state "standby", the enforcer runs');
is( $standby->safe_psql('postgres', 'SELECT worker_state FROM pooldiag.health'),
	'standby', 'worker_state (the name from 1.0) is the writer\'s');
is( $standby->safe_psql('postgres',
		q{SELECT string_agg(backend_type, ',' ORDER BY backend_type) FROM pg_stat_activity WHERE backend_type LIKE 'pooldiag%'}),
	'pooldiag enforcer,pooldiag writer', 'both workers show in the standby pg_stat_activity');

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
	'0', 'the standby writer counts nothing written');
unlike(slurp_file($standby->logfile),
	qr/read-only transaction|pooldiag writer could not write/,
	'the writer never tried to write on the standby');

# The session view works the same on the standby.
($s, $pid) = open_session($standby, app => 'replica-pool');
is(session_row($standby, $pid, 'application_name, state, checkouts'),
	'replica-pool|idle|1', 'sessions are tracked on the standby');
$s->quit;

# The enforcer closes idle sessions on the standby too.
my ($idle, $idle_pid) = open_session($standby, app => 'replica-idle', user => 'app');
is(wait_gone($standby, [$idle_pid], 4), '0', 'the enforcer closes an idle session on the standby');
is( wait_for_value(
		$standby,
		"SELECT string_agg(event || ':' || coalesce(reason, ''), ',' ORDER BY event_time, event_id) FROM pooldiag.recent_events() WHERE pid = $idle_pid",
		'connect:,terminate:idle_timeout,disconnect:killed'),
	'connect:,terminate:idle_timeout,disconnect:killed',
	'its terminate event is readable through recent_events()');
close_session($idle);

$standby->stop;
$primary->stop;
done_testing();
