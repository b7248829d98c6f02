# Who is who: the client's port in pooldiag.sessions and in events; client
# pools that sessions declare with pooldiag.client_* (settable by any role,
# as startup options, never enforced, hidden like the other private
# columns, hostile values refused or cleaned); wait events and blocked_by,
# which tell a blocker from its victims; and checkin events that carry the
# identity of their checkout, so that per-application sums of checkouts and
# checkins balance when a client changes application_name mid-checkout.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgdWire;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'who',
	init => { extra => [ '--encoding=UTF8', '--locale=C' ] },
	conf => q{
listen_addresses = '127.0.0.1'
pooldiag.log_checkouts = 'all'
pooldiag.max_lifetime = '1h'
});
my $hba = $node->data_dir . '/pg_hba.conf';
open(my $fh, '>', $hba) or die "could not write $hba: $!";
print $fh "local all all trust\nhost all all 127.0.0.1/32 trust\n";
close $fh;
$node->reload;

# Roles without any privilege, and one that may read all statistics.
$node->safe_psql(
	'postgres', q{
CREATE ROLE plain LOGIN;
CREATE ROLE other LOGIN;
CREATE ROLE stats LOGIN IN ROLE pg_read_all_stats;
});

# A background psql over TCP from 127.0.0.1 with the given conninfo
# additions (BackgroundPsql takes its conninfo from connstr()).
sub tcp_session
{
	my ($conninfo) = @_;
	no warnings 'redefine';
	local *PostgreSQL::Test::Cluster::connstr = sub {
		return 'host=127.0.0.1 port=' . $node->port . " dbname=postgres $conninfo";
	};
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	return ($session, $pid);
}

sub as_role
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

#
# 1. A role with no privileges declares its pool as startup options, over
#    TCP, at no extra round trip.
#
my $options = join(' ',
	'-c pooldiag.client_pool=orders-api',
	'-c pooldiag.client_pool_size=5',
	'-c pooldiag.client_max_overflow=10',
	'-c pooldiag.client_pool_timeout=30s',
	'-c pooldiag.client_recycle=30min',
	'-c pooldiag.client_instance=web-3:4711');
my ($app, $app_pid) =
  tcp_session("user=plain application_name=who-a options='$options'");
my $port = $app->query_safe('SELECT inet_client_port()');
like($port, qr/^[0-9]+$/, "the client's own port: $port");

my $declared_cols =
  'client_pool, client_pool_size, client_max_overflow, client_pool_timeout, client_recycle, client_instance';
is(session_row($node, $app_pid, "client_port, client_addr, $declared_cols"),
	"$port|127.0.0.1|orders-api|5|10|00:00:30|00:30:00|web-3:4711",
	'client_port is the port the client sees, and the declared pool is shown');
is( $node->safe_psql('postgres',
		"SELECT s.client_port = a.client_port FROM pooldiag.sessions s JOIN pg_stat_activity a USING (pid) WHERE pid = $app_pid"),
	't', 'client_port is the one pg_stat_activity shows');
is( $app->query_safe(
		"SELECT client_port, $declared_cols FROM pooldiag.sessions WHERE pid = pg_backend_pid()"),
	"$port|orders-api|5|10|00:00:30|00:30:00|web-3:4711",
	'the session sees its own row');
is( as_role('stats',
		"SELECT client_port, client_pool, client_instance FROM pooldiag.sessions WHERE pid = $app_pid"),
	"$port|orders-api|web-3:4711",
	'a member of pg_read_all_stats sees them');
is( as_role('other',
		"SELECT pid, usename, client_port, client_addr, $declared_cols, wait_event_type, wait_event, blocked_by FROM pooldiag.sessions WHERE pid = $app_pid"
	),
	"$app_pid|plain|||||||||||",
	'another unprivileged role sees the session, but none of it');

# Changed with SET: published at once.  Nothing enforced changes.
my $enforced = 'recycle_at, max_lifetime, idle_timeout, terminate_at, terminate_reason';
my $enforced_before = session_row($node, $app_pid, $enforced);
like($enforced_before, qr/^\S.*\|01:00:00\|\|/, "recycle_at from max_lifetime: $enforced_before");
$app->query_safe(q{SET pooldiag.client_recycle = '1s'});
$app->query_safe(q{SET pooldiag.client_pool_size = 50});
is(session_row($node, $app_pid, 'client_recycle, client_pool_size'),
	'00:00:01|50', 'a SET is shown at once');
is(session_row($node, $app_pid, $enforced), $enforced_before,
	'client_recycle does not change recycle_at or any deadline');
wait_scans($node, 3);
is(backends_alive($node, $app_pid), 1, 'and the session is not closed');
$app->query_safe(q{RESET pooldiag.client_recycle});
is(session_row($node, $app_pid, 'client_recycle'),
	'00:30:00', 'RESET returns to the startup option');

# Events carry the port too.
wait_flushed($node);
is( $node->safe_psql('postgres',
		"SELECT string_agg(event || ':' || client_port, ',') FROM pooldiag.events WHERE pid = $app_pid AND event = 'connect'"
	),
	"connect:$port",
	'the connect event has the client port');

#
# 2. Hostile startup options: out-of-range values are refused (the
#    connection fails, as for any bad startup option); strings, whatever
#    their bytes, are cleaned and cut.
#
my $refused = eval {
	PgdWire->new($node, user => 'plain',
		params => { options => '-c pooldiag.client_pool_size=99999999' });
	'connected';
} // $@;
like($refused, qr/start-up failed: 22023/, 'a huge pool size is refused (22023)');
$refused = eval {
	PgdWire->new($node, user => 'plain',
		params => { options => '-c pooldiag.client_max_overflow=-3' });
	'connected';
} // $@;
like($refused, qr/start-up failed: 22023/, 'a negative overflow is refused (22023)');

my $wire = PgdWire->new(
	$node,
	user => 'plain',
	app => 'hostile',
	params => {
		options => "-c pooldiag.client_pool=\xff\xfeorders\xc3 -c pooldiag.client_instance="
		  . ("\xff" x 100)
	});
my $wire_pid = $wire->pid;
is( session_row($node, $wire_pid,
		'client_port, client_pool, client_instance, octet_length(client_instance)'),
	'-1|\xff\xfeorders\xc3|' . ('\xff' x 15) . '|60',
	'invalid UTF-8 is escaped as \xNN and cut at a whole escape; a Unix socket has port -1');
$wire->close;

#
# 3. A blocker and its victims.  The blocker holds FOR UPDATE locks in a
#    transaction; three sessions wait to update one of its rows each.
#
$node->safe_psql('postgres',
	'CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts SELECT i, 0 FROM generate_series(1, 3) i'
);
my ($blocker, $blocker_pid) = open_session($node, app => 'blocker');
$blocker->query_safe('BEGIN');
$blocker->query_safe('SELECT * FROM accounts FOR UPDATE');
my (@victims, @victim_pids, @markers);
for my $i (1 .. 3)
{
	my ($v, $vpid) = open_session($node, app => "victim-$i");
	push @victims, $v;
	push @victim_pids, $vpid;
	push @markers, send_query($v, "UPDATE accounts SET balance = balance + 1 WHERE id = $i");
}
my $victim_list = join(',', @victim_pids);
is( wait_for_value(
		$node,
		"SELECT count(*) FROM pooldiag.sessions WHERE pid IN ($victim_list) AND wait_event_type = 'Lock'",
		'3'),
	'3',
	'the three victims wait on a lock');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(wait_event_type || '/' || wait_event || ' ' || blocked_by::text, ';' ORDER BY pid) FROM pooldiag.sessions WHERE pid IN ($victim_list)"
	),
	join(';', ("Lock/transactionid {$blocker_pid}") x 3),
	'each victim is blocked by the blocker, and only by it');
is( $node->safe_psql('postgres',
		"SELECT state, wait_event_type, blocked_by FROM pooldiag.sessions WHERE pid = $blocker_pid"),
	'idle in transaction|Client|{}',
	'the blocker waits for its client and is blocked by nobody');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pooldiag.sessions WHERE cardinality(blocked_by) > 0"),
	join(',', sort { $a <=> $b } @victim_pids),
	'exactly the victims are blocked');
is( as_role('plain',
		"SELECT count(*) FROM pooldiag.sessions WHERE pid IN ($victim_list) AND wait_event_type IS NULL AND blocked_by IS NULL"
	),
	'3',
	'another role sees neither wait events nor blockers of sessions it may not see');
$blocker->query_safe('COMMIT');
for my $i (0 .. 2)
{
	my ($finished) = wait_query($victims[$i], $markers[$i]);
	ok($finished, "victim " . ($i + 1) . " went on once the blocker committed");
	$victims[$i]->quit;
}
$blocker->quit;

#
# 4. Checkin events carry the identity of their checkout.  A client that
#    changes application_name inside checkouts (as pgjdbc and PgBouncer do)
#    and on its own between them: per-application sums balance.
#
my ($mixer, $mixer_pid) = open_session($node, app => 'mix-a');
for my $i (1 .. 5)
{
	# A block that starts as mix-a and ends as mix-b, and one the other way.
	$mixer->query_safe('BEGIN');
	$mixer->query_safe('SELECT 1');
	$mixer->query_safe(q{SET application_name = 'mix-b'});
	$mixer->query_safe('COMMIT');
	$mixer->query_safe('BEGIN');
	$mixer->query_safe(q{SET application_name = 'mix-a'});
	$mixer->query_safe('COMMIT');
	# An autocommit statement that changes it while it runs.
	$mixer->query_safe(q{SELECT set_config('application_name', 'mix-c', false)});
	# A SET on its own, between checkouts (PgBouncer's way): no checkout.
	$mixer->query_safe(q{SET application_name = 'mix-a'});
}
$mixer->quit;
wait_gone($node, [$mixer_pid]);
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(application_name || ' ' || checkouts || '-' || checkins, ', ' ORDER BY application_name)
		 FROM (SELECT application_name,
		              count(*) FILTER (WHERE event = 'checkout') AS checkouts,
		              count(*) FILTER (WHERE event = 'checkin') AS checkins
		       FROM pooldiag.events WHERE pid = $mixer_pid AND event IN ('checkout', 'checkin')
		       GROUP BY 1) s"),
	'mix-a 11-11, mix-b 5-5',
	'checkouts and checkins balance per application_name');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pooldiag.events i JOIN pooldiag.events o
		   ON o.pid = i.pid AND o.event = 'checkout' AND i.event = 'checkin'
		  AND o.event_time = (i.detail->>'checkout_start')::timestamptz
		 WHERE i.pid = $mixer_pid AND o.application_name = i.application_name"),
	'16', 'each checkin names the application of its own checkout');

$app->quit;
$node->stop;
done_testing();
