# pooldiag.pools.rejected: refused connection attempts count in the
# implicit pool of the database, role, application_name and client address
# they asked for, once their event row is written; repeats folded into one
# row count with their number.  Attempts whose pool has no entry make none,
# and an attempt of a client that declares a pool counts in the implicit
# pool of its application and address if there is one (the refused process
# never applied its startup options, so its declared pool is unknown).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('pool_rejected', conf => "pooldiag.rejection_fold_window = '2s'\n");
$node->safe_psql('postgres', 'CREATE ROLE limited LOGIN CONNECTION LIMIT 1');

# The pool (postgres, limited, 'shop', Unix socket) with one session, which
# fills the role's limit.
my ($held) = open_session($node, app => 'shop', user => 'limited');
my $shop = q{kind = 'implicit' AND usename = 'limited' AND application_name = 'shop'};
is($node->safe_psql('postgres', "SELECT sessions, rejected FROM pooldiag.pools WHERE $shop"),
	'1|0', 'the pool has its session and no rejected attempt');

sub attempt
{
	my ($app, %opts) = @_;
	local $ENV{PGAPPNAME} = $app;
	local $ENV{PGOPTIONS} = $opts{options} if defined $opts{options};
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT 1',
		extra_params => [ '-U', 'limited' ]);
	return $err =~ /too many connections for role "limited"/ ? 1 : 0;
}

# Three attempts of the pool's application: the first is written at once,
# the two repeats within the fold window as one row when the window ends.
my $refused = 0;
$refused += attempt('shop') for 1 .. 3;
is($refused, 3, 'three attempts of the pool are refused');
# Attempts that no pool entry matches: another application, and a client
# declaring pool "web" under another application name.
$refused = attempt('nobody-here');
$refused += attempt('web-app', options => '-c pooldiag.client_pool=web');
is($refused, 2, 'an attempt of another application and one of a declared pool are refused');

# The first attempt is written at once; the four that follow have the same
# fold key (reason, role, database, address) and become one folded row when
# the 2 s window ends.  Each attempt counts in its own application's pool.
is(wait_for_value($node, "SELECT rejected FROM pooldiag.pools WHERE $shop", '3', 20),
	'3', 'the pool counts all three attempts of its application');
is( wait_for_value($node,
		q{SELECT count(*) || ' ' || count(*) FILTER (WHERE detail ? 'repeats') || ' ' || coalesce(sum((detail->>'repeats')::int), 0)
		  FROM pooldiag.events WHERE event = 'rejected' AND usename = 'limited'},
		'2 1 4', 20),
	'2 1 4',
	'the events: the first attempt, and one folded row for the four repeats of its key (whatever their application), each counted in its own pool all the same');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pooldiag.pools WHERE application_name IN ('nobody-here', 'web-app') OR pool = 'web'}),
	'0', 'refused attempts make no pool entry of their own');
is( $node->safe_psql('postgres',
		q{SELECT sum(rejected) FROM pooldiag.pools}),
	'3', 'no other pool counts a rejected attempt');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(reason || '=' || attempts, ',' ORDER BY reason)
		  FROM pooldiag.get_rejection_counts() WHERE attempts > 0}),
	'role_connection_limit=5', 'capacity counts all five refused attempts by reason');

# The totals survive a clean restart.
close_session($held);
$node->restart;
is($node->safe_psql('postgres', "SELECT sessions, rejected FROM pooldiag.pools WHERE $shop"),
	'0|3', 'after a clean restart the pool still counts the three attempts');

$node->stop;
done_testing();
