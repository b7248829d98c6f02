# Event ids come from the database (an identity column), so rows brought in
# from elsewhere never collide with the worker's, and an event counts as
# written only once its row is committed.  History is moved between servers
# with COPY, as README shows; rows inserted with explicit ids ahead of the
# sequence make the worker move the sequence past them instead of failing.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $origin = pooldiag_node('origin');
my $target = pooldiag_node('target');

sub sessions
{
	my ($node, $app, $n) = @_;
	local $ENV{PGAPPNAME} = $app;
	$node->safe_psql('postgres', 'SELECT 1') for 1 .. $n;
	return;
}

# connect|disconnect counts of one application, once everything is written.
sub written
{
	my ($node, $app) = @_;
	wait_flushed($node);
	return $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect') FROM pooldiag.events WHERE application_name = '$app'"
	);
}

# Every row the worker wrote is counted in events_written, and nothing else:
# the table holds exactly events_written rows besides the $imported ones.
# Polled, because the sessions that ask produce events themselves.
sub counted_exactly
{
	my ($node, $imported) = @_;
	# Polled from inside one statement: a new connection per poll would
	# queue events of its own, and under load the writer would never be
	# caught between two batches.
	return $node->safe_psql('postgres', qq{
CREATE FUNCTION pg_temp.counted_exactly() RETURNS boolean LANGUAGE plpgsql AS \$\$
DECLARE ok boolean;
BEGIN
  FOR i IN 1 .. 300 LOOP
    SELECT events_written = (SELECT count(*) FROM pooldiag.events) - $imported
      INTO ok FROM pooldiag.health;
    EXIT WHEN ok;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN ok;
END \$\$;
SELECT pg_temp.counted_exactly();});
}

sessions($origin, 'origin-app', 10);
sessions($target, 'target-app', 5);
is(written($origin, 'origin-app'), '10|10', 'the origin wrote its events');
is(written($target, 'target-app'), '5|5', 'the target wrote its own');
is( $target->safe_psql('postgres', 'SELECT min(event_id) FROM pooldiag.events'),
	$origin->safe_psql('postgres', 'SELECT min(event_id) FROM pooldiag.events'),
	'both servers used the same ids');

#
# 1. The origin's history, archived with COPY without its ids, is restored
#    into the target: new ids, no collision, and the worker goes on.
#
my $cols = 'event_time, event, reason, pid, backend_start, datname, usename, application_name, client_addr, detail';
my $archive = $origin->basedir . '/events.copy';
$origin->safe_psql('postgres',
	"\\copy (SELECT $cols FROM pooldiag.events ORDER BY event_id) TO '$archive'");
# The rows in the archive itself: a count(*) in another session could see
# events the origin's writer stored after the COPY (the COPY session's own).
my $archived = () = slurp_file($archive) =~ /\n/g;

my ($rc, $out, $err) = $target->psql('postgres',
	"\\copy pooldiag.events ($cols) FROM '$archive'");
is($rc, 0, 'the archive restores into a server that has events of its own');
is($err, '', 'without an error');
my $imported = $archived;
is( $target->safe_psql('postgres',
		q{SELECT count(*) FROM pooldiag.events WHERE application_name = 'origin-app'}),
	'20', 'the origin-app rows are there');

sessions($target, 'after-restore', 5);
is(written($target, 'after-restore'), '5|5', 'the worker writes on after the restore');
is($target->safe_psql('postgres', 'SELECT worker_state FROM pooldiag.health'),
	'running', 'and stays running');
is(counted_exactly($target, $imported), 't', 'events_written counts exactly the rows written');

#
# 2. Rows inserted with explicit ids just ahead of the sequence (a restore
#    that kept the origin's ids; a few ahead, so that events the worker
#    writes meanwhile cannot make this INSERT fail): the worker's inserts
#    soon collide; it
#    moves the sequence past the highest id and writes the same batch again.
#
$target->safe_psql(
	'postgres', qq{
INSERT INTO pooldiag.events (event_id, $cols) OVERRIDING SYSTEM VALUE
SELECT pg_sequence_last_value(pg_get_serial_sequence('pooldiag.events', 'event_id')::regclass)
       + 5 + i, $cols
FROM (SELECT row_number() OVER (ORDER BY event_id) AS i, * FROM pooldiag.events
      WHERE application_name = 'origin-app') o;
});
$imported += 20;
sessions($target, 'after-ids-ahead', 10);
is(written($target, 'after-ids-ahead'), '10|10',
	'every event after the explicit ids is written');
is($target->safe_psql('postgres', 'SELECT worker_state FROM pooldiag.health'),
	'running', 'the worker is running');
is(counted_exactly($target, $imported), 't', 'events_written counts exactly the rows written');
my $log = slurp_file($target->logfile);
like($log,
	qr/LOG:  pooldiag writer moved the event_id sequence of "pooldiag\.events" past \d+, the highest id in the table/,
	'the worker says it moved the sequence');
unlike($log, qr/WARNING:  pooldiag (worker|writer) could not write events/,
	'and never reported a failed write');

#
# 3. A worker restart afterwards neither skips nor double-counts anything.
#
my $old_pid = $target->safe_psql('postgres', 'SELECT worker_pid FROM pooldiag.health');
$target->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
is( wait_for_value($target,
		"SELECT worker_pid IS NOT NULL AND worker_pid <> $old_pid FROM pooldiag.health", 't', 30),
	't', 'the worker was restarted');
sessions($target, 'after-restart', 5);
is(written($target, 'after-restart'), '5|5', 'every event after the restart is written');
is(counted_exactly($target, $imported), 't', 'events_written still counts exactly the rows written');

#
# 4. Explicit ids that exist already: that statement fails on the key, and
#    only that statement.
#
($rc, $out, $err) = $target->psql(
	'postgres', q{
INSERT INTO pooldiag.events (event_id, event_time, event) OVERRIDING SYSTEM VALUE
SELECT min(event_id), now(), 'connect' FROM pooldiag.events});
like($err, qr/duplicate key value violates unique constraint "events_pkey"/,
	'a duplicate id is refused');
sessions($target, 'after-duplicate', 3);
is(written($target, 'after-duplicate'), '3|3', 'the worker is not affected');
is( $target->safe_psql('postgres',
		'SELECT count(*) = count(DISTINCT event_id) FROM pooldiag.events'),
	't', 'no id is used twice');

$origin->stop;
$target->stop;
done_testing();
