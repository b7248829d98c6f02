# pooldiag.recommend() on the incident's numbers: a declared pool "web" of
# 2 instances, each pool_size 5, max_overflow 10, pool_timeout 30 s and
# pool_recycle 3600 s, against max_connections = 25 with 3 reserved (22
# slots: 2 x 15 = 30 oversubscribes them), pooldiag.max_lifetime = 400 s
# with lifetime_jitter 0.25, and idle_session_timeout = 500 s for the role.
# 12 transactions held open at once make peak_busy exactly 12, 6 per
# instance.  Every row's figures are asserted, then an unprivileged role
# sees only its own pools, and objects it plants in public and pg_temp
# change nothing.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'recommend', conf => q{
max_connections = 25
superuser_reserved_connections = 3
pooldiag.max_lifetime = '400s'
pooldiag.lifetime_jitter = 0.25
});
$node->safe_psql(
	'postgres', q{
CREATE ROLE webapp LOGIN;
ALTER ROLE webapp SET idle_session_timeout = '500s';
CREATE ROLE reporter LOGIN;
GRANT CREATE ON SCHEMA public TO webapp;
});

# 2 instances x 6 sessions of pool "web", as the application's pools open
# them.
my @web;
foreach my $i (1 .. 12)
{
	my $instance = $i <= 6 ? 'web-1' : 'web-2';
	push @web,
	  [
		open_session(
			$node,
			app => 'web',
			user => 'webapp',
			options => '-c pooldiag.client_pool=web -c pooldiag.client_pool_size=5 '
			  . '-c pooldiag.client_max_overflow=10 -c pooldiag.client_pool_timeout=30s '
			  . "-c pooldiag.client_recycle=3600s -c pooldiag.client_instance=$instance")
	  ];
}
my ($reports) = open_session($node, app => 'reports', user => 'reporter');

# 12 checkouts open at once, then all returned: peak_busy is exactly 12.
$_->[0]->query_safe('BEGIN; SELECT 1') for @web;
is( $node->safe_psql('postgres',
		q{SELECT busy || ' ' || peak_busy || ' ' || declared_instances || ' ' || declared_max
		  FROM pooldiag.pools WHERE pool = 'web'}),
	'12 12 2 30', 'web: 12 busy at once, peak_busy 12, 2 instances declaring 30');
$_->[0]->query_safe('COMMIT') for @web;

my $rows = sub {
	my ($sql, %opts) = @_;
	my @rows = split /\n/, $node->safe_psql('postgres', $sql, %opts);
	return map { [ split /\|/, $_, -1 ] } @rows;
};
my $web_sql = q{SELECT pool, setting, coalesce(current, 'NULL'), recommended, reason
	FROM pooldiag.recommend() WHERE pool IN ('web', '(server)')};
my @r = $rows->($web_sql);
my %r = map { $_->[1] => $_ } @r;

is(join(',', map { "$_->[0]/$_->[1]" } @r),
	'(server)/max_connections,web/pool_size,web/max_overflow,web/pool_timeout,web/pool_recycle,web/pre_ping',
	'the server row first, then web\'s five settings in order');

# pool_size: ceil(12 / 2) = 6 per instance, x 1.2 = 7.2, so 8.
is("$r{pool_size}[2] -> $r{pool_size}[3]", '5 -> 8', 'pool_size: current 5, recommended 8');
like($r{pool_size}[4],
	qr/^peak_busy 12 over 2 instances = 6 per instance; x 1\.2 headroom = 8$/,
	'pool_size reason: peak_busy 12 over 2 instances, 6 each, x 1.2 = 8');

# max_overflow: bursts to 2 x 6 = 12 per instance would need 2 x 12 = 24
# connections; 22 slots leave 11 per instance, 8 + 3.
is("$r{max_overflow}[2] -> $r{max_overflow}[3]", '10 -> 3',
	'max_overflow: current 10, recommended 3');
like($r{max_overflow}[4],
	qr/^bursts up to 2 x 6 = 12 per instance, less pool_size 8 = 4; 2 x 12 = 24 > 22 slots: cut to 2 x \(8 \+ 3\) = 22; to allow the bursts: fewer instances, a larger max_connections, or PgBouncer$/,
	'max_overflow reason: 24 > 22 slots, cut to 2 x (8 + 3) = 22');

# pool_timeout: at least 2 x hold p99 (whole seconds); 30 s is more.
my $p99 = $node->safe_psql('postgres',
	q{SELECT trim_scale(round(extract(epoch FROM hold_p99), 3)) || ' '
	  || ceil(2 * extract(epoch FROM hold_p99)) FROM pooldiag.pools WHERE pool = 'web'});
my ($p99s, $twice) = split / /, $p99;
cmp_ok($twice, '<', 30, "2 x hold p99 is below 30 s ($p99s s)");
is("$r{pool_timeout}[2] -> $r{pool_timeout}[3]", '30 -> 30',
	'pool_timeout: current 30 s is kept');
like($r{pool_timeout}[4],
	qr/^hold p99 \Q$p99s\E s: .* 2 x p99, in whole seconds, = \Q$twice\E s .*; the current timeout is long enough$/,
	'pool_timeout reason gives the p99 and twice it');

# pool_recycle: 400 s less 25% = 300 s, below idle_session_timeout's 500 s;
# 90% of 300 s is 270 s.
is("$r{pool_recycle}[2] -> $r{pool_recycle}[3]", '3600 -> 270',
	'pool_recycle: current 3600 s, recommended 270 s');
like($r{pool_recycle}[4],
	qr/^the server closes idle sessions after pooldiag\.max_lifetime 400 s less up to 25% jitter = 300 s, idle_session_timeout 500 s; pool_recycle must sit strictly below the least, 300 s: 90% of it is 270; the current value is not$/,
	'pool_recycle reason: 400 s less 25% jitter = 300 s, idle_session_timeout 500 s');

is("$r{pre_ping}[2] -> $r{pre_ping}[3]", 'NULL -> true',
	'pre_ping: unknown now, recommended');
like($r{pre_ping}[4],
	qr/^the server closes this pool's sessions \(pooldiag\.max_lifetime, idle_session_timeout\): /,
	'pre_ping reason names the server\'s limits');

is("$r{max_connections}[2] -> $r{max_connections}[3]", '25 -> 33',
	'server: max_connections 25, 33 would fit the declared 30');
like($r{max_connections}[4],
	qr/^declared pools may open 30 connections \(web 2 x 15\) > 22 slots \(max_connections 25 - 3 reserved\): .*raise max_connections to 33, or put PgBouncer/,
	'server reason: 30 > 22 slots');
is( $node->safe_psql('postgres',
		q{SELECT oversubscribed || ' ' || detail FROM pooldiag.capacity WHERE scope = 'server'}),
	'true web: 2 instances x (5 + 10) = 30 > 22 slots',
	'pooldiag.capacity agrees: 30 > 22 slots');

# The reporter's implicit pool has rows too, that say how to declare it.
like( $node->safe_psql('postgres',
		q{SELECT reason FROM pooldiag.recommend()
		  WHERE usename = 'reporter' AND setting = 'pool_size'}),
	qr/declare your pool with options='-c pooldiag\.client_pool_size=…'/,
	'an undeclared pool is told how to declare itself');

# An unprivileged role sees its own pools' rows (and the server's), the
# same as a superuser does, and nothing of the reporter's.
my ($mine, $pid) = open_session($node, app => 'tap', user => 'webapp');
my $as_webapp = sub {
	return $mine->query_safe(
		q{SELECT string_agg(concat_ws('|', pool, setting, current, recommended, reason), E'\n'
		                    ORDER BY pool, setting)
		  FROM pooldiag.recommend() WHERE pool IN ('web', '(server)')});
};
my $superuser_view = $node->safe_psql('postgres',
	q{SELECT string_agg(concat_ws('|', pool, setting, current, recommended, reason), E'\n'
	                    ORDER BY pool, setting)
	  FROM pooldiag.recommend() WHERE pool IN ('web', '(server)')});
my $before = $as_webapp->();
is($before, $superuser_view, 'webapp gets the same web and server rows as a superuser');
is( $mine->query_safe(
		q{SELECT string_agg(DISTINCT coalesce(usename, '(server)'), ',') FROM pooldiag.recommend()}),
	'(server),webapp', 'webapp sees no other role\'s pool');
is( $node->safe_psql('postgres',
		q{SELECT count(DISTINCT usename) FROM pooldiag.recommend() WHERE usename IN ('reporter', 'webapp')}),
	'2', 'a superuser sees the reporter\'s pool too');

# Objects named like what the function reads, planted where a caller's
# search_path would find them first, change nothing.
$mine->query_safe(
	q{
CREATE TEMP VIEW pg_settings AS
    SELECT 'max_connections'::text AS name, '1000'::text AS setting, NULL::text AS unit,
           '0'::text AS reset_val;
CREATE TEMP TABLE pools (pool text, peak_busy integer);
CREATE TABLE public.pg_db_role_setting (setdatabase oid, setrole oid, setconfig text[]);
CREATE VIEW public.pg_settings AS
    SELECT 'superuser_reserved_connections'::text AS name, '0'::text AS setting,
           NULL::text AS unit, '0'::text AS reset_val;
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE sql AS $$SELECT '0'$$;
CREATE FUNCTION public.ceil(numeric) RETURNS numeric LANGUAGE sql AS $$SELECT 0::numeric$$;
CREATE FUNCTION public.starts_with(text, text) RETURNS boolean LANGUAGE sql AS $$SELECT false$$;
CREATE FUNCTION public.trim_scale(numeric) RETURNS numeric LANGUAGE sql AS $$SELECT 42::numeric$$;
CREATE FUNCTION public.int4pl_evil(integer, integer) RETURNS integer LANGUAGE sql AS $$SELECT 0$$;
CREATE OPERATOR public.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.int4pl_evil);
SET search_path = pg_temp, public, pg_catalog;
});
is($mine->query_safe(q{SELECT ceil(1.5) || ' ' || (1 OPERATOR(public.+) 1)}), '0 0',
	'the planted function and operator work for the caller');
is($as_webapp->(), $before, 'with them planted, recommend() returns the same rows');

close_session($mine);

# A second declared pool, "jobs" of the reporter, 1 instance of size 2
# without overflow, with 3 checkouts held at once: it needs 1 x max(2 x 3,
# ceil(1.2 x 3)) = 6 and web 24, 30 > 22 slots, so the slots are shared in
# proportion: web floor(22 x 24 / 30) = 17, 8 per instance, all pool_size;
# jobs floor(22 x 6 / 30) = 4.
# The reporter's role also has pooldiag.idle_timeout = 120s, which binds
# jobs' pool_recycle below 300 s.
$node->safe_psql('postgres', q{ALTER ROLE reporter SET pooldiag.idle_timeout = '120s'});
my @jobs;
push @jobs,
  [
	open_session(
		$node,
		app => 'jobs',
		user => 'reporter',
		options => '-c pooldiag.client_pool=jobs -c pooldiag.client_pool_size=2 '
		  . '-c pooldiag.client_max_overflow=0 -c pooldiag.client_instance=jobs-1')
  ] for 1 .. 3;
$_->[0]->query_safe('BEGIN; SELECT 1') for @jobs;
$_->[0]->query_safe('COMMIT') for @jobs;
is( $node->safe_psql('postgres',
		q{SELECT string_agg(pool || ' ' || setting || ' ' || coalesce(current, 'NULL') || ' -> '
		                    || recommended, ', ' ORDER BY pool, setting)
		  FROM pooldiag.recommend()
		  WHERE pool IN ('web', 'jobs', '(server)')
		    AND setting IN ('pool_size', 'max_overflow', 'max_connections')}),
	'(server) max_connections 25 -> 35, jobs max_overflow 0 -> 0, jobs pool_size 2 -> 4, '
	  . 'web max_overflow 10 -> 0, web pool_size 5 -> 8',
	'two pools over the slots: shares of 4 and 16, the server needs 25 + 32 - 22 = 35');
like( $node->safe_psql('postgres',
		q{SELECT reason FROM pooldiag.recommend() WHERE pool = 'web' AND setting = 'max_overflow'}),
	qr/; the declared pools need 30 > 22 slots, and this pool's share is 16: cut to 2 x \(8 \+ 0\) = 16; /,
	'web\'s reason: the pools need 30 > 22 slots, its share is 16');
like( $node->safe_psql('postgres',
		q{SELECT reason FROM pooldiag.recommend() WHERE pool = '(server)'}),
	qr/^declared pools may open 32 connections \(jobs 1 x 2, web 2 x 15\) > 22 slots/,
	'the server row adds both pools');
is( $node->safe_psql('postgres',
		q{SELECT coalesce(current, 'NULL') || ' -> ' || recommended || ': ' || reason
		  FROM pooldiag.recommend() WHERE pool = 'jobs' AND setting = 'pool_recycle'}),
	q{NULL -> 108: the server closes idle sessions after pooldiag.max_lifetime 400 s less up to 25% jitter = 300 s, pooldiag.idle_timeout 120 s; }
	  . q{pool_recycle must sit strictly below the least, 120 s: 90% of it is 108; declare your pool with options='-c pooldiag.client_recycle=…'},
	'jobs: pool_recycle 108 s, below the role\'s idle_timeout of 120 s');
close_session($_->[0]) for @jobs;
close_session($_->[0]) for @web;
close_session($reports);
$node->stop;
done_testing();
