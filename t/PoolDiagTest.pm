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
# database.  Returns the BackgroundPsql object and the backend's pid.
sub open_session
{
	my ($node, %opts) = @_;
	local $ENV{PGAPPNAME} = $opts{app} // 'tap';
	local $ENV{PGUSER} = $opts{user} if defined $opts{user};
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
