# The README's recipe for psycopg_pool 3.1 (Debian 12's): a check of each
# connection at getconn (3.2's check=ConnectionPool.check_connection,
# which 3.1 lacks, as a small subclass) and max_lifetime below the
# server's: the bursty application of t/pools/driver.py sees no error
# while pooldiag closes its idle connections; with the pool's defaults it
# sees the closes.  Every close is matched by its events.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PoolRecipes;
use PostgreSQL::Test::Utils;
use Test::More;

my $python = '/usr/bin/python3';
plan skip_all => "psycopg_pool missing (Debian python3-psycopg-pool; scripts/install-deps.sh installs it)"
  unless -x $python && system($python, '-c', 'import psycopg, psycopg_pool') == 0;

my @roles = qw(pp_recipe pp_bare);
my $node = recipe_node('psycopg_pool', @roles);
my $driver = pools_dir() . '/driver.py';

my @drivers = (
	start_driver('recipe', $python, $driver, '--pool', 'psycopg_pool', '--recipe',
		'--dsn', tcp_dsn($node, 'pp_recipe', application_name => 'pp-recipe')),
	start_driver('bare', $python, $driver, '--pool', 'psycopg_pool',
		'--dsn', tcp_dsn($node, 'pp_bare', application_name => 'pp-bare')));
my $r = finish_drivers(120, @drivers);

my $recipe = server_closes($node, 'pp_recipe');
my $bare = server_closes($node, 'pp_bare');
report_variant('psycopg_pool 3.1, check at getconn, max_lifetime=4, min_size=2, max_idle=1',
	$r->{recipe}, $recipe);
report_variant('psycopg_pool defaults (min_size=max_size=4)', $r->{bare}, $bare);

is($r->{recipe}{rc}, 0, 'the recipe driver ran to its end');
is($r->{recipe}{errors}, 0, 'with the recipe the application saw no error');
cmp_ok($r->{recipe}{checkouts}, '>', 100, 'and did its work');
cmp_ok($recipe->{total}, '>', 0, 'while the server closed its connections');
is($r->{bare}{rc}, 0, 'the driver without the recipe ran to its end');
cmp_ok($r->{bare}{errors} // 0, '>', 0,
	'without the check the application saw errors');
like($r->{bare}{err}, qr/terminating connection due to pooldiag|server closed the connection/,
	'the errors are closed connections');

check_close_accounting($node, @roles);

$node->stop;
done_testing();
