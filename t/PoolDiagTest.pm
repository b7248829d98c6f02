# Helpers shared by pooldiag's TAP tests.
#
# Every test starts its own cluster with pooldiag preloaded, opens sessions
# with chosen application_name and role, and waits for the worker with
# bounded polls (never with fixed sleeps where a condition can be polled).
package PoolDiagTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use Exporter 'import';
our @EXPORT = qw(pooldiag_node open_session wait_for_value wait_flushed
  event_count session_row);

# A started cluster with pooldiag preloaded and created in "postgres".
# Extra postgresql.conf lines come in %opts{conf}; create_extension => 0
# leaves the extension out.
sub pooldiag_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(%{ $opts{init} // {} });
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'pooldiag'
pooldiag.flush_interval = '200ms'
pooldiag.naptime = '200ms'
log_min_messages = info
} . ($opts{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pooldiag')
	  unless defined $opts{create_extension} && !$opts{create_extension};
	return $node;
}

# A background psql session with the given application_name, role and
# database; hostaddr => '127.0.0.1' connects over TCP (the node must listen
# there), options => '-c ...' passes startup options.  Returns the
# BackgroundPsql object and the backend's pid.
sub open_session
{
	my ($node, %opts) = @_;
	local $ENV{PGAPPNAME} = $opts{app} // 'tap';
	local $ENV{PGUSER} = $opts{user} if defined $opts{user};
	local $ENV{PGHOSTADDR} = $opts{hostaddr} if defined $opts{hostaddr};
	local $ENV{PGOPTIONS} = $opts{options} if defined $opts{options};
	my $session = $node->background_psql($opts{db} // 'postgres',
		on_error_stop => 0);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	return ($session, $pid);
}

# Poll $sql until it returns $expected, for at most $seconds.  Returns the
# last value seen, so the caller's is() shows what it was on a timeout.
sub wait_for_value
{
	my ($node, $sql, $expected, $seconds) = @_;
	my $deadline = time() + ($seconds // 30);
	my $value;

	while (1)
	{
		$value = $node->safe_psql('postgres', $sql);
		return $value if $value eq $expected || time() > $deadline;
		usleep(50_000);
	}
}

# Wait until the worker has written everything queued so far.
sub wait_flushed
{
	my ($node) = @_;
	my $target = $node->safe_psql('postgres',
		'SELECT events_written + events_queued FROM pooldiag.health');
	wait_for_value($node,
		"SELECT events_written >= $target FROM pooldiag.health", 't');
}

# Number of rows in pooldiag.events matching a WHERE clause.
sub event_count
{
	my ($node, $where) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pooldiag.events WHERE $where");
}

# One column of a session's pooldiag.sessions row.
sub session_row
{
	my ($node, $pid, $columns) = @_;
	return $node->safe_psql('postgres',
		"SELECT $columns FROM pooldiag.sessions WHERE pid = $pid");
}

1;

#
# Helpers of the enforcement tests (t/04*.pl): sessions that must stay or
# go, statements left running in a background session, settings changed
# through ALTER SYSTEM, and the events of one session.
#
push @EXPORT, qw(backends_alive wait_gone stays_alive send_query wait_query
  close_session set_system wait_event_count event_sequence wait_scans);

# How many of the given backend pids exist now.
sub backends_alive
{
	my ($node, @pids) = @_;
	return 0 unless @pids;
	return $node->safe_psql('postgres',
		'SELECT count(*) FROM pg_stat_activity WHERE pid IN ('
		  . join(',', @pids) . ')');
}

# Wait until none of the pids in @$pids exists, for at most $seconds.
# Returns how many were left at the last look ('0' on success).
sub wait_gone
{
	my ($node, $pids, $seconds) = @_;
	$seconds = 0.1 if defined $seconds && $seconds < 0.1;
	return wait_for_value($node,
		'SELECT count(*) FROM pg_stat_activity WHERE pid IN ('
		  . join(',', @$pids) . ')',
		'0', $seconds);
}

# Poll for $seconds that every pid in @$pids stays.  Returns 1 if all of them
# were there at every look, the last one taken when the window ends (not
# later, so that a session due just after the window does not count);
# otherwise says when one went missing and returns 0.
sub stays_alive
{
	my ($node, $pids, $seconds) = @_;
	my $n = scalar(@$pids);
	my $start = time();
	my $end = $start + $seconds;

	while (1)
	{
		my $looked_at = time();
		my $alive = backends_alive($node, @$pids);

		if ($alive != $n)
		{
			diag(sprintf('%d of %d sessions gone at a look %.2f s into a %.2f s window',
					$n - $alive, $n, $looked_at - $start, $seconds));
			return 0;
		}
		return 1 if $looked_at >= $end;
		my $pause = $end - time();
		$pause = 0.05 if $pause > 0.05;
		usleep(int($pause * 1_000_000)) if $pause > 0;
	}
}

# Send a statement on a BackgroundPsql session without waiting for it.
# Returns a marker for wait_query.
my $pgd_query_marker = 0;

sub send_query
{
	my ($session, $sql) = @_;
	my $marker = 'pooldiag-async-' . ++$pgd_query_marker;

	$session->{stdin} .= "$sql\n;\n\\echo '$marker'\n";
	$session->{run}->pump_nb;
	return $marker;
}

# Wait at most $seconds for a statement sent with send_query to finish.
# Returns (finished, stdout, stderr) and clears the session's buffers, so
# that the session can run query_safe again.
sub wait_query
{
	my ($session, $marker, $seconds) = @_;
	my $deadline = time() + ($seconds // 30);
	my $match = qr/\Q$marker\E\n/;

	while ($session->{stdout} !~ $match)
	{
		last if time() > $deadline;
		last unless eval { $session->{run}->pump_nb; 1 };
		last unless $session->{run}->pumpable;
		usleep(20_000);
	}
	my $finished = $session->{stdout} =~ $match ? 1 : 0;
	my ($out, $err) = ($session->{stdout}, $session->{stderr});
	$out =~ s/\n?\Q$marker\E\n//;
	$session->{stdout} = '';
	$session->{stderr} = '';
	return ($finished, $out, $err);
}

# End a BackgroundPsql session whose server side may be gone already.
sub close_session
{
	my ($session) = @_;
	eval {
		$session->{run}->pump_nb;
		if ($session->{run}->pumpable)
		{
			$session->quit;
		}
		else
		{
			$session->{run}->finish;
		}
	};
	return;
}

# ALTER SYSTEM SET each name => value (RESET for undef), reload, and wait
# until a new session has the new values (for a RESET: a value that no longer
# comes from postgresql.auto.conf).  Give values as pg_settings.setting shows
# them (milliseconds without a unit, 'on'/'off', ...).
sub set_system
{
	my ($node, %settings) = @_;
	my @checks;

	foreach my $name (sort keys %settings)
	{
		my $value = $settings{$name};
		if (defined $value)
		{
			$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$value'");
			push @checks, "setting = '$value'";
		}
		else
		{
			$node->safe_psql('postgres', "ALTER SYSTEM RESET $name");
			push @checks,
			  "coalesce(sourcefile, '') NOT LIKE '%postgresql.auto.conf'";
		}
		$checks[-1] = "(SELECT $checks[-1] FROM pg_settings WHERE name = '$name')";
	}
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $all = join(' AND ', @checks);
	my $seen = wait_for_value($node, "SELECT $all", 't', 30);
	die "the reload did not take effect: $all" unless $seen eq 't';
	return;
}

# Wait until pooldiag.events has $expected rows matching a WHERE clause, for
# at most $seconds; returns the last count.
sub wait_event_count
{
	my ($node, $where, $expected, $seconds) = @_;
	return wait_for_value($node,
		"SELECT count(*) FROM pooldiag.events WHERE $where",
		$expected, $seconds);
}

# The events of one pid once everything queued is written, as
# "event:reason,..." ("event" alone when it has no reason), in the order of
# event_time: the worker queues its terminate event after it signalled, so
# the session's own disconnect event may get the lower event_id.
sub event_sequence
{
	my ($node, $pid) = @_;
	wait_flushed($node);
	return $node->safe_psql('postgres',
		"SELECT string_agg(event || coalesce(':' || reason, ''), ',' ORDER BY event_time, event_id) FROM pooldiag.events WHERE pid = $pid"
	);
}

# Wait until the worker has run $n more enforcement scans than it had when
# called, so that a test can say that nothing happened over several scans.
sub wait_scans
{
	my ($node, $n) = @_;
	my $scans = $node->safe_psql('postgres', 'SELECT scans FROM pooldiag.health');
	my $seen = wait_for_value($node,
		"SELECT scans >= $scans + $n FROM pooldiag.health", 't', 30);
	die "the worker did not scan $n more times" unless $seen eq 't';
	return;
}

1;
