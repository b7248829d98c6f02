# A session pooldiag closes learns why: its FATAL carries the reason, the
# numbers in its DETAIL and the SQLSTATE of PostgreSQL's own timeouts, and
# the server log has one line per close naming the session.  An
# administrator's pg_terminate_backend() is left as it was.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = pooldiag_node('reasons', conf => "pooldiag.lifetime_jitter = 0\n");
$node->safe_psql(
	'postgres', q{
CREATE ROLE idler LOGIN;
ALTER ROLE idler SET pooldiag.idle_timeout = '1s';
CREATE ROLE holder LOGIN;
ALTER ROLE holder SET pooldiag.idle_in_transaction_timeout = '1500ms';
CREATE ROLE ager LOGIN;
ALTER ROLE ager SET pooldiag.max_lifetime = '2s';
CREATE ROLE drained LOGIN;
});

# Open a session, let pooldiag close it, then use it: psql reports what
# libpq read from the server.
sub closed_by_pooldiag
{
	my ($user, $setup) = @_;
	my ($s, $pid) = open_session($node, user => $user, app => "app-$user");
	$s->query_safe('\set VERBOSITY verbose');
	$s->query_safe($setup) if $setup;
	return ($s, $pid);
}

sub what_client_sees
{
	my ($s) = @_;
	my (undef, undef, $err) = wait_query($s, send_query($s, 'SELECT 1'), 10);
	close_session($s);
	return $err;
}

my $log_start = -s $node->logfile;

my ($s, $pid) = closed_by_pooldiag('idler');
is(wait_gone($node, [$pid], 10), '0', 'idle session closed');
my $err = what_client_sees($s);
like($err, qr/FATAL:  57P05: terminating connection due to pooldiag idle timeout/,
	'idle_timeout: the client gets 57P05 and the reason');
like($err, qr/DETAIL:  The session was idle for 1\.\d s; "pooldiag\.idle_timeout" is 1s\./,
	'idle_timeout: DETAIL with the numbers');
like($err, qr/HINT:  Configure the connection pool to retire idle connections/,
	'idle_timeout: HINT');
my $log = slurp_file($node->logfile, $log_start);
like($log,
	qr/LOG:  pooldiag closed the session of process $pid for idle_timeout\n.*DETAIL:  Role "idler", database "postgres", application "app-idler"\.  The session was idle for 1\.\d s; "pooldiag\.idle_timeout" is 1s\./,
	'idle_timeout: one log line naming the session and the numbers');
like($log, qr/FATAL:  terminating connection due to pooldiag idle timeout/,
	'the backend\'s own FATAL in the server log says why too');

($s, $pid) = closed_by_pooldiag('holder', 'BEGIN; SELECT 1;');
is(wait_gone($node, [$pid], 10), '0', 'idle-in-transaction session closed');
$err = what_client_sees($s);
like($err, qr/FATAL:  25P03: terminating connection due to pooldiag idle-in-transaction timeout/,
	'idle_in_transaction_timeout: 25P03 and the reason');
like($err, qr/DETAIL:  The session was idle in a transaction for 1\.\d s; "pooldiag\.idle_in_transaction_timeout" is 1500ms\./,
	'idle_in_transaction_timeout: DETAIL');

($s, $pid) = closed_by_pooldiag('ager');
is(wait_gone($node, [$pid], 10), '0', 'old session recycled');
$err = what_client_sees($s);
like($err, qr/FATAL:  57P05: terminating connection due to pooldiag maximum lifetime/,
	'max_lifetime: 57P05 and the reason');
like($err, qr/DETAIL:  The session was \d+\.\d s old and idle for \d+\.\d s; "pooldiag\.max_lifetime" is 2s, less 0\.0% jitter for this session\./,
	'max_lifetime: DETAIL');

($s, $pid) = closed_by_pooldiag('drained');
is($node->safe_psql('postgres', "SELECT pooldiag.drain(NULL, 'drained')"), '1', 'drain marks it');
is(wait_gone($node, [$pid], 10), '0', 'drained session closed');
$err = what_client_sees($s);
like($err, qr/FATAL:  57P05: terminating connection due to pooldiag drain/, 'drain: the reason');
like($err, qr/DETAIL:  pooldiag\.drain\(\) asked for this session to be closed once idle; it was idle for \d+\.\d s\./,
	'drain: DETAIL');

# An administrator's kill is not dressed up as one of ours.
($s, $pid) = closed_by_pooldiag('drained');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
is(wait_gone($node, [$pid], 10), '0', 'pg_terminate_backend closes it');
$err = what_client_sees($s);
like($err, qr/FATAL:  57P01: terminating connection due to administrator command/,
	'pg_terminate_backend keeps its own message and SQLSTATE');
unlike($err, qr/pooldiag/, 'and does not mention pooldiag');

$node->stop;
done_testing();
