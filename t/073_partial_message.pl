# A session whose client has started to send a statement is not idle: the
# README promises that idle and lifetime closes never interrupt a statement,
# and that the only exception is a statement arriving in the few
# microseconds between the enforcer's last check and its kill().
#
# Found by the attack branch: a backend reports itself busy to core only
# once it has read a whole message (and, after a reload, processed the
# configuration file).  While a message is still arriving (a large
# statement over a slow link, a client that writes a message in pieces, a
# client paused between two writes) core's state is idle, and so is
# pooldiag's: the enforcer closes the session in the middle of the message,
# however long the message takes.  (PostgreSQL's own idle_session_timeout
# behaves the same way; the README should at least say so, or the close
# should be decided inside the backend, where an incomplete message can be
# seen.)
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PoolDiagTest;
use PgdWire;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pooldiag_node('partial_message');
$node->safe_psql('postgres',
	"CREATE ROLE app LOGIN; ALTER ROLE app SET pooldiag.idle_timeout = '1s';");

my $w = PgdWire->new($node, user => 'app', app => 'slow-sender');
my $pid = $w->pid;

# 0.3 s after it became idle, the client starts a statement, and the rest of
# the message follows 2 s later.
select(undef, undef, undef, 0.3);
my $message = PgdWire::_msg('Q', "SELECT 1\0");
$w->{sock}->syswrite(substr($message, 0, 3));
select(undef, undef, undef, 2.0);
$w->{sock}->syswrite(substr($message, 3));

my $result = eval { PgdWire::_sqlstate($w->read_until_ready) } // "died: $@";
is($result, '', 'a statement that had started to arrive is answered, not closed');
wait_flushed($node);
is(event_count($node, "event = 'terminate' AND pid = $pid"), '0',
	'no terminate event for the session that was sending');

$node->stop;
done_testing();
