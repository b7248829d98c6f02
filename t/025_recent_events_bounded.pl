# pooldiag.recent_events() reads a ring of any size in bounded memory: with
# event_buffer_size = 4,000,000 (a ring of about 1.1 GB) one call returns
# exactly the events queued, while the backend's address space may not grow
# by more than 64 MB.  Events stay queued because the worker's database has
# no extension; they are read from another database.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PoolDiagRawClient;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'bounded',
	create_extension => 0,
	conf => q{
pooldiag.event_buffer_size = 4000000
listen_addresses = '127.0.0.1'
});
$node->safe_psql('postgres', 'CREATE DATABASE reader');
$node->safe_psql('reader', 'CREATE EXTENSION pooldiag');
$node->safe_psql('postgres',
	"CREATE ROLE gen LOGIN; ALTER ROLE gen SET pooldiag.log_checkouts = 'all'");
ok( $node->poll_query_until(
		'reader',
		"SELECT worker_state = 'waiting-for-extension' FROM pooldiag.health"),
	'the worker keeps events queued');

# Bytes of a process's address space (VmSize), from /proc.
sub vm_size
{
	my ($pid) = @_;
	my ($kb) = slurp_file("/proc/$pid/status") =~ /^VmSize:\s+(\d+) kB/m;
	return $kb * 1024;
}

my ($reader, $pid) = open_session($node, db => 'reader', app => 'reader');

# Before any load: the call works at all with a ring this size.
is( $reader->query_safe(
		'SELECT count(*) = (SELECT events_queued FROM pooldiag.health) FROM pooldiag.recent_events()'
	),
	't',
	'recent_events() works with event_buffer_size = 4000000');

# 100,000 checkouts: 200,000 checkout and checkin events, and a rejected
# attempt whose user name is not valid UTF-8.
my $script = "$PostgreSQL::Test::Utils::tmp_check/select1.sql";
PostgreSQL::Test::Utils::append_to_file($script, "SELECT 1;\n");
$node->command_ok(
	[
		'pgbench', '-n', '-c', '2', '-j', '2', '-t', '50000',
		'-f', $script, '-U', 'gen', 'postgres'
	],
	'pgbench queues events');
is(raw_startup($node, params => [ user => "\xff", database => 'postgres' ]),
	'28000', 'a refused user name with an invalid byte');
my $queued = $reader->query_safe('SELECT events_queued FROM pooldiag.health');
cmp_ok($queued, '>=', 200_001, "$queued events are queued");

# Cap the reader's address space at what it has now plus 64 MB: a copy
# proportional to the ring, or to the events queued (about 60 MB of events,
# more once they are rows), would fail with "out of memory".
my $cap = vm_size($pid) + 64 * 1024 * 1024;
system('prlimit', "--pid=$pid", "--as=$cap:$cap") == 0
  or die "prlimit failed: $?";
is( $reader->query_safe(
		'SELECT (SELECT count(*) FROM pooldiag.recent_events()) || \'|\' || events_queued FROM pooldiag.health'
	),
	"$queued|$queued",
	'one call returns exactly the queued events, in bounded memory');
is( $reader->query_safe(
		q{SELECT count(*) FILTER (WHERE event IN ('checkout', 'checkin') AND usename = 'gen') || '|' || string_agg(usename, ',') FILTER (WHERE event = 'rejected') FROM pooldiag.recent_events()}
	),
	'200000|\xff',
	'every checkout and checkin is returned, and the refused name is escaped');
cmp_ok(vm_size($pid), '<=', $cap, 'the address space stayed under the cap');
$reader->quit;

$node->stop;
done_testing();
