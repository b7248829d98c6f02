# Where a session's policy comes from: ALTER ROLE / ALTER DATABASE ... SET
# apply to the sessions of that role or database only; a change of
# postgresql.conf applies after a reload to every session, including idle
# ones that never ran anything since (and so never processed the reload
# themselves), within one naptime; a per-role value still beats the file.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pooldiag_node('policy_reload');
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE other LOGIN;
ALTER ROLE app SET pooldiag.idle_timeout = '2s';
CREATE DATABASE d2;
ALTER DATABASE d2 SET pooldiag.idle_timeout = '2s';
});

my $policy = sub {
	my (@pids) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(application_name || ' ' || coalesce(idle_timeout::text, '-') || ' ' || coalesce(terminate_reason, '-'), ',' ORDER BY application_name) FROM pooldiag.sessions WHERE pid IN ("
		  . join(',', @pids) . ')');
};

#
# 1. Per role and per database.
#
my ($app, $app_pid) = open_session($node, app => 'a-role-setting', user => 'app');
my ($d2, $d2_pid) = open_session($node, app => 'b-database-setting', user => 'other', db => 'd2');
my ($other, $other_pid) = open_session($node, app => 'c-no-setting', user => 'other');
my $opened = time();
is( $policy->($app_pid, $d2_pid, $other_pid),
	'a-role-setting 00:00:02 idle_timeout,b-database-setting 00:00:02 idle_timeout,c-no-setting - -',
	'idle_timeout 2 s for role app and database d2, none for the other session');

ok(stays_alive($node, [ $app_pid, $d2_pid, $other_pid ], $opened + 1.5 - time()),
	'nothing is closed within 1.5 s');
is(wait_gone($node, [ $app_pid, $d2_pid ], $opened + 4 - time()),
	'0', 'the sessions of role app and of database d2 are closed');
ok(stays_alive($node, [$other_pid], 0.5), 'the session without a setting stays');
is(event_sequence($node, $app_pid), 'connect,terminate:idle_timeout,disconnect:killed',
	'role app: terminate (idle_timeout) and disconnect');
is(event_sequence($node, $d2_pid), 'connect,terminate:idle_timeout,disconnect:killed',
	'database d2: terminate (idle_timeout) and disconnect');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(usename || '\@' || datname, ',' ORDER BY application_name) FROM pooldiag.events WHERE event = 'terminate'"
	),
	'app@postgres,other@d2',
	'the terminate events name role and database');

#
# 2. A reload of postgresql.conf reaches idle sessions.  "other" has been
#    idle since part 1 (longer than 3 s), "fresh" for a moment.
#
my ($fresh, $fresh_pid) = open_session($node, app => 'd-fresh', user => 'other');
my $fresh_idle = time();
$node->append_conf('postgresql.conf', "pooldiag.idle_timeout = '3s'");
$node->reload;
my $reloaded = time();
is(wait_for_value($node, "SELECT setting FROM pg_settings WHERE name = 'pooldiag.idle_timeout'", '3000'),
	'3000', 'the reload is done');
is($policy->($fresh_pid), 'd-fresh 00:00:03 idle_timeout',
	'the idle session shows the new idle_timeout');
is(wait_gone($node, [$other_pid], 1.5), '0',
	'the session idle for longer than the new timeout is closed at once');
note sprintf('closed %.2f s after the reload', time() - $reloaded);
ok(stays_alive($node, [$fresh_pid], $fresh_idle + 2.5 - time()),
	'the other one stays until its new deadline approaches');
is(wait_gone($node, [$fresh_pid], $fresh_idle + 5 - time()),
	'0', 'then it is closed, 3 s after its last checkin');
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(application_name || ' ' || reason || ' ' || ((detail->>'idle_ms')::numeric >= 3000)::text, ',' ORDER BY application_name) FROM pooldiag.events WHERE event = 'terminate' AND pid IN ($other_pid, $fresh_pid)"
	),
	'c-no-setting idle_timeout true,d-fresh idle_timeout true',
	'both closed for idle_timeout after more than 3 s idle');

# The role's own value still wins over the file's.
my ($app2, $app2_pid) = open_session($node, app => 'e-role-setting', user => 'app');
is($policy->($app2_pid), 'e-role-setting 00:00:02 idle_timeout',
	'a session of role app keeps its 2 s');
is(wait_gone($node, [$app2_pid], 4), '0', 'and is closed after it');

#
# 3. Back to no idle_timeout in the file: an idle session loses its
#    deadline and stays.
#
my ($last, $last_pid) = open_session($node, app => 'f-last', user => 'other');
my $last_opened = time();
$node->append_conf('postgresql.conf', "pooldiag.idle_timeout = 0");
$node->reload;
is(wait_for_value($node, "SELECT setting FROM pg_settings WHERE name = 'pooldiag.idle_timeout'", '0'),
	'0', 'the reload is done');
is($policy->($last_pid), 'f-last - -', 'the idle session has no idle_timeout any more');
ok(stays_alive($node, [$last_pid], $last_opened + 4 - time()),
	'and stays past 3 s');

close_session($_) for $app, $d2, $other, $fresh, $app2, $last;
$node->stop;
done_testing();
