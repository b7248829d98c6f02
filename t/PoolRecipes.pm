# Helpers of the pool recipe tests (t/10*.pl, the README's "Recipes for
# connection pools"): a cluster whose enforcer closes sessions idle 2 s or
# older than 5 s, the real pools' driver programs of t/pools/ run side by
# side against it (each variant as its own role, so that the events of one
# are told from another's by usename), and the check that every close the
# enforcer made is matched by its events.
package PoolRecipes;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use PoolDiagTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use Exporter 'import';
our @EXPORT = qw(recipe_node pools_dir tcp_dsn start_driver finish_drivers
  server_closes check_close_accounting report_variant);

# The server-side policy the recipes are tested against.  The pools' own
# limits in the recipes sit below these: 4 s of client lifetime under the
# shortest server lifetime, max_lifetime * (1 - lifetime_jitter) = 4.5 s.
our $IDLE_TIMEOUT = '2s';
our $MAX_LIFETIME = '5s';

# The driver programs.
sub pools_dir { return abs_path(dirname(__FILE__) . '/pools'); }

# A cluster with pooldiag enforcing the policy above, listening on
# 127.0.0.1 too (pgjdbc and PgBouncer connect over TCP), with one
# unprivileged login role per name in @roles (superusers are exempt).
sub recipe_node
{
	my ($name, @roles) = @_;
	my $node = pooldiag_node(
		$name, conf => qq{
listen_addresses = '127.0.0.1'
pooldiag.idle_timeout = '$IDLE_TIMEOUT'
pooldiag.max_lifetime = '$MAX_LIFETIME'
pooldiag.log_checkouts = 'all'
pooldiag.max_terminations_per_second = 0
});
	$node->safe_psql('postgres', "CREATE ROLE $_ LOGIN") foreach @roles;
	return $node;
}

# libpq connection string to the node over TCP as $role.
sub tcp_dsn
{
	my ($node, $role, %extra) = @_;
	my $dsn = 'host=127.0.0.1 port=' . $node->port . " dbname=postgres user=$role";
	$dsn .= " $_=$extra{$_}" foreach sort keys %extra;
	return $dsn;
}

# Start a driver program in the background.  Returns a handle for
# finish_drivers().
sub start_driver
{
	my ($name, @cmd) = @_;
	my %d = (name => $name, cmd => \@cmd, out => '', err => '');
	note "starting driver $name: @cmd";
	$d{h} = IPC::Run::start(\@cmd, '<', \undef, '>', \$d{out}, '2>', \$d{err});
	return \%d;
}

# Wait for every driver, at most $seconds in all (generous: the schedule
# is 25 s; a busy machine and a JVM's start-up come on top).  Returns a hash
# by name of { rc, errors, connections, checkouts, out, err, crashed }:
# errors etc. are undef when the program printed no RESULT line.
sub finish_drivers
{
	my ($seconds, @drivers) = @_;
	my $deadline = time() + $seconds;
	my %result;

	foreach my $d (@drivers)
	{
		while ($d->{h}->pumpable && time() < $deadline)
		{
			eval { $d->{h}->pump_nb; };
			usleep(100_000);
		}
		if ($d->{h}->pumpable)
		{
			diag "driver $d->{name} still running after ${seconds}s: killed";
			$d->{h}->kill_kill;
		}
		else
		{
			$d->{h}->finish;
		}
		my %r = (rc => $d->{h}->full_result(0), out => $d->{out}, err => $d->{err});
		if ($d->{out} =~ /^RESULT errors=(\d+) connections=(\d+) checkouts=(\d+)$/m)
		{
			@r{qw(errors connections checkouts)} = ($1, $2, $3);
		}
		note "driver $d->{name} exit $r{rc}, stdout:\n$d->{out}\nstderr:\n$d->{err}";
		$result{ $d->{name} } = \%r;
	}
	return \%result;
}

# The enforcer's closes of $role's sessions, once written: a hash of
# reason => count, with 'total'.
sub server_closes
{
	my ($node, $role) = @_;
	wait_flushed($node);
	my %closes = (total => 0);
	foreach my $row (split /\n/,
		$node->safe_psql('postgres',
			"SELECT reason, count(*) FROM pooldiag.events WHERE event = 'terminate' AND usename = '$role' GROUP BY 1"
		))
	{
		my ($reason, $n) = split /\|/, $row;
		$closes{$reason} = $n;
		$closes{total} += $n;
	}
	return \%closes;
}

# One diag line of figures per variant, for the log and the reader.
sub report_variant
{
	my ($label, $r, $closes, $extra) = @_;
	my $reasons = join(', ',
		map { "$_ $closes->{$_}" } grep { $_ ne 'total' } sort keys %$closes);
	diag sprintf('%s: errors %s, connections opened %s, checkouts %s, server closes %d%s%s',
		$label, $r->{errors} // 'none (no RESULT)', $r->{connections} // '?',
		$r->{checkouts} // '?', $closes->{total},
		$reasons ? " ($reasons)" : '', $extra ? "; $extra" : '');
	return;
}

# Every close is matched by its events: once the sessions of @roles are
# gone and the writer caught up, the enforcer's terminate events, its LOG
# lines ("pooldiag closed the session of process N for REASON") and
# pooldiag.health.terminations agree exactly, pid for pid and reason for
# reason; every reason is idle_timeout or max_lifetime; and every closed
# session has its own disconnect event with cause killed.
sub check_close_accounting
{
	my ($node, @roles) = @_;
	my $in = join(',', map { "'$_'" } @roles);

	is( wait_for_value(
			$node,
			"SELECT count(*) FROM pg_stat_activity WHERE usename IN ($in)",
			'0', 60),
		'0',
		'every session of the drivers has ended');
	wait_flushed($node);

	my $events = $node->safe_psql('postgres',
		"SELECT pid || ':' || reason FROM pooldiag.events WHERE event = 'terminate' ORDER BY 1");
	my @events = grep { $_ ne '' } split /\n/, $events;
	my @logged;
	my $log = slurp_file($node->logfile);
	while ($log =~ /pooldiag closed the session of process (\d+) for (\S+)/g)
	{
		push @logged, "$1:$2";
	}
	@logged = sort @logged;
	my $health =
	  $node->safe_psql('postgres', 'SELECT terminations FROM pooldiag.health');

	cmp_ok(scalar(@events), '>', 0, 'the server closed sessions');
	is(scalar(@logged), scalar(@events),
		'as many terminate events as LOG lines of the enforcer');
	is_deeply(\@logged, \@events, 'the same pids and reasons in both');
	is($health, scalar(@events), 'pooldiag.health.terminations agrees');
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM pooldiag.events WHERE event = 'terminate' AND reason NOT IN ('idle_timeout', 'max_lifetime')"
		),
		'0',
		'every close was for idle_timeout or max_lifetime');
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM pooldiag.events t
WHERE t.event = 'terminate'
  AND NOT EXISTS (SELECT 1 FROM pooldiag.events d
                  WHERE d.event = 'disconnect' AND d.reason = 'killed'
                    AND d.pid = t.pid AND d.backend_start = t.backend_start)}),
		'0',
		'every closed session has its disconnect event (killed)');
	return scalar(@events);
}

1;
