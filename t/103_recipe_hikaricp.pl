# The README's recipe for HikariCP with pgjdbc (Debian's HikariCP 2.7.9):
# validation on borrow with a statement (connectionTestQuery), and
# maxLifetime and idleTimeout below the server's where HikariCP allows it
# (its floors, 30 s and 10 s, are above this test's server limits, so here
# the validation is what keeps pooldiag's closes from the application).
# Without validation (aliveBypassWindowMs raised to an hour) the same
# application sees the closes.  Every close is matched by its events.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PoolRecipes;
use PostgreSQL::Test::Utils;
use Test::More;

my $java = (grep { -x } map { "$_/java" } split /:/, $ENV{PATH})[0];
my @jars = map { "/usr/share/java/$_.jar" } qw(HikariCP postgresql slf4j-api slf4j-simple);
my @missing = grep { !-f } @jars;
plan skip_all => "a JDK or jars missing: @missing (Debian default-jdk-headless, libhikaricp-java, libpostgresql-jdbc-java, libslf4j-java; scripts/install-deps.sh installs them)"
  if !$java || @missing;

my @roles = qw(hikari_recipe hikari_bare);
my $node = recipe_node('hikaricp', @roles);
my $driver = pools_dir() . '/HikariDriver.java';

sub java_driver
{
	my ($name, $role, @opts) = @_;
	# Java 11 and later run a single source file; one JIT thread is
	# enough for this, on a machine of two cores.
	return start_driver($name, $java, '-XX:TieredStopAtLevel=1', @opts,
		'-cp', join(':', @jars), $driver, ($name eq 'recipe' ? '--recipe' : ()),
		'127.0.0.1', $node->port, $role, 'postgres', $role);
}
my @drivers = (
	java_driver('recipe', 'hikari_recipe'),
	java_driver('bare', 'hikari_bare', '-Dcom.zaxxer.hikari.aliveBypassWindowMs=3600000'));
my $r = finish_drivers(150, @drivers);

my $recipe = server_closes($node, 'hikari_recipe');
my $bare = server_closes($node, 'hikari_bare');
my $warns = () = $r->{recipe}{err} =~ /WARN .*Failed to validate connection/g;
report_variant('HikariCP, connectionTestQuery=SELECT 1, maxLifetime=30000, idleTimeout=10000, minimumIdle=1',
	$r->{recipe}, $recipe, "validation WARN lines $warns");
report_variant('HikariCP without validation (aliveBypassWindowMs=1h)', $r->{bare}, $bare);

is($r->{recipe}{rc}, 0, 'the recipe driver ran to its end');
is($r->{recipe}{errors}, 0, 'with the recipe the application saw no error');
cmp_ok($r->{recipe}{checkouts}, '>', 100, 'and did its work');
cmp_ok($recipe->{total}, '>', 0, 'while the server closed its connections');
cmp_ok($warns, '>', 0, 'which HikariCP found by validation');
is($r->{bare}{rc}, 0, 'the driver without validation ran to its end');
cmp_ok($r->{bare}{errors} // 0, '>', 0, 'without validation the application saw errors');

check_close_accounting($node, @roles);

$node->stop;
done_testing();
