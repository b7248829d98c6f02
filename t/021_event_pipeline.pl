# The event pipeline under stress: the extension missing from
# pooldiag.database, a full ring, and the writer killed with events queued.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

#
# 1. The extension is missing: events stay queued, the writer warns exactly
#    once, and CREATE EXTENSION lets them through.  The ring is tiny, so the
#    same run also overflows it: the dropped counter must count exactly the
#    events that were lost, and nothing else may fail.
#
my $node = pooldiag_node(
	'pipeline',
	create_extension => 0,
	conf => q{
pooldiag.event_buffer_size = 64
});

# A session that stays open throughout; its connect event is queued.
my ($observer) = open_session($node, app => 'observer');
my $health = 'SELECT events_queued, events_dropped, worker_state FROM pooldiag.get_health()';

# Reach the health counters without the extension: declare just the C
# function (the extension's own script is what is missing), with the 13
# columns of version 1.0, which the library still serves.
$node->safe_psql(
	'postgres', q{
CREATE SCHEMA pooldiag;
CREATE FUNCTION pooldiag.get_health(
    OUT events_queued bigint, OUT events_dropped bigint, OUT events_written bigint,
    OUT last_flush timestamptz, OUT worker_pid integer, OUT worker_state text,
    OUT events_discarded bigint, OUT event_buffer_size integer,
    OUT terminations bigint, OUT would_terminations bigint,
    OUT leak_suspects bigint, OUT scans bigint, OUT scan_ns_per_slot float8)
RETURNS record AS 'pooldiag', 'pooldiag_health' LANGUAGE C;
});
is(wait_for_value($node, "SELECT worker_state FROM pooldiag.get_health()", 'waiting-for-extension'),
	'waiting-for-extension', 'the writer waits for the extension');

# Backends append their disconnect event while exiting, after the client
# has gone; count only once every other session has really ended.
sub wait_alone
{
	for (1 .. 600)
	{
		return if $observer->query_safe(
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'") eq '1';
		usleep(50_000);
	}
	die 'sessions did not end';
}
wait_alone();
my ($queued, $dropped) = split /\|/, $observer->query_safe(
	'SELECT events_queued, events_dropped FROM pooldiag.get_health()');
my $baseline = $queued + $dropped;

# 40 short sessions: a connect and a disconnect each, 80 events for 64 cells.
$node->safe_psql('postgres', 'SELECT 1') for 1 .. 40;
wait_alone();

($queued, $dropped) = split /\|/, $observer->query_safe(
	'SELECT events_queued, events_dropped FROM pooldiag.get_health()');
is($queued, 64, 'the ring is full');
is($queued + $dropped, $baseline + 80, 'every event is either queued or counted as dropped');
is($dropped, $baseline + 80 - 64, 'dropped counts exactly the events that did not fit');
is($observer->query_safe('SELECT 42'), '42', 'sessions go on working with a full ring');

# Several flush cycles (200 ms each) have passed: still exactly one warning.
usleep(1_500_000);
my $log = slurp_file($node->logfile);
my @warnings = ($log =~ /WARNING:  pooldiag writer cannot store events: extension "pooldiag" is not installed in database "postgres"/g);
is(scalar(@warnings), 1, 'exactly one WARNING while waiting for the extension');
like($log, qr/HINT:  Run CREATE EXTENSION pooldiag in database "postgres"/, 'with a hint');
my @drop_warnings = ($log =~ /WARNING:  pooldiag dropped \d+ events because its event ring was full/g);
is(scalar(@drop_warnings), 1, 'one WARNING about dropped events (at most one a minute)');
like($log, qr/HINT:  Raise "pooldiag.event_buffer_size"/, 'saying what to raise');
unlike($log, qr/pooldiag (writer|enforcer).*(FATAL|ERROR)|background worker "pooldiag (writer|enforcer)".*exited/,
	'the workers neither failed nor restarted');

# Once the extension exists, the queued events are written.
$node->safe_psql('postgres', 'DROP SCHEMA pooldiag CASCADE; CREATE EXTENSION pooldiag');
is(wait_for_value($node, "SELECT worker_state FROM pooldiag.health", 'running'),
	'running', 'the writer runs once the extension exists');
wait_flushed($node);
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pooldiag.events WHERE event_id <= (SELECT min(event_id) + 63 FROM pooldiag.events)"),
	'64',
	'the 64 queued events were written');
is( $node->safe_psql('postgres',
		"SELECT count(*) = max(event_id) - min(event_id) + 1 FROM pooldiag.events"),
	't', 'event ids have no gaps');
like(slurp_file($node->logfile),
	qr/LOG:  pooldiag writer resumed writing events to "pooldiag.events"/,
	'the writer says it resumed');
$observer->quit;
$node->stop;

#
# 2. The writer is killed with events queued: the postmaster restarts it,
#    and every queued event is written exactly once.
#
$node = pooldiag_node(
	'restart', conf => q{
pooldiag.flush_interval = '1h'
});
# The writer flushes once at start; after that events wait for an hour.
wait_flushed($node);
my $old_pid = $node->safe_psql('postgres', 'SELECT writer_pid FROM pooldiag.health');
my $written_before = $node->safe_psql('postgres', 'SELECT events_written FROM pooldiag.health');

# A role that may create objects in public tries to hijack the functions
# the writer (a superuser) calls; the writer must not pick them up.
$node->safe_psql(
	'postgres', q{
CREATE ROLE mallory LOGIN;
GRANT CREATE ON SCHEMA public TO mallory;
SET ROLE mallory;
CREATE TABLE public.hijacked (who text);
CREATE FUNCTION public.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE sql
  AS $$ INSERT INTO public.hijacked VALUES (current_user) RETURNING 1::bigint $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
  AS $$ INSERT INTO public.hijacked VALUES (current_user) RETURNING pg_catalog.now() $$;
});

{
	local $ENV{PGAPPNAME} = 'burst';
	$node->safe_psql('postgres', "SELECT 1") for 1 .. 20;
}
my $queued_now = $node->safe_psql('postgres', 'SELECT events_queued FROM pooldiag.health');
cmp_ok($queued_now, '>=', 40, 'events of 20 sessions are queued');

$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_pid)");
my $new_pid = wait_for_value($node,
	"SELECT writer_pid IS NOT NULL AND writer_pid <> $old_pid FROM pooldiag.health", 't', 30);
is($new_pid, 't', 'the postmaster restarted the writer');
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) = count(DISTINCT event_id) AND count(*) = max(event_id) - min(event_id) + 1 FROM pooldiag.events"),
	't', 'no event written twice, and no gap in the ids, across the restart');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE event = 'connect') || '|' || count(*) FILTER (WHERE event = 'disconnect') FROM pooldiag.events WHERE application_name = 'burst'}),
	'20|20',
	'every session of the burst has its connect and disconnect');
is($node->safe_psql('postgres', 'SELECT events_dropped FROM pooldiag.health'), '0', 'nothing dropped');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.hijacked'), '0',
	'the writer never called functions planted in public');

#
# 3. Retention: rows older than pooldiag.events_retention go, in batches;
#    0 keeps everything.
#
$node->safe_psql('postgres', q{
ALTER SYSTEM SET pooldiag.events_retention = 0;
ALTER SYSTEM SET pooldiag.flush_interval = '200ms';
SELECT pg_reload_conf();
INSERT INTO pooldiag.events (event_id, event_time, event) OVERRIDING SYSTEM VALUE
  SELECT -22001 + i, now() - interval '8 days', 'connect' FROM generate_series(1, 12000) i;
INSERT INTO pooldiag.events (event_id, event_time, event) OVERRIDING SYSTEM VALUE
  SELECT -11 + i, now() - interval '6 days', 'connect' FROM generate_series(1, 10) i;
});
usleep(7_000_000);    # longer than one retention pass (5 s)
is($node->safe_psql('postgres', 'SELECT count(*) FROM pooldiag.events WHERE event_id < 0'),
	'12010', 'events_retention = 0 keeps every row');

$node->safe_psql('postgres', q{
ALTER SYSTEM SET pooldiag.events_retention = '7d';
SELECT pg_reload_conf();
});
is( wait_for_value($node,
		"SELECT count(*) FROM pooldiag.events WHERE event_time < now() - interval '7 days'", '0', 30),
	'0', 'rows older than 7 days are deleted');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pooldiag.events WHERE event_id < 0'),
	'10', 'younger rows stay');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM pooldiag.events WHERE event_id > 0'),
	'>=', 40, 'written events stay');

$node->stop;
done_testing();
