# A COMMIT AND CHAIN that fails (here on a deferred unique constraint) does
# not chain: the session is idle outside a transaction, checked in, and is
# enforced like any idle session: idle_timeout and drain() close it, and it
# is never reported as a leak suspect.  Any role with TEMP can do this.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('failed_chain');
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
ALTER ROLE app SET pooldiag.leak_threshold = '1s';
CREATE ROLE idler LOGIN;
ALTER ROLE idler SET pooldiag.idle_timeout = '2s';
ALTER ROLE idler SET pooldiag.leak_threshold = '1s';
});

my $chain_fail = "CREATE TEMP TABLE t (id int UNIQUE DEFERRABLE INITIALLY DEFERRED);\n"
  . "BEGIN;\nINSERT INTO t VALUES (1), (1);\nCOMMIT AND CHAIN;";

# drain() closes it.
my ($s, $pid) = open_session($node, user => 'app', app => 'chain-drain');
my (undef, undef, $err) = wait_query($s, send_query($s, $chain_fail), 10);
like($err, qr/duplicate key value violates unique constraint/, 'the COMMIT AND CHAIN failed');
is(session_row($node, $pid, 'state, checkout_start IS NULL, checkouts'), 'idle|t|3',
	'the session is idle and checked in (2 + 1 checkouts)');
is($node->safe_psql('postgres', "SELECT pooldiag.drain(NULL, 'app')"), '1', 'drain() marks it');
is(wait_gone($node, [$pid], 5), '0', 'drain() closes it');
close_session($s);

# idle_timeout closes it.
($s, $pid) = open_session($node, user => 'idler', app => 'chain-idle');
wait_query($s, send_query($s, $chain_fail), 10);
is(session_row($node, $pid, 'state, checkout_start IS NULL'), 'idle|t', 'idle and checked in');
is(wait_gone($node, [$pid], 10), '0', 'idle_timeout closes it');
close_session($s);

is(event_sequence($node, $pid), 'connect,terminate:idle_timeout,disconnect:killed',
	'its events: connect, terminate for idle_timeout, disconnect; no leak_suspect');
is($node->safe_psql('postgres', "SELECT count(*) FROM pooldiag.events WHERE event = 'leak_suspect'"),
	'0', 'no leak suspect at all');

$node->stop;
done_testing();
