# A minimal frontend of PostgreSQL's protocol 3 for tests that need what
# psql cannot send: extended-protocol messages with a Sync after an error,
# startup parameters with any bytes (params => { options => ... }).
# Connects over the node's Unix socket with trust authentication.
package PgdWire;

use strict;
use warnings;

use IO::Socket::UNIX;
use Test::More;

sub new
{
	my ($class, $node, %opts) = @_;
	my $path = $node->host . '/.s.PGSQL.' . $node->port;
	my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path)
	  or die "cannot connect to $path: $!";
	my $self = bless { sock => $sock }, $class;
	my %params = (
		user => $opts{user} // scalar(getpwuid($<)),
		database => $opts{db} // 'postgres',
		application_name => $opts{app} // 'wire',
		%{ $opts{params} // {} });
	my $body = pack('N', 196608)
	  . join('', map { "$_\0$params{$_}\0" } sort keys %params) . "\0";
	$sock->syswrite(pack('N', length($body) + 4) . $body);
	# A refused start-up ends with an ErrorResponse and no ReadyForQuery.
	$self->{starting} = 1;
	my @msgs = $self->read_until_ready;
	$self->{starting} = 0;
	die 'start-up failed: ' . _sqlstate(@msgs) if _sqlstate(@msgs) ne '';
	my ($key) = grep { $_->[0] eq 'K' } @msgs;
	$self->{pid} = unpack('N', $key->[1]);
	return $self;
}

sub pid { return $_[0]->{pid}; }

sub _msg
{
	my ($type, $body) = @_;
	return $type . pack('N', length($body) + 4) . $body;
}

# Read messages until ReadyForQuery; returns them as [type, body] pairs.
# The transaction status of ReadyForQuery ('I', 'T' or 'E') is in {status}.
sub read_until_ready
{
	my ($self) = @_;
	my @msgs;
	while (1)
	{
		my $head = $self->_read(5);
		my ($type, $len) = unpack('a N', $head);
		my $body = $len > 4 ? $self->_read($len - 4) : '';
		push @msgs, [ $type, $body ];
		return @msgs if $type eq 'E' && $self->{starting};
		if ($type eq 'Z')
		{
			$self->{status} = $body;
			return @msgs;
		}
	}
}

sub _read
{
	my ($self, $n) = @_;
	my $buf = '';
	while (length($buf) < $n)
	{
		my $got = $self->{sock}->sysread($buf, $n - length($buf), length($buf));
		die 'connection closed' unless $got;
	}
	return $buf;
}

# Parse, Bind, Execute (and Sync unless no_sync) one statement without
# parameters.  Returns the SQLSTATE of an error, or '' on success.
sub extended
{
	my ($self, $sql, %opts) = @_;
	my $out = _msg('P', "\0$sql\0" . pack('n', 0))
	  . _msg('B', "\0\0" . pack('n n n', 0, 0, 0))
	  . _msg('E', "\0" . pack('N', 0));
	$out .= _msg('S', '') unless $opts{no_sync};
	$self->{sock}->syswrite($out);
	return '' if $opts{no_sync};
	return _sqlstate($self->read_until_ready);
}

# A Sync on its own (after statements sent with no_sync).
sub sync
{
	my ($self) = @_;
	$self->{sock}->syswrite(_msg('S', ''));
	return _sqlstate($self->read_until_ready);
}

# A simple Query message.
sub simple
{
	my ($self, $sql) = @_;
	$self->{sock}->syswrite(_msg('Q', "$sql\0"));
	return _sqlstate($self->read_until_ready);
}

sub _sqlstate
{
	foreach my $m (@_)
	{
		next unless $m->[0] eq 'E';
		return $1 if $m->[1] =~ /C([0-9A-Z]{5})\0/;
	}
	return '';
}

sub close
{
	my ($self) = @_;
	$self->{sock}->syswrite(_msg('X', ''));
	$self->{sock}->close;
}

1;
