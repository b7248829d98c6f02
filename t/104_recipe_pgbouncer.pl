# The README's recipe for PgBouncer in transaction mode: its
# server_lifetime and server_idle_timeout below pooldiag's limits, so that
# PgBouncer recycles its server connections before the server closes them;
# or its role exempt from pooldiag (pooldiag.exempt_roles).  Three
# PgBouncer set-ups, each started here on a port of its own, carry the
# bursty application of t/pools/driver.py (one persistent client
# connection per worker, each checkout one transaction): the recipe,
# PgBouncer's defaults (3600 s, 600 s), and the defaults with an exempt
# role.  PgBouncer notices a closed idle server connection by itself
# ("server conn crashed?"), so the application sees no error in any of
# them; the recipe takes the closes, and that log noise, away.
#
# Also: PgBouncer's own SET statements are not checkouts.  200 client
# transactions from two clients that differ in client_encoding and
# application_name (PgBouncer then sends both SETs in one message before
# each transaction) are exactly 200 checkouts.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IO::Socket::INET;
use PoolDiagTest;
use PoolRecipes;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $python = '/usr/bin/python3';
my $pgbouncer = (grep { -x } map { "$_/pgbouncer" } split(/:/, $ENV{PATH}), '/usr/sbin')[0];
plan skip_all => 'pgbouncer or psycopg2 missing (Debian pgbouncer, python3-psycopg2; scripts/install-deps.sh installs them)'
  unless $pgbouncer && -x $python && system($python, '-c', 'import psycopg2') == 0;

my @roles = qw(pgb_recipe pgb_bare pgb_exempt pgb_count);
my $node = recipe_node('pgbouncer', @roles);
set_system($node, 'pooldiag.exempt_roles' => 'pgb_exempt');
my $driver = pools_dir() . '/driver.py';
my $dir = PostgreSQL::Test::Utils::tempdir('pgbouncer');

# Start a PgBouncer with [databases] entries name => role and extra
# [pgbouncer] settings; returns (harness, port, logfile).
sub start_pgbouncer
{
	my ($name, $databases, $settings) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $log = "$dir/$name.log";
	my $ini = "[databases]\n";
	$ini .= "$_ = host=127.0.0.1 port=" . $node->port . " dbname=postgres user=$databases->{$_}\n"
	  foreach sort keys %$databases;
	$ini .= qq{[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 4
max_client_conn = 50
logfile = $log
pidfile = $dir/$name.pid
$settings
};
	PostgreSQL::Test::Utils::append_to_file("$dir/$name.ini", $ini);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ $pgbouncer, "$dir/$name.ini" ],
		'<', \undef, '>', \$out, '2>', \$err);
	my $deadline = time() + 30;
	until (IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp'))
	{
		die("PgBouncer $name did not start: $err") if time() > $deadline || !$h->pumpable;
		usleep(100_000);
	}
	return ($h, $port, $log);
}

my ($recipe_h, $recipe_port, $recipe_log) = start_pgbouncer('recipe',
	{ postgres => 'pgb_recipe' },
	"server_lifetime = 2\nserver_idle_timeout = 1\n");
my ($bare_h, $bare_port, $bare_log) = start_pgbouncer('bare',
	{ postgres => 'pgb_bare', exempt => 'pgb_exempt', counted => 'pgb_count' }, '');

sub dsn
{
	my ($port, $db, $app, %extra) = @_;
	my $dsn = "host=127.0.0.1 port=$port dbname=$db user=app application_name=$app";
	$dsn .= " $_=$extra{$_}" foreach sort keys %extra;
	return $dsn;
}
my @drivers = (
	start_driver('recipe', $python, $driver, '--pool', 'direct',
		'--dsn', dsn($recipe_port, 'postgres', 'pgb-recipe')),
	start_driver('bare', $python, $driver, '--pool', 'direct',
		'--dsn', dsn($bare_port, 'postgres', 'pgb-bare')),
	start_driver('exempt', $python, $driver, '--pool', 'direct',
		'--dsn', dsn($bare_port, 'exempt', 'pgb-exempt')),
	start_driver('count-latin1', $python, $driver, '--pool', 'direct',
		'--transactions', '100',
		'--dsn', dsn($bare_port, 'counted', 'pgb-count-latin1', client_encoding => 'LATIN1')),
	start_driver('count-utf8', $python, $driver, '--pool', 'direct',
		'--transactions', '100',
		'--dsn', dsn($bare_port, 'counted', 'pgb-count-utf8', client_encoding => 'UTF8')));
my $r = finish_drivers(120, @drivers);

# PgBouncer's own closes of its server connections end them normally.
my %normal = map {
	my $role = $_;
	($role => $node->safe_psql('postgres',
		"SELECT count(*) FROM pooldiag.events WHERE event = 'disconnect' AND reason = 'normal' AND usename = '$role'"))
} qw(pgb_recipe pgb_bare);

$_->signal('TERM') foreach ($recipe_h, $bare_h);
$_->finish foreach ($recipe_h, $bare_h);
my %crashed = map {
	my $n = () = slurp_file($_->[1]) =~ /server conn crashed\?/g;
	($_->[0] => $n)
} ([ recipe => $recipe_log ], [ bare => $bare_log ]);

my %closes = map { ($_ => server_closes($node, "pgb_$_")) } qw(recipe bare exempt);
report_variant('PgBouncer, server_lifetime=2, server_idle_timeout=1', $r->{recipe},
	$closes{recipe},
	"its own closes $normal{pgb_recipe}, 'server conn crashed?' $crashed{recipe}");
report_variant('PgBouncer defaults', $r->{bare}, $closes{bare},
	"its own closes $normal{pgb_bare}, 'server conn crashed?' $crashed{bare} (both of its pools)");
report_variant('PgBouncer defaults, role in pooldiag.exempt_roles', $r->{exempt},
	$closes{exempt});

foreach my $v (qw(recipe bare exempt))
{
	is($r->{$v}{rc}, 0, "$v: the driver ran to its end");
	is($r->{$v}{errors}, 0, "$v: the application saw no error");
	cmp_ok($r->{$v}{checkouts}, '>', 100, "$v: and did its work");
}
cmp_ok($normal{pgb_recipe}, '>', 0, 'with the recipe PgBouncer recycled its server connections itself');
cmp_ok($closes{bare}{total}, '>', 0, 'with its defaults the server closed them');
cmp_ok($crashed{bare}, '>', 0, "and PgBouncer logged 'server conn crashed?'");
is($closes{exempt}{total}, 0, 'an exempt role: no closes');

# PgBouncer's SETs are not checkouts: 200 transactions, 200 checkouts.
is($r->{'count-latin1'}{checkouts} + $r->{'count-utf8'}{checkouts}, 200,
	'200 client transactions through PgBouncer');
my $counted = $node->safe_psql('postgres',
	"SELECT event || ':' || count(*) FROM pooldiag.events WHERE usename = 'pgb_count' AND event IN ('checkout', 'checkin') GROUP BY event ORDER BY 1");
is($counted, "checkin:200\ncheckout:200", 'are exactly 200 checkouts (and checkins)');
my $per_app = $node->safe_psql('postgres',
	"SELECT string_agg(application_name || ' ' || n, ', ' ORDER BY application_name) FROM (SELECT application_name, count(*) n FROM pooldiag.events WHERE usename = 'pgb_count' AND event = 'checkout' GROUP BY 1) s");
diag "PgBouncer, 2 x 100 client transactions: checkouts by application: $per_app";

check_close_accounting($node, @roles);

$node->stop;
done_testing();
