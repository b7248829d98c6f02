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

# A hostile application_name in a session while metrics are taken.
my ($hostile, $hostile_pid) =
  open_session($node, app => qq{app "x" \\ y});

# The exposition as a pg_monitor member sees it.
my $metrics = $node->safe_psql('postgres', 'SELECT pooldiag.metrics()',
	extra_params => [ '-U', 'monitor' ]) . "\n";
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
like($metrics, qr/^pooldiag_connection_slots 97$/m,
	'97 slots: max_connections 100 less 3 reserved');
like($metrics,
	qr/^pooldiag_rejected_connections_total\{reason="too_many_connections"\} 0$/m,
	'rejections by reason start at 0');
like($metrics, qr/^pooldiag_worker_running\{worker="enforcer"\} 1$/m,
	'the enforcer runs');

close_session($hostile);
$node->stop;
done_testing();
