# The README's recipe for node-postgres (npm `pg`): pool.on('error'), and
# idleTimeoutMillis and maxLifetimeSeconds below the server's idle_timeout
# and lifetime.  With it, the bursty application of t/pools/pg_driver.js
# sees no error; with pg's defaults and no 'error' listener, the first
# close of an idle pooled client ends the process.  `pg` comes from the npm
# registry, installed here into this test's own directory.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PoolRecipes;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node_js, $npm) = map {
	my $c = $_;
	(grep { -x } map { "$_/$c" } split /:/, $ENV{PATH})[0]
} qw(node npm);
plan skip_all => 'Node.js or npm missing (scripts/install-deps.sh installs Debian nodejs and npm when they are)'
  unless $node_js && $npm;

# node-postgres 8, into a directory of this test (a package of its own, run
# from there: --prefix would also move npm's global configuration, and with
# it the machine's CA settings); npm's cache in the test user's home (the
# build directory under scripts/test.sh).
my $modules = PostgreSQL::Test::Utils::tempdir('npm');
{
	PostgreSQL::Test::Utils::append_to_file("$modules/package.json",
		qq({"name": "pooldiag-recipe-test", "private": true}\n));
	local $ENV{npm_config_cache} = ($ENV{HOME} // $modules) . '/.npm';
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[
			$npm, 'install', '--no-save', '--no-package-lock', '--no-audit',
			'--no-fund', 'pg@8'
		],
		'>', \$out, '2>', \$err,
		init => sub { chdir $modules or die "chdir $modules: $!" },
		IPC::Run::timeout(180));
	die("npm install pg\@8 failed (the npm registry must be reachable): $err") unless $ok;
}
my $pg_version = slurp_file("$modules/node_modules/pg/package.json") =~ /"version":\s*"([^"]+)"/ ? $1 : '?';
diag "node-postgres (pg) $pg_version";

my @roles = qw(node_recipe node_bare);
my $node = recipe_node('node_postgres', @roles);
my $driver = pools_dir() . '/pg_driver.js';
local $ENV{NODE_PATH} = "$modules/node_modules";

sub node_driver
{
	my ($name, $role, @opts) = @_;
	return start_driver($name, $node_js, $driver, @opts, '--host', '127.0.0.1',
		'--port', $node->port, '--user', $role, '--database', 'postgres',
		'--app', $role);
}
my @drivers = (
	node_driver('recipe', 'node_recipe', '--recipe'),
	node_driver('bare', 'node_bare'));
my $r = finish_drivers(120, @drivers);

my $recipe = server_closes($node, 'node_recipe');
my $bare = server_closes($node, 'node_bare');
my $handled = () = $r->{recipe}{err} =~ /pool error on an idle client \(handled\)/g;
report_variant('node-postgres, on(error), idleTimeoutMillis=1000, maxLifetimeSeconds=4',
	$r->{recipe}, $recipe, "'error' events handled $handled");
report_variant('node-postgres defaults, no error listener', $r->{bare}, $bare,
	"exit status " . ($r->{bare}{rc} >> 8));

is($r->{recipe}{rc}, 0, 'the recipe driver ran to its end');
is($r->{recipe}{errors}, 0, 'with the recipe the application saw no error');
cmp_ok($r->{recipe}{checkouts}, '>', 100, 'and did its work');
cmp_ok($r->{recipe}{connections}, '>', 4, 'the pool replaced its connections itself');
isnt($r->{bare}{rc}, 0, 'without the recipe the process died');
ok(!defined $r->{bare}{errors}, 'before the end of its run');
like($r->{bare}{err}, qr/terminating connection due to pooldiag/,
	"of the 'error' event of an idle client that the server closed");
cmp_ok($bare->{total}, '>', 0, 'the server closed a connection of it');

check_close_accounting($node, @roles);

$node->stop;
done_testing();
