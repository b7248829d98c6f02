# A SET on its own is session set-up, not a checkout; the statement after it
# is one, also when it fails before it reaches the executor (README: a
# checkout "is counted when the statement reaches the executor or the
# utility processor, or fails before it gets there").
#
# Found by the attack branch: over the extended protocol, a SET followed by a
# statement that fails in parse analysis, before one Sync, counts nothing:
# the SET's "set-up statement" flag lasts until the transaction ends, and
# the failure's ABORT event then believes the failed transaction was the
# SET's.  (Over the simple protocol the two are separate transactions and
# the failure is counted.)
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PgdWire;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('setup_then_failure');

my $w = PgdWire->new($node, app => 'driver');
my $pid = $w->pid;
my $base = session_row($node, $pid, 'checkouts');

$w->extended("SET application_name = 'driver'", no_sync => 1);
$w->extended('SELECT * FROM no_such_table', no_sync => 1);
is($w->sync, '42P01', 'the statement after the SET fails in parse analysis');
is(session_row($node, $pid, 'checkouts, state, checkout_start IS NULL'),
	($base + 1) . '|idle|t', 'the failed statement is one checkout');

$w->close;
$node->stop;
done_testing();
