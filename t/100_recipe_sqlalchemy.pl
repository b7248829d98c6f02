# The README's recipe for SQLAlchemy (QueuePool over psycopg2): with
# pool_pre_ping and pool_recycle below the server's lifetime, the bursty
# application of t/pools/driver.py sees no error while pooldiag closes its
# idle and old connections; with SQLAlchemy's defaults the same application
# sees "server closed the connection unexpectedly".  Every close is matched
# by its events.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PoolRecipes;
use PostgreSQL::Test::Utils;
use Test::More;

# Debian's own Python, whatever else is on PATH.
my $python = '/usr/bin/python3';
plan skip_all => "SQLAlchemy or psycopg2 missing (Debian python3-sqlalchemy, python3-psycopg2; scripts/install-deps.sh installs them)"
  unless -x $python && system($python, '-c', 'import sqlalchemy, psycopg2') == 0;

my @roles = qw(sqla_recipe sqla_bare);
my $node = recipe_node('sqlalchemy', @roles);
my $driver = pools_dir() . '/driver.py';

my @drivers = (
	start_driver('recipe', $python, $driver, '--pool', 'sqlalchemy', '--recipe',
		'--dsn', tcp_dsn($node, 'sqla_recipe', application_name => 'sqla-recipe')),
	start_driver('bare', $python, $driver, '--pool', 'sqlalchemy',
		'--dsn', tcp_dsn($node, 'sqla_bare', application_name => 'sqla-bare')));
my $r = finish_drivers(120, @drivers);

my $recipe = server_closes($node, 'sqla_recipe');
my $bare = server_closes($node, 'sqla_bare');
report_variant('SQLAlchemy, pool_pre_ping=True, pool_recycle=4', $r->{recipe}, $recipe);
report_variant('SQLAlchemy defaults', $r->{bare}, $bare);

is($r->{recipe}{rc}, 0, 'the recipe driver ran to its end');
is($r->{recipe}{errors}, 0, 'with the recipe the application saw no error');
cmp_ok($r->{recipe}{checkouts}, '>', 100, 'and did its work');
cmp_ok($recipe->{total}, '>', 0, 'while the server closed its connections');
is($r->{bare}{rc}, 0, 'the driver without the recipe ran to its end');
cmp_ok($r->{bare}{errors} // 0, '>', 0,
	'without pool_pre_ping the application saw errors');
like($r->{bare}{err}, qr/server closed the connection unexpectedly|terminating connection due to pooldiag/,
	'the errors are closed connections');

check_close_accounting($node, @roles);

$node->stop;
done_testing();
