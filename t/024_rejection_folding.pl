# Refused connection attempts cannot fill the disk: within
# pooldiag.rejection_fold_window, repeats of a rejection with the same
# reason, SQLSTATE, user, database and client address are counted instead of
# written one by one, and one row with "repeats" stands for them when the
# window ends.  The count is exact across failed writes and writer restarts,
# and when the fold table is full, new keys are written as usual.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PoolDiagRawClient;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = pooldiag_node(
	'folding', conf => q{
listen_addresses = '127.0.0.1'
});
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE ROLE app2 LOGIN');

# TCP from 127.0.0.1 is trusted; 127.0.0.2 has no pg_hba.conf entry at all.
my $hba = $node->data_dir . '/pg_hba.conf';
open(my $fh, '>', $hba) or die "could not write $hba: $!";
print $fh "local all all trust\nhost all all 127.0.0.1/32 trust\n";
close $fh;
$node->reload;

# $n refused attempts of one kind; returns how many got the SQLSTATE.
sub attempts
{
	my ($n, $from, $user, $db, $sqlstate) = @_;
	my $refused = 0;
	for (1 .. $n)
	{
		$refused++
		  if raw_startup($node, from => $from,
			params => [ user => $user, database => $db ]) eq $sqlstate;
	}
	return $refused;
}

# The rows of one key once everything queued is written:
# "rows|folded rows|attempts they stand for".
sub key_rows
{
	my ($user, $db, $host) = @_;
	wait_flushed($node);
	return $node->safe_psql('postgres',
		"SELECT count(*) || '|' || count(*) FILTER (WHERE detail ? 'repeats') || '|' || coalesce(sum(coalesce((detail->>'repeats')::int, 1)), 0) FROM pooldiag.events WHERE event = 'rejected' AND usename = '$user' AND datname = '$db' AND host(client_addr) = '$host'"
	);
}

# Close every open window (window 0 writes them at the next flush), wait
# for the folded rows, and open windows again with the given length (in
# milliseconds, as pg_settings shows it).  Attempts still queued first: the
# writer applies the window in effect when it writes.
sub close_windows
{
	my ($expected_folded_rows, $window) = @_;
	wait_flushed($node);
	set_system($node, 'pooldiag.rejection_fold_window' => '0');
	is(wait_event_count($node, "event = 'rejected' AND detail ? 'repeats'",
			$expected_folded_rows),
		$expected_folded_rows,
		"$expected_folded_rows folded rows once the windows are closed");
	set_system($node, 'pooldiag.rejection_fold_window' => $window);
}

#
# 300 attempts at a database that does not exist, from one address, in a
# few seconds: the first row, then one row for the 299 others.
#
my $start = time();
is(attempts(300, '127.0.0.1', 'app', 'nosuchdb', '3D000'),
	300, '300 attempts refused');
my $took = time() - $start;
cmp_ok($took, '<', 60, sprintf('within the default 60 s window (%.1f s)', $took));
is(key_rows('app', 'nosuchdb', '127.0.0.1'),
	'1|0|1', 'the first is written at once, the repeats are counted');
is($node->safe_psql('postgres', 'SELECT rejections_folded FROM pooldiag.health'),
	'299', 'health counts 299 folded rejections');

close_windows(1, '60000');
is(key_rows('app', 'nosuchdb', '127.0.0.1'),
	'2|1|300', 'one folded row stands for the other 299');
is( $node->safe_psql(
		'postgres', q{
SELECT f.reason, f.detail->>'sqlstate', f.detail->>'repeats',
       (f.detail->>'first_time')::timestamptz > first.event_time,
       (f.detail->>'last_time')::timestamptz >= (f.detail->>'first_time')::timestamptz,
       f.event_time = (f.detail->>'last_time')::timestamptz,
       f.pid <> first.pid, first.detail ? 'repeats'
FROM pooldiag.events f, pooldiag.events first
WHERE f.event = 'rejected' AND f.usename = 'app' AND f.datname = 'nosuchdb'
  AND f.detail ? 'repeats'
  AND first.event = 'rejected' AND first.usename = 'app' AND first.datname = 'nosuchdb'
  AND NOT first.detail ? 'repeats'}),
	'database_does_not_exist|3D000|299|t|t|t|t|f',
	'the folded row: same key, repeats, first and last time, the last attempt\'s pid');

#
# Keys are kept apart: another user, another address (refused by
# pg_hba.conf), interleaved.
#
my ($other_user, $other_host) = (0, 0);
for my $i (1 .. 30)
{
	$other_user += attempts(1, '127.0.0.1', 'app2', 'nosuchdb', '3D000');
	$other_host += attempts(1, '127.0.0.2', 'app', 'postgres', '28000')
	  if $i <= 20;
}
is("$other_user|$other_host", '30|20', 'interleaved attempts refused');
close_windows(3, '3000');
is(key_rows('app2', 'nosuchdb', '127.0.0.1'), '2|1|30', 'another user: its own rows');
is(key_rows('app', 'postgres', '127.0.0.2'), '2|1|20', 'another address: its own rows');
is(key_rows('app', 'nosuchdb', '127.0.0.1'), '2|1|300', 'the first key is untouched');

#
# A window ends by itself: its folded row is written without any further
# attempt, and the next attempt opens a new window.
#
is(attempts(10, '127.0.0.1', 'nobody', 'postgres', '28000'), 10, '10 attempts of an unknown role');
is(key_rows('nobody', 'postgres', '127.0.0.1'), '1|0|1', 'the first is written');
is(wait_event_count($node, "usename = 'nobody' AND detail ? 'repeats'", '1'),
	'1', 'the 3 s window ends by itself');
is(key_rows('nobody', 'postgres', '127.0.0.1'), '2|1|10', 'its folded row holds the other 9');
is(attempts(1, '127.0.0.1', 'nobody', 'postgres', '28000'), 1, 'one more attempt later');
is(key_rows('nobody', 'postgres', '127.0.0.1'), '3|1|11', 'is written as the first of a new window');
set_system($node, 'pooldiag.rejection_fold_window' => '60000');

#
# Exact across failures: while writes fail, and across a restart of the
# writer, nothing is counted twice or lost.
#
$node->safe_psql('postgres',
	"ALTER TABLE pooldiag.events ADD CONSTRAINT refuse_ghost CHECK (usename <> 'ghost')");
is(attempts(40, '127.0.0.1', 'ghost', 'postgres', '28000'), 40, '40 attempts while writes fail');
is(wait_for_value($node, 'SELECT worker_state FROM pooldiag.health', 'write-failed'),
	'write-failed', 'the writer cannot write');
my $worker = $node->safe_psql('postgres', 'SELECT worker_pid FROM pooldiag.health');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker)");
is( wait_for_value(
		$node,
		"SELECT worker_pid IS NOT NULL AND worker_pid <> $worker AND worker_state = 'write-failed' FROM pooldiag.health",
		't'),
	't',
	'a restarted writer cannot write either');
is(attempts(60, '127.0.0.1', 'ghost', 'postgres', '28000'), 60, '60 more attempts');
$node->safe_psql('postgres', 'ALTER TABLE pooldiag.events DROP CONSTRAINT refuse_ghost');
is(key_rows('ghost', 'postgres', '127.0.0.1'), '1|0|1', 'once writes work, the first is written');

$worker = $node->safe_psql('postgres', 'SELECT worker_pid FROM pooldiag.health');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker)");
is( wait_for_value(
		$node,
		"SELECT worker_pid IS NOT NULL AND worker_pid <> $worker FROM pooldiag.health",
		't'),
	't',
	'the writer restarts');
# A writer that is asked to stop (pg_terminate_backend, or a shutdown) ends
# its open windows and writes their rows first, so the 99 repeats are in a
# row already; the next 50 attempts open a new window.
is(key_rows('ghost', 'postgres', '127.0.0.1'), '2|1|100',
	'the stopping writer wrote the open window: the other 99');
is(attempts(50, '127.0.0.1', 'ghost', 'postgres', '28000'), 50, '50 more attempts');
close_windows(6, '60000');
is(key_rows('ghost', 'postgres', '127.0.0.1'),
	'4|2|150', 'two windows, and all 150 attempts counted exactly once');

#
# A full fold table: keys beyond the first 256 that have an open window
# are written one by one, never dropped.
#
my $refused = 0;
for my $k (1 .. 260)
{
	$refused += attempts(2, '127.0.0.1', "user$k", 'postgres', '28000');
}
is($refused, 520, '2 attempts for each of 260 keys');
wait_flushed($node);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pooldiag.events WHERE event = 'rejected' AND usename LIKE 'user%'"),
	256 + 4 * 2,
	'the first attempt of each key, and both attempts of the 4 keys that found the table full');
close_windows(6 + 256, '60000');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) || '|' || sum(coalesce((detail->>'repeats')::int, 1)) FROM pooldiag.events WHERE event = 'rejected' AND usename LIKE 'user%'"
	),
	(2 * 256 + 4 * 2) . '|520',
	'every attempt is accounted for');

#
# The health counter is exact, and nothing was dropped.
#
is( $node->safe_psql(
		'postgres',
		"SELECT rejections_folded || '|' || (SELECT sum((detail->>'repeats')::int) FROM pooldiag.events WHERE detail ? 'repeats') || '|' || events_dropped FROM pooldiag.health"
	),
	(299 + 29 + 19 + 9 + 99 + 49 + 256) . '|' . (299 + 29 + 19 + 9 + 99 + 49 + 256) . '|0',
	'rejections_folded equals the repeats written, and no event was dropped');

$node->stop;
done_testing();
