# A client that speaks just enough of the protocol to be refused: it sends
# a raw v3 StartupMessage with whatever bytes a test chooses (libpq would
# not send some of them) and reads the server's answer until it closes.
#
# Used by the tests of hostile input (t/023) and of rejection folding
# (t/024).  The node must listen on TCP (listen_addresses = '127.0.0.1');
# a client address other than 127.0.0.1 (e.g. 127.0.0.2, any of 127/8 on
# Linux) lets a test be refused by pg_hba.conf or count as another host.
package PoolDiagRawClient;

use strict;
use warnings;

use IO::Socket::INET;

use Exporter 'import';
our @EXPORT = qw(raw_startup);

# raw_startup($node, from => '127.0.0.2', params => [user => "\xff", ...])
# Sends one StartupMessage (protocol 3.0) with the given key/value pairs,
# in order, and returns the SQLSTATE of the ErrorResponse the server
# answered with ('' if it sent none).
sub raw_startup
{
	my ($node, %opts) = @_;
	my @params = @{ $opts{params} };
	my $sock = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $node->port,
		LocalAddr => $opts{from} // '127.0.0.1',
		Proto => 'tcp') or die "could not connect to 127.0.0.1:" . $node->port . ": $!";

	my $body = pack('N', 196608) . join('', map { "$_\0" } @params) . "\0";
	$sock->syswrite(pack('N', 4 + length($body)) . $body)
	  or die "could not send the startup packet: $!";

	my $reply = '';
	while (1)
	{
		my $got = $sock->sysread(my $buf, 8192);
		last if !$got;
		$reply .= $buf;
	}
	close $sock;

	# ErrorResponse: 'E', int32 length, then fields "<code>value\0", one of
	# them 'C' with the SQLSTATE.
	while (length($reply) >= 5)
	{
		my ($type, $len) = unpack('a N', $reply);
		my $payload = substr($reply, 5, $len - 4);
		$reply = substr($reply, 1 + $len);
		next unless $type eq 'E';
		return $1 if $payload =~ /(?:^|\0)C([0-9A-Z]{5})\0/;
	}
	return '';
}

1;
