# Start deliverd (the AddressSanitizer build when it exists) against a test
# cluster and talk HTTP to it: shared by the gateway TAP tests.
#
#   my $gw = gateway_start($node, tokens => { TOKEN => ROLE, ... }, conf => { key => value },
#       env => { DELIVERD_KEY => value }, name => N);
#                                          (N: files N.conf, N.tokens, N.log; several per node;
#                                          env: settings given in the environment instead)
#   $gw->{base}, {port}, {dir}, {log}, {h} the URL, the port, the node's directory, the log
#                                          file, the IPC::Run handle of the process
#   gateway_bin()                          the deliverd binary the tests run
#   my ($status, $decoded_body, $response) = gw_req($gw, METHOD, PATH,
#       token => T, body => perl-or-string, headers => { ... });
#   gw_raw($gw, "GET / HTTP/1.1\r\n...")   status of a hand-written request (0: none)
#   gw_alive($gw)                          /healthz answers 200
#   gw_stop($gw)                           SIGTERM, wait; returns the exit status
#   gw_sanitizer_reports($gw)              text of any ASan/UBSan report
#   gw_jwt($secret, claim => value, ...)   an HS256 JWT (_alg => A: A in its header instead)
#   gw_stream($gw, PATH, SECONDS, TOKEN, curl args...)
#                                          the server-sent events of PATH seen in that time
#                                          (curl), once the gateway closed the stream
#   gw_sse_events($text)                   the events in an event stream's text: { id, event, data }
#   gw_streams_closed($gw)                 wait (10 s at most) until no stream is open; true
#                                          when none is
#   gw_is_error([gw_req(...)], STATUS, SQLSTATE, NAME)
#                                          the answer is an error body (error, detail, hint,
#                                          sqlstate) with that status and SQLSTATE (undef: null)
package GatewayTest;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use Exporter 'import';
use FindBin;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(gateway_start gateway_bin gw_req gw_raw gw_alive gw_stop gw_sanitizer_reports gw_jwt
  gw_is_error gw_stream gw_sse_events gw_streams_closed gw_metric_type_repeats);

my $json = JSON::PP->new->canonical;

# gateways still running when a test ends (it died half-way) are killed:
# left running, one would keep the test run's lock and port
my @started;
END
{
	local $?;
	for my $h (@started) { eval { $h->kill_kill if $h->pumpable; 1 } }
}

sub gateway_bin
{
	my $gwdir = "$FindBin::RealBin/../../gateway";
	my $bin = -x "$gwdir/deliverd-asan" ? "$gwdir/deliverd-asan" : "$gwdir/deliverd";
	return -x $bin ? $bin : 'deliverd';
}

sub gateway_start
{
	my ($node, %o) = @_;
	my $dir = $node->basedir;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $name = $o{name} // 'deliverd';
	my $tokens = defined $o{name} ? "$dir/$name.tokens" : "$dir/tokens";
	my $gw = { dir => $dir, port => $port, base => "http://127.0.0.1:$port", log => "$dir/$name.log",
		http => HTTP::Tiny->new(timeout => 30, keep_alive => 1) };
	open my $t, '>', $tokens or die $!;
	print $t "# token role\n";
	print $t "$_ $o{tokens}{$_}\n" for sort keys %{ $o{tokens} // {} };
	close $t;
	my %conf = (listen => '127.0.0.1', port => $port,
		conninfo => "'" . $node->connstr('postgres') . "'", token_file => $tokens,
		max_body => 65536, idle_timeout => 5, max_wait => 5, pool_size => 4, %{ $o{conf} // {} });
	open my $c, '>', "$dir/$name.conf" or die $!;
	print $c "# settings from the file; the environment adds the rest\n";
	print $c "$_ = $conf{$_}\n" for sort keys %conf;
	close $c;
	local $ENV{ASAN_OPTIONS} = "detect_leaks=1:abort_on_error=0:log_path=$dir/asan";
	local $ENV{UBSAN_OPTIONS} = "print_stacktrace=1:log_path=$dir/asan";
	local @ENV{ keys %{ $o{env} // {} } } = values %{ $o{env} // {} };
	my $in = '';
	$gw->{h} = IPC::Run::start([ gateway_bin(), '-c', "$dir/$name.conf" ],
		'<', \$in, '>>', $gw->{log}, '2>>', $gw->{log});
	push @started, $gw->{h};
	my $deadline = time() + 20;
	while (time() < $deadline)
	{
		return $gw if gw_alive($gw);
		usleep(100_000);
	}
	die "deliverd did not start, see $gw->{log}";
}

sub gw_req
{
	my ($gw, $method, $path, %o) = @_;
	my %h = %{ $o{headers} // {} };
	$h{Authorization} = "Bearer $o{token}" if defined $o{token};
	my %args = (headers => \%h);
	if (exists $o{body})
	{
		$args{content} = ref $o{body} ? $json->encode($o{body}) : $o{body};
		$h{'Content-Type'} = 'application/json';
	}
	my $r = ($o{client} // $gw->{http})->request($method, "$gw->{base}$path", \%args);
	my $d = eval { $json->decode($r->{content}) };
	return ($r->{status}, defined $d ? $d : $r->{content}, $r);
}

sub gw_sse_events
{
	my ($text) = @_;
	my @ev;
	for my $block (split /\n\n/, $text)
	{
		my %e;
		$e{$1} = $2 while $block =~ /^(id|event|data): ?(.*)$/mg;
		push @ev, \%e if $e{event};
	}
	return @ev;
}

# the gateway notices a client left when its next write fails: wait for
# that, so the stream's last long poll takes nothing more
sub gw_streams_closed
{
	my ($gw) = @_;
	my $deadline = time() + 10;
	while (time() < $deadline)
	{
		my ($st, $m) = gw_req($gw, 'GET', '/metrics');
		return 1 if $m =~ /^deliverd_open_streams 0$/m;
		usleep(100_000);
	}
	return 0;
}

sub gw_stream
{
	my ($gw, $path, $secs, $token, @extra) = @_;
	my $out = '';
	IPC::Run::run([ 'curl', '-sN', '-m', $secs, '-H', "Authorization: Bearer $token", @extra,
		"$gw->{base}$path" ], '>', \$out);
	gw_streams_closed($gw);
	return gw_sse_events($out);
}

# an error answer: its status, the four fields of deliverd's error body, its SQLSTATE
sub gw_is_error
{
	my ($got, $status, $sqlstate, $name) = @_;
	my ($st, $b) = @$got;
	is($st, $status, "$name: HTTP $status");
	ok(ref $b eq 'HASH' && exists $b->{error} && exists $b->{detail} && exists $b->{hint}
		  && exists $b->{sqlstate}, "$name: error body has error, detail, hint, sqlstate")
	  or diag(explain $b);
	is(ref $b eq 'HASH' ? $b->{sqlstate} : 'no JSON error', $sqlstate, "$name: sqlstate " . ($sqlstate // 'null'));
	return;
}

# send raw bytes (no client-side checks), return the status code (0 if the
# connection closed without a status line) and the body
sub gw_raw
{
	my ($gw, $text) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $gw->{port}, Timeout => 10)
	  or return (0, "connect: $!");
	binmode $s;
	local $SIG{PIPE} = 'IGNORE';
	syswrite($s, $text);
	my ($buf, $all) = ('', '');
	my $sel = IO::Select->new($s);
	my $t0 = time();
	while (time() - $t0 < 10 && $sel->can_read(10))
	{
		my $n = sysread($s, $buf, 65536);
		last if !$n;
		$all .= $buf;
		last if $all =~ /\r\n\r\n/ && $all =~ /^Content-Length: (\d+)/mi
		  && length($all) - index($all, "\r\n\r\n") - 4 >= $1;
	}
	close $s;
	my ($st) = $all =~ m{^HTTP/1\.\d (\d{3})};
	my ($body) = $all =~ /\r\n\r\n(.*)$/s;
	return ($st // 0, $body // '');
}

sub gw_alive
{
	my ($gw) = @_;
	return HTTP::Tiny->new(timeout => 5)->get("$gw->{base}/healthz")->{status} == 200;
}

sub gw_stop
{
	my ($gw) = @_;
	$gw->{h}->signal('TERM');
	eval { $gw->{h}->finish; 1 } or return -1;
	return $gw->{h}->result(0);
}

sub gw_sanitizer_reports
{
	my ($gw) = @_;
	my $r = join '', map { slurp_file($_) } glob("$gw->{dir}/asan*");
	my $log = -f $gw->{log} ? slurp_file($gw->{log}) : '';
	$r .= $1 while $log =~ /(^.*(?:AddressSanitizer|runtime error|LeakSanitizer).*$)/mg;
	return $r;
}

# the metric names of a /metrics text with more than one TYPE line (a
# Prometheus scrape fails on any)
sub gw_metric_type_repeats
{
	my ($text) = @_;
	my %types;
	$types{$_}++ for $text =~ /^# TYPE (\S+)/mg;
	return [ grep { $types{$_} > 1 } sort keys %types ];
}

sub gw_jwt
{
	my ($secret, %claims) = @_;
	my $alg = delete $claims{_alg} // 'HS256';
	my $h = encode_base64url($json->encode({ alg => $alg, typ => 'JWT' }));
	my $c = encode_base64url($json->encode(\%claims));
	return "$h.$c." . encode_base64url(hmac_sha256("$h.$c", $secret));
}

1;
