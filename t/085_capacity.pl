# pooldiag.capacity with exact figures: with max_connections = 20 and 3
# superuser-reserved connections there are 17 slots; sessions in use and
# their peak are counted at connect and disconnect.  With
# saturation_warning = 0.5 the mark is 9 sessions: crossing it records one
# saturation event, and crossing it again within the minute records none.
# A role connection limit shows as a row of its own, and the attempt it
# refuses is counted by reason.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node(
	'capacity', conf => q{
max_connections = 20
superuser_reserved_connections = 3
pooldiag.saturation_warning = 0.5
});

# Every query below runs in a session of its own (safe_psql), counted in
# in_use: "+ 1" in the figures is that session.
my $server = sub {
	return $node->safe_psql('postgres',
		q{SELECT slots || ' ' || in_use || ' ' || peak_in_use || ' ' || near_exhaustion
		  FROM pooldiag.capacity WHERE scope = 'server'});
};
my $saturations = sub {
	return $node->safe_psql('postgres',
		'SELECT saturation_events FROM pooldiag.get_capacity()');
};

is($server->(), '17 1 1 false', '17 slots, 1 in use (the query), peak 1');

my @sessions;
push @sessions, [ open_session($node, app => "s$_") ] for 1 .. 7;
is($server->(), '17 8 8 false', '7 sessions + 1: 8 in use, peak 8, below the mark of 9');
wait_scans($node, 3);
is($saturations->(), '0', 'no saturation event below the mark');

# Crossing: the 8th session makes 9 with the query.
push @sessions, [ open_session($node, app => 's8') ];
is($server->(), '17 9 9 true', '8 sessions + 1: 9 in use, peak 9, near exhaustion');
is(wait_for_value($node, 'SELECT saturation_events FROM pooldiag.get_capacity()', '1'),
	'1', 'the crossing records one saturation event');

# Below the mark again, then a second crossing within the minute.
close_session($_->[0]) for splice(@sessions, 6);
is(wait_for_value($node,
		q{SELECT in_use FROM pooldiag.capacity WHERE scope = 'server'}, '7'),
	'7', 'back to 6 sessions + 1');
wait_scans($node, 3);
push @sessions, [ open_session($node, app => "again$_") ] for 1 .. 2;
is($server->(), '17 9 9 true', 'crossing again: 9 in use, the peak stays 9');
wait_scans($node, 3);
close_session($_->[0]) for splice(@sessions, 6);
wait_scans($node, 3);
is($saturations->(), '1', 'a second crossing within the minute records no event');

wait_flushed($node);
is( $node->safe_psql('postgres',
		q{SELECT count(*) || ' ' || bool_and(pid IS NULL) || ' ' || min(detail::text)
		  FROM pooldiag.events WHERE event = 'saturation'}),
	'1 true {"slots": 17, "in_use": 9, "crossings": 1, "threshold": 9}',
	'one saturation row: 9 in use against a threshold of 9 of 17 slots');

# A role limit of 2: two sessions fill it, a third attempt is refused.
$node->safe_psql('postgres', 'CREATE ROLE limited LOGIN CONNECTION LIMIT 2');
push @sessions, [ open_session($node, app => "limited$_", user => 'limited') ]
  for 1 .. 2;
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT 1',
	extra_params => [ '-U', 'limited' ]);
like($err, qr/too many connections for role "limited"/,
	'a third session of the role is refused');
is( $node->safe_psql('postgres',
		q{SELECT slots || ' ' || in_use || ' ' || usage || ' ' || near_exhaustion
		  FROM pooldiag.capacity WHERE scope = 'role' AND name = 'limited'}),
	'2 2 1 true', 'the role row: limit 2, 2 in use, usage 1, near exhaustion');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(reason || '=' || attempts, ',' ORDER BY reason)
		  FROM pooldiag.get_rejection_counts() WHERE attempts > 0}),
	'role_connection_limit=1', 'the refused attempt is counted by its reason');

# Peak: 6 + 2 limited + the query = 9 in use, the peak of 9 unchanged.
is($server->(), '17 9 9 true', 'in use and peak after the role sessions');

close_session($_->[0]) for @sessions;
is(wait_for_value($node,
		q{SELECT in_use FROM pooldiag.capacity WHERE scope = 'server'}, '1'),
	'1', 'every session closed: only the query is in use');

# Declared pools: four instances of "web", each pool_size 5 and
# max_overflow 10, may open 60 connections; there are 17 slots.
my @web;
foreach my $i (1 .. 4)
{
	local $ENV{PGOPTIONS} =
	  "-c pooldiag.client_pool=web -c pooldiag.client_pool_size=5 "
	  . "-c pooldiag.client_max_overflow=10 -c pooldiag.client_instance=web-$i";
	push @web, [ open_session($node, app => 'web') ];
}
is( $node->safe_psql('postgres',
		q{SELECT declared_instances || ' ' || declared_max || ' ' || oversubscribed || ' ' || detail
		  FROM pooldiag.capacity WHERE scope = 'server'}),
	'4 60 true web: 4 instances x (5 + 10) = 60 > 17 slots',
	'oversubscribed: 4 instances x (5 + 10) = 60 > 17 slots');
is( $node->safe_psql('postgres',
		q{SELECT sum(declared_max) FROM pooldiag.pools WHERE pool = 'web'}),
	'60', 'the same 60 as pooldiag.pools declares');
is( $node->safe_psql('postgres',
		q{SELECT declared_max || ' ' || oversubscribed FROM pooldiag.capacity
		  WHERE scope = 'role' AND name = 'limited'}),
	'0 false', 'the declarations count for their own role only');
close_session($_->[0]) for @web;

# pooldiag.reset() starts the peak over from what is in use.
$node->safe_psql('postgres', 'SELECT pooldiag.reset()');
is($server->(), '17 1 1 false', 'after pooldiag.reset() the peak is what is in use');

$node->stop;
done_testing();
