# contrib/prometheus-postgres-exporter/pooldiag.yaml works with Debian's
# prometheus-postgres-exporter for real: the exporter runs on 127.0.0.1 on a
# free port, connects as a pg_monitor member through this cluster's Unix
# socket with --extend.query-path, and a plain HTTP scrape of /metrics
# finds the pooldiag series with the expected values.  The exporter is
# stopped at the end, also when the test dies.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $exporter = '/usr/bin/prometheus-postgres-exporter';
-x $exporter
  or BAIL_OUT("$exporter not found: install Debian's package prometheus-postgres-exporter (scripts/install-deps.sh does)");
my $queries = "$FindBin::RealBin/../contrib/prometheus-postgres-exporter/pooldiag.yaml";
-f $queries or BAIL_OUT("$queries not found");

my $node = pooldiag_node('exporter');
$node->safe_psql(
	'postgres', q{
CREATE ROLE prometheus LOGIN IN ROLE pg_monitor;
CREATE ROLE limited LOGIN CONNECTION LIMIT 1;
});

# Two sessions, one of them filling the role limit, and one refused attempt.
my ($app, $app_pid) = open_session($node, app => 'web');
# Three checkouts in pool "web": pg_backend_pid() when opened, and two more.
$app->query_safe('SELECT 1');
$app->query_safe('SELECT 2');
my ($lim, $lim_pid) = open_session($node, app => 'job', user => 'limited');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT 1',
	extra_params => [ '-U', 'limited' ]);
like($err, qr/too many connections for role "limited"/,
	'a second session of role "limited" is refused');

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $log = "${PostgreSQL::Test::Utils::log_path}/exporter.log";
my $handle;

# Never leave the exporter running, whatever happens to the test.
sub stop_exporter
{
	return unless $handle;
	# SIGTERM, then SIGKILL if it is still there after 5 s; reaps it.
	eval { $handle->kill_kill(grace => 5); };
	$handle = undef;
	return;
}
END { stop_exporter(); }

{
	local $ENV{DATA_SOURCE_NAME} =
	  'host=' . $node->host . ' port=' . $node->port
	  . ' user=prometheus dbname=postgres sslmode=disable';
	$handle = IPC::Run::start(
		[
			$exporter, "--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$queries", '--log.level=warn'
		],
		'<', \undef, '>', $log, '2>&1');
}

# The exporter's own connections are counted, not assumed: Go's
# database/sql opens a second one while collectors run concurrently and may
# close it after the scrape, so the count that matters is the one in the
# same scrape, the sessions of role "prometheus" in pooldiag_pool_sessions.
sub sessions_of_role
{
	my ($body, $role) = @_;
	my $sum = 0;
	$sum += $1
	  while $body =~ /^pooldiag_pool_sessions\{[^}]*usename="\Q$role\E"[^}]*\} (\d+)$/mg;
	return $sum;
}

# Scrape until the pooldiag series are there (the exporter needs a moment
# to listen) and connections in use are exactly the 2 sessions and the
# exporter's (a backend of this test's last psql may still be exiting when
# the first scrape comes), for at most 30 s.
my $http = HTTP::Tiny->new(timeout => 10);
my $body = '';
my $sessions_of_prometheus;
my $deadline = time() + 30;
while (time() < $deadline)
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	if ($res->{success} && $res->{content} =~ /^pooldiag_capacity_slots/m)
	{
		$body = $res->{content};
		$sessions_of_prometheus = sessions_of_role($body, 'prometheus');
		last
		  if $body =~ /^pooldiag_capacity_in_use(?:\{[^}]*\})? (\d+)$/m
		  && $1 == 2 + $sessions_of_prometheus;
	}
	usleep(200_000);
}
ok($body ne '', 'the exporter serves /metrics with pooldiag series')
  or diag(slurp_file($log));

note(join("\n", grep { /pooldiag_/ } split /\n/, $body));

# A series' value by its name and labels (the exporter may add a "server"
# label of its own; it is ignored here).
sub series
{
	my ($name, %labels) = @_;
	foreach my $line (split /\n/, $body)
	{
		next unless $line =~ /^\Q$name\E(?:\{(.*)\})? (\S+)$/;
		my ($labels, $value) = ($1 // '', $2);
		my %have = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		next if grep { ($have{$_} // '') ne $labels{$_} } keys %labels;
		return $value;
	}
	return undef;
}

is(series('pooldiag_capacity_slots'), '97',
	'pooldiag_capacity_slots: max_connections 100 less 3 reserved');
cmp_ok($sessions_of_prometheus, '>=', 1,
	'pooldiag_pool_sessions counts the exporter\'s own sessions');
is(series('pooldiag_capacity_in_use'), 2 + $sessions_of_prometheus,
	"pooldiag_capacity_in_use: the 2 sessions and the exporter's $sessions_of_prometheus");
cmp_ok(series('pooldiag_capacity_peak_in_use'), '>=',
	2 + $sessions_of_prometheus, 'pooldiag_capacity_peak_in_use');
is(series('pooldiag_capacity_oversubscribed'), '0',
	'pooldiag_capacity_oversubscribed');
is(series('pooldiag_connection_limit_slots', scope => 'role', name => 'limited'),
	'1', 'pooldiag_connection_limit_slots of role "limited"');
is(series('pooldiag_connection_limit_in_use', scope => 'role', name => 'limited'),
	'1', 'pooldiag_connection_limit_in_use of role "limited"');
is(series('pooldiag_rejected_attempts', reason => 'role_connection_limit'),
	'1', 'pooldiag_rejected_attempts for role_connection_limit');
is(series('pooldiag_rejected_attempts', reason => 'too_many_connections'),
	'0', 'pooldiag_rejected_attempts for too_many_connections');
is(series('pooldiag_health_enforcer_running'), '1',
	'pooldiag_health_enforcer_running');
is(series('pooldiag_health_writer_running'), '1',
	'pooldiag_health_writer_running');
my %web = (application_name => 'web', kind => 'implicit');
is(series('pooldiag_pool_sessions', %web), '1', 'pooldiag_pool_sessions of "web"');
is(series('pooldiag_pool_idle', %web), '1', 'pooldiag_pool_idle of "web"');
is(series('pooldiag_pool_checkouts', %web), '3', 'pooldiag_pool_checkouts of "web"');
is(series('pooldiag_pool_closed_sessions', %web, reason => 'idle_timeout'), '0',
	'pooldiag_pool_closed_sessions of "web" for idle_timeout');
is(series('pooldiag_pool_hold_seconds_count', %web), '3',
	'pooldiag_pool_hold_seconds_count of "web"');
is(series('pooldiag_pool_hold_seconds_bucket', %web, le => '+Inf'), '3',
	'pooldiag_pool_hold_seconds_bucket of "web", le +Inf');
is(series('pooldiag_pool_hold_seconds_bucket', %web, le => '1.0e-06'), undef,
	'no made-up bounds');
like($body, qr/^# TYPE pooldiag_pool_hold_seconds histogram$/m,
	'hold times are exported as a histogram');
like($body, qr/^# TYPE pooldiag_rejected_attempts counter$/m,
	'attempts are exported as a counter');
unlike(slurp_file($log), qr/level=error/, 'the exporter logged no error')
  or diag(slurp_file($log));

stop_exporter();
my $gone = 1;
eval {
	my $res = HTTP::Tiny->new(timeout => 2)->get("http://127.0.0.1:$port/metrics");
	$gone = 0 if $res->{success};
};
ok($gone, 'the exporter is stopped');

close_session($_) for ($app, $lim);
$node->stop;
done_testing();
