# pooldiag.metrics() is valid Prometheus text exposition format, as Debian's
# `promtool check metrics` (package prometheus) sees it, lint included,
# also with hostile names in label values: double quotes, backslashes and
# newlines in role and database names and in application_name.  The
# escaped values read back to the original names.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $promtool = '/usr/bin/promtool';
-x $promtool
  or BAIL_OUT("$promtool not found: install Debian's package prometheus (scripts/install-deps.sh does)");

my $node = pooldiag_node('metrics');

# Hostile names: a quote, a backslash, a newline, and a backslash-n that is
# not a newline.
my $role = qq{we"ird\\role\nline\\n};
my $db = qq{d"b\\\nx};
# Should a later PostgreSQL refuse newlines in names, the names lose them
# (application_name and declared pool names still bring them).
sub create_named
{
	my ($what, $name, $rest) = @_;
	(my $quoted = $name) =~ s/"/""/g;
	my ($ret, $out, $err) =
	  $node->psql('postgres', qq{CREATE $what "$quoted" $rest});
	return $name if $ret == 0;
	die "CREATE $what failed: $err" unless $name =~ /\n/;
	$name =~ s/\n//g;
	return create_named($what, $name, $rest);
}
$role = create_named('ROLE', $role, 'LOGIN CONNECTION LIMIT 3');
$db = create_named('DATABASE', $db, 'CONNECTION LIMIT 5');
$node->safe_psql('postgres', q{CREATE ROLE monitor LOGIN IN ROLE pg_monitor});

# A hostile application_name in a session while metrics are taken: its
# pool is labelled with it.  Four checkouts: pg_backend_pid() when opened,
# two quick ones and one held 0.3 s.
my $app = qq{app "x" \\ y};
my ($hostile, $hostile_pid) = open_session($node, app => $app);
$hostile->query_safe('SELECT 1');
$hostile->query_safe('SELECT 2');
$hostile->query_safe('SELECT pg_sleep(0.3)');

# The exposition as a pg_monitor member sees it.
my $metrics = $node->safe_psql('postgres', 'SELECT pooldiag.metrics()',
	extra_params => [ '-U', 'monitor' ]) . "\n";
note($metrics);
my $file = "${PostgreSQL::Test::Utils::tmp_check}/metrics.txt";
open(my $fh, '>', $file) or die "could not write $file: $!";
print $fh $metrics;
close($fh);

my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', $file,
	'>', \$out, '2>', \$err);
ok($ok, 'promtool check metrics accepts the output')
  or diag("promtool said:\n$out$err");
is($out . $err, '', 'promtool reports no lint problem');

# The escaped label values, exactly.
(my $role_label = $role) =~ s/(["\\])/\\$1/g;
$role_label =~ s/\n/\\n/g;
(my $db_label = $db) =~ s/(["\\])/\\$1/g;
$db_label =~ s/\n/\\n/g;
is($role_label, $role =~ /\n/ ? qq{we\\"ird\\\\role\\nline\\\\n} : qq{we\\"ird\\\\roleline\\\\n},
	'the expected label of the role name');
like($metrics,
	qr/^pooldiag_role_connection_limit\{usename="\Q$role_label\E"\} 3$/m,
	'the role name is escaped in its label');
like($metrics,
	qr/^pooldiag_database_connection_limit\{datname="\Q$db_label\E"\} 5$/m,
	'the database name is escaped in its label');

# Read back with the format's own rules, the values are the names.
sub unescape
{
	my ($v) = @_;
	$v =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
	return $v;
}
my ($seen_role) = $metrics =~ /^pooldiag_role_connections\{usename="((?:[^"\\]|\\.)*)"\}/m;
is(unescape($seen_role), $role, 'the role label unescapes to the role name');
my ($seen_db) = $metrics =~ /^pooldiag_database_connections\{datname="((?:[^"\\]|\\.)*)"\}/m;
is(unescape($seen_db), $db, 'the database label unescapes to the database name');

# No line of the output is broken by a raw newline from a name: every line
# is a comment or a sample of a pooldiag_ family.
my @bad = grep { $_ ne '' && !/^(# (HELP|TYPE) pooldiag_|pooldiag_[a-z_]+[{ ])/ }
  split /\n/, $metrics;
is(scalar(@bad), 0, 'every line is a comment or a sample')
  or diag(join("\n", @bad));

# Figures: one session besides the query's own, counters present.
like($metrics, qr/^pooldiag_connections_in_use 2$/m, 'two sessions in use');
like($metrics, qr/^# TYPE pooldiag_pool_hold_seconds histogram$/m,
	'hold times are a histogram');
like($metrics, qr/^pooldiag_connection_slots 97$/m,
	'97 slots: max_connections 100 less 3 reserved');
like($metrics,
	qr/^pooldiag_rejected_connections_total\{reason="too_many_connections"\} 0$/m,
	'rejections by reason start at 0');
like($metrics, qr/^pooldiag_worker_running\{worker="enforcer"\} 1$/m,
	'the enforcer runs');

# The hostile application's pool, its label escaped.
my $app_label = qq{application_name="app \\"x\\" \\\\ y"};
my @pool_lines = grep { index($_, $app_label) >= 0 } split /\n/, $metrics;
ok(scalar(@pool_lines) > 0, 'the pool of the hostile application_name has series')
  or diag($metrics);
my %pool;
foreach (@pool_lines)
{
	/^(\S+?)\{(.*)\} (\S+)$/ or next;
	my ($name, $labels, $value) = ($1, $2, $3);
	my ($extra) = $labels =~ /,(state|le|cause|reason)="([^"]*)"$/ ? "$1=$2" : '';
	$pool{ $extra ? "$name\{$extra\}" : $name } = $value;
}
is($pool{'pooldiag_pool_sessions{state=idle}'}, '1', 'one idle session in the pool');
is($pool{'pooldiag_pool_sessions{state=active}'}, '0', 'none active');
is($pool{'pooldiag_pool_checkouts_total'}, '4', 'four checkouts');
is($pool{'pooldiag_pool_hold_seconds_count'}, '4', 'the histogram counts the four');
is($pool{'pooldiag_pool_hold_seconds_bucket{le=+Inf}'}, '4', 'its +Inf bucket too');
cmp_ok($pool{'pooldiag_pool_hold_seconds_sum'}, '>=', 0.3,
	'the sum includes the 0.3 s checkout');
# The bounds are edges of the log buckets: 0.25 s becomes a little more.
my @les = map { /^pooldiag_pool_hold_seconds_bucket\{(le=[^}]*)\}$/ ? $1 : () } keys %pool;
my ($le_025) = grep { /^le=0\.2[5-9]/ } @les;
my ($le_05) = grep { /^le=0\.5[0-9]/ } @les;
is($pool{"pooldiag_pool_hold_seconds_bucket{$le_025}"}, '3',
	"three checkouts of at most $le_025 s");
is($pool{"pooldiag_pool_hold_seconds_bucket{$le_05}"}, '4',
	"four of at most $le_05 s");
is($pool{'pooldiag_pool_closes_total{reason=idle_timeout}'}, '0',
	'closes by reason start at 0');

# Visibility: a role that may run metrics() but has neither
# pg_read_all_stats nor the superuser's privileges sees its own pools only.
$node->safe_psql('postgres', q{
CREATE ROLE plain LOGIN;
GRANT EXECUTE ON FUNCTION pooldiag.metrics(), pooldiag.get_capacity(),
  pooldiag.get_rejection_counts(), pooldiag.get_pool_hold_histogram() TO plain;
GRANT SELECT ON pooldiag.capacity TO plain;
});
my ($mine) = open_session($node, app => 'mine', user => 'plain');
my $plain_metrics = $node->safe_psql('postgres', 'SELECT pooldiag.metrics()',
	extra_params => [ '-U', 'plain' ]);
unlike($plain_metrics, qr/\Q$app_label\E/,
	"another role's pool is not shown to a plain role");
like($plain_metrics, qr/^pooldiag_pool_checkouts_total\{[^}]*application_name="mine"/m,
	'its own pool is');
close_session($mine);

close_session($hostile);
$node->stop;
done_testing();
