// Package config loads stompgate's configuration from STOMPGATE_* environment
// variables.
//
// The Config struct is the single source of truth: every field carries its
// variable name (env), its default (envDefault) and a one-line description
// (desc). `stompgate -h`, `stompgate config print` and docs/configuration.md
// are all rendered from those tags by Describe, so they cannot drift from the
// code.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/keepalive"
)

// Prefix is prepended to every variable name.
const Prefix = "STOMPGATE_"

// ExitConfig is the exit status for configuration errors (sysexits EX_CONFIG):
// an orchestrator should not restart-loop on it without a change.
const ExitConfig = 78

// Config is stompgate's whole configuration. Field order is the order of the
// -h output and of docs/configuration.md.
type Config struct {
	ListenAddr            string   `env:"LISTEN_ADDR" envDefault:":8090" desc:"Address the client-facing WebSocket/HTTP listener binds to."`
	MaxRequestHeaderBytes ByteSize `env:"MAX_REQUEST_HEADER_BYTES" envDefault:"64KiB" desc:"Largest HTTP request header section (request line and headers) accepted on the client listener; a larger one gets 431 and nothing reaches the upstream (Go's http.Server allows 4 KiB of slack beyond it). At least 4KiB."`

	UpstreamURL         URL           `env:"UPSTREAM_URL,required" desc:"Base URL of the broker's WebSocket endpoint (ws:// or wss://). The client's request path and query are joined under its path, like httputil.NewSingleHostReverseProxy. Required."`
	UpstreamDialTimeout time.Duration `env:"UPSTREAM_DIAL_TIMEOUT" envDefault:"10s" desc:"Time allowed for TCP connect, TLS and the WebSocket upgrade to the upstream; past it the client gets 504."`
	HandshakeTimeout    time.Duration `env:"HANDSHAKE_TIMEOUT" envDefault:"10s" desc:"Time allowed for the client's WebSocket upgrade (reading the request and writing the 101)."`
	MaxMessageBytes     ByteSize      `env:"MAX_MESSAGE_BYTES" envDefault:"1MiB" desc:"Largest WebSocket message accepted from either side, in bytes (suffixes KiB and MiB accepted). A larger message closes that side with 1009 and a reason."`
	CloseTimeout        time.Duration `env:"CLOSE_TIMEOUT" envDefault:"5s" desc:"How long a close handshake may take on either leg before the TCP connection is aborted. No session ever sits in CLOSING longer than this."`
	WriteTimeout        time.Duration `env:"WRITE_TIMEOUT" envDefault:"10s" desc:"How long one message write to either peer may block. A peer that reads nothing for this long is treated as lost (Spring's sendTimeLimit is 10s too)."`
	PreserveHost        bool          `env:"PRESERVE_HOST" envDefault:"true" desc:"Send the client's Host header upstream instead of the upstream URL's host. Spring's default origin check compares Origin with Host."`
	TrustedProxies      PrefixList    `env:"TRUSTED_PROXIES" desc:"Comma-separated CIDRs (or single IPs) whose X-Forwarded-For/-Proto/-Host headers are trusted and extended; from anyone else they are replaced. Empty trusts nobody."`

	StompStrict    bool     `env:"STOMP_STRICT" envDefault:"false" desc:"Refuse sessions that are not STOMP (subprotocol not v1x.stomp, or a first client frame other than CONNECT/STOMP) with close 1002 and a reason, instead of passing them through unscanned."`
	MaxFrameBytes  ByteSize `env:"MAX_FRAME_BYTES" envDefault:"0" desc:"Largest STOMP frame accepted from either side (frames may span WebSocket messages); 0 means the larger of the two per-direction message limits. Spring's own default is 64 KiB. A larger frame gets a STOMP ERROR, then close 1009."`
	MaxHeaderBytes ByteSize `env:"MAX_HEADER_BYTES" envDefault:"64KiB" desc:"Largest STOMP header section (command line through the blank line)."`
	MaxHeaders     int      `env:"MAX_HEADERS" envDefault:"100" desc:"Most header lines in one STOMP frame (RabbitMQ's limit is 100)."`

	HeartbeatMode        keepalive.Mode `env:"HEARTBEAT_MODE" envDefault:"terminate" desc:"terminate: each hop gets its own heart-beat contract (heart-beat rewritten per hop, EOLs consumed and regenerated). passthrough: heart-beats pass end to end unchanged; stompgate only probes the client with pings and keeps intermediaries busy where the negotiated contract allows."`
	UpstreamHeartbeat    HeartBeat      `env:"UPSTREAM_HEARTBEAT" envDefault:"10000,10000" desc:"heart-beat stompgate puts in the CONNECT it sends upstream (terminate mode): what it can send, what it wants to receive, in ms."`
	ClientHeartbeat      HeartBeat      `env:"CLIENT_HEARTBEAT" envDefault:"10000,10000" desc:"heart-beat stompgate puts in the CONNECTED it sends the client (terminate mode), in ms."`
	HeartbeatTolerance   float64        `env:"HEARTBEAT_TOLERANCE" envDefault:"3" desc:"The broker is declared dead after its negotiated heart-beat period times this factor without data (Spring uses 3)."`
	PongTimeout          time.Duration  `env:"PONG_TIMEOUT" envDefault:"10s" desc:"A client probed with a WebSocket ping is declared dead if nothing (data or pong) arrives within this time."`
	ClientPingInterval   time.Duration  `env:"CLIENT_PING_INTERVAL" envDefault:"0s" desc:"Ping interval for clients without heart-beats (0,0, STOMP 1.0, not yet CONNECTED); 0s means 40% of STOMPGATE_IDLE_TIMEOUT, at most 25s."`
	UpstreamPingInterval time.Duration  `env:"UPSTREAM_PING_INTERVAL" envDefault:"10s" desc:"When nothing else proves the upstream alive (no STOMP heart-beats on that hop: heart-beat 0,0 from the broker, passthrough mode, not STOMP, or not yet CONNECTED), a WebSocket ping goes upstream after this much silence; no pong, byte or progress of stompgate's writes within STOMPGATE_PONG_TIMEOUT declares the upstream dead (STOMP client: ERROR and 1011; others: 1011). 0s disables."`
	IdleTimeout          time.Duration  `env:"IDLE_TIMEOUT" envDefault:"60s" desc:"Smallest idle timeout of anything between client and broker (nginx proxy_read_timeout, Kong, ALB). Each hop carries bytes at least every 40% of it."`

	MaxClientMessageBytes   ByteSize   `env:"MAX_CLIENT_MESSAGE_BYTES" envDefault:"0" desc:"Largest WebSocket message accepted from the client; 0 means STOMPGATE_MAX_MESSAGE_BYTES. Spring's own STOMP limit is 64 KiB."`
	MaxUpstreamMessageBytes ByteSize   `env:"MAX_UPSTREAM_MESSAGE_BYTES" envDefault:"0" desc:"Largest WebSocket message accepted from the broker; 0 means STOMPGATE_MAX_MESSAGE_BYTES."`
	AllowedOrigins          OriginList `env:"ALLOWED_ORIGINS" desc:"Comma-separated browser origins allowed to open a WebSocket: exact (https://app.example.com) or a subdomain pattern (https://*.example.com). Others get 403 before the broker is dialled. A handshake without Origin (a non-browser client) is allowed. Empty lets the broker decide."`
	MaxConnections          int        `env:"MAX_CONNECTIONS" envDefault:"10000" desc:"Most sessions open at once; further handshakes get 503. 0 means unlimited. Each session holds two file descriptors."`
	HandshakeRatePerIP      float64    `env:"HANDSHAKE_RATE_PER_IP" envDefault:"0" desc:"Sustained WebSocket handshakes per second allowed from one client IP (token bucket); more get 429. 0 turns the limit off. Behind an ingress, set STOMPGATE_TRUSTED_PROXIES so the client's IP is taken from X-Forwarded-For."`
	HandshakeBurstPerIP     int        `env:"HANDSHAKE_BURST_PER_IP" envDefault:"20" desc:"Handshakes one client IP may make at once before STOMPGATE_HANDSHAKE_RATE_PER_IP applies."`

	SockJSPaths           PathList      `env:"SOCKJS_PATHS" desc:"Comma-separated path prefixes (e.g. /ws) under which stompgate itself serves SockJS (.withSockJS() clients, sockjs-client): /info, the iframe page and every transport (websocket, xhr-streaming, xhr-polling, eventsource, htmlfile, jsonp). Each SockJS session reaches the upstream as one plain STOMP-over-WebSocket connection, with the same liveness, limits, metrics and drain as a WebSocket client. Empty turns SockJS off: such requests pass through as plain HTTP."`
	SockJSUpstreamSuffix  string        `env:"SOCKJS_UPSTREAM_SUFFIX" envDefault:"/websocket" desc:"Appended to the SockJS prefix to make the upstream's WebSocket path: /websocket is the raw WebSocket endpoint Spring serves under every .withSockJS() endpoint; empty for a broker whose raw endpoint is the prefix itself (RabbitMQ Web-STOMP's /ws)."`
	SockJSDisconnectDelay time.Duration `env:"SOCKJS_DISCONNECT_DELAY" envDefault:"5s" desc:"A SockJS client with no request open (it stopped polling, or its streaming request is gone) for this long is gone: its broker gets a DISCONNECT, as for a vanished WebSocket client."`
	SockJSHeartbeat       time.Duration `env:"SOCKJS_HEARTBEAT" envDefault:"25s" desc:"A SockJS h frame goes to the client after this long without a frame, so that proxies in between see traffic on streaming and polling requests. Keep it below STOMPGATE_IDLE_TIMEOUT."`
	SockJSClientURL       string        `env:"SOCKJS_CLIENT_URL" envDefault:"https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js" desc:"The sockjs-client script the SockJS iframe page loads (the iframe-based transports, for browsers that need them); serve your own copy to avoid the CDN."`

	UpstreamCAFile                string `env:"UPSTREAM_CA_FILE" desc:"PEM file of CA certificates trusted for a wss:// upstream, instead of the system roots. Empty uses the system roots."`
	UpstreamTLSServerName         string `env:"UPSTREAM_TLS_SERVER_NAME" desc:"Server name to verify (and send as SNI) for a wss:// upstream, when it differs from the URL's host. Empty uses the URL's host."`
	UpstreamTLSInsecureSkipVerify bool   `env:"UPSTREAM_TLS_INSECURE_SKIP_VERIFY" envDefault:"false" desc:"Do not verify the wss:// upstream's certificate. For tests only: anyone on the path can read and change the traffic."`
	TLSCertFile                   string `env:"TLS_CERT_FILE" desc:"PEM certificate chain for TLS on the client listener (wss://). Set together with STOMPGATE_TLS_KEY_FILE; empty serves plain ws://."`
	TLSKeyFile                    string `env:"TLS_KEY_FILE" desc:"PEM private key for STOMPGATE_TLS_CERT_FILE; empty when the listener is plain."`

	AdminAddr           string        `env:"ADMIN_ADDR" envDefault:":9095" desc:"Address of the admin server: GET /livez, GET /readyz, GET /metrics, POST /drain, GET /debug/sessions. Keep it off the client-facing port."`
	ReadyChecksUpstream bool          `env:"READY_CHECKS_UPSTREAM" envDefault:"false" desc:"Make /readyz also fail while the upstream does not answer: an HTTP GET to the upstream URL (no credentials, no query), passed by any HTTP status and failed by no answer within STOMPGATE_UPSTREAM_DIAL_TIMEOUT, at most 2s; cached for 1s. A TCP connect alone would pass for a frozen broker, whose kernel still completes connects. Off by default: a native sidecar's startup must not wait for the app it fronts."`
	PprofAddr           string        `env:"PPROF_ADDR" desc:"Loopback address (e.g. 127.0.0.1:6060) serving net/http/pprof. Empty turns it off; a non-loopback address is refused."`
	ShutdownDelay       time.Duration `env:"SHUTDOWN_DELAY" envDefault:"5s" desc:"After SIGTERM or POST /drain, /readyz fails at once but new handshakes are still accepted for this long, so endpoints can be updated; after it the client listener is closed (new connections are refused, and a replacement can bind STOMPGATE_LISTEN_ADDR while open sessions drain) and handshakes already in progress get 503."`
	DrainPeriod         time.Duration `env:"DRAIN_PERIOD" envDefault:"20s" desc:"Open sessions are closed spread uniformly at random over this window (after SHUTDOWN_DELAY), so clients do not all reconnect at once: each client gets STOMP ERROR 'server restarting, reconnect' and close 1012, each broker a DISCONNECT."`
	ShutdownTimeout     time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" desc:"From the signal, the longest a shutdown takes: sessions still open then are closed at once, and the process exits. Keep it below the pod's terminationGracePeriodSeconds."`

	LogLevel  zapcore.Level `env:"LOG_LEVEL" envDefault:"info" desc:"Log level: debug, info, warn or error."`
	LogFormat LogFormat     `env:"LOG_FORMAT" envDefault:"json" desc:"Log encoding: json (one object per line) or console (human-readable)."`
}

// Load parses the process environment (or environ, when non-nil, as
// "KEY=value" pairs) and validates the result. Every problem is reported in one
// error, one line per variable, so an operator fixes them all in one go.
func Load(environ []string) (Config, error) {
	opts := env.Options{Prefix: Prefix}
	if environ != nil {
		opts.Environment = env.ToMap(environ)
	}
	cfg, err := env.ParseAsWithOptions[Config](opts)
	// The env library gives a variable set to "" its default, but an empty
	// suffix is a setting of its own: RabbitMQ Web-STOMP serves SockJS and
	// raw WebSocket on the same path.
	if v, set := lookupEnv(environ, Prefix+"SOCKJS_UPSTREAM_SUFFIX"); set && v == "" {
		cfg.SockJSUpstreamSuffix = ""
	}
	var problems []error
	failed := map[string]bool{} // variables that did not even parse
	if err != nil {
		var agg env.AggregateError
		if !errors.As(err, &agg) {
			agg.Errors = []error{err}
		}
		for _, e := range agg.Errors {
			name, perr := describeParseError(e)
			failed[name] = true
			problems = append(problems, perr)
		}
	}
	for _, verr := range flatten([]error{cfg.Validate()}) {
		name, _, _ := strings.Cut(verr.Error(), ":")
		if !failed[name] {
			problems = append(problems, verr)
		}
	}
	if len(problems) > 0 {
		return cfg, &Error{Problems: problems}
	}
	return cfg, nil
}

// lookupEnv looks key up in environ ("KEY=value" pairs), or in the process
// environment when environ is nil.
func lookupEnv(environ []string, key string) (string, bool) {
	if environ == nil {
		return os.LookupEnv(key)
	}
	v, set := env.ToMap(environ)[key]
	return v, set
}

// describeParseError rewrites the env library's errors, which name Go struct
// fields, so that they name the variable the operator set.
func describeParseError(err error) (string, error) {
	var pe env.ParseError
	if errors.As(err, &pe) {
		for _, v := range Vars() {
			if reflect.TypeFor[Config]().Field(v.field).Name == pe.Name {
				return v.Name, fmt.Errorf("%s: invalid %s: %w", v.Name, v.Type, pe.Err)
			}
		}
	}
	return "", err
}

// Validate checks the business rules that parsing alone cannot.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	}
	if c.UpstreamURL.URL != nil {
		u := c.UpstreamURL.URL
		switch {
		case u.Scheme != "ws" && u.Scheme != "wss":
			bad("UPSTREAM_URL", "scheme must be ws or wss, got %q", u.Scheme)
		case u.Host == "":
			bad("UPSTREAM_URL", "has no host")
		}
	}
	if c.ListenAddr == "" {
		bad("LISTEN_ADDR", "must not be empty")
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad(name, "must be a positive duration, got %s", d)
		}
	}
	positive("UPSTREAM_DIAL_TIMEOUT", c.UpstreamDialTimeout)
	positive("HANDSHAKE_TIMEOUT", c.HandshakeTimeout)
	positive("CLOSE_TIMEOUT", c.CloseTimeout)
	positive("WRITE_TIMEOUT", c.WriteTimeout)
	positive("PONG_TIMEOUT", c.PongTimeout)
	positive("IDLE_TIMEOUT", c.IdleTimeout)
	if c.UpstreamPingInterval < 0 || (c.UpstreamPingInterval > 0 && c.UpstreamPingInterval < keepalive.MinInterval) {
		bad("UPSTREAM_PING_INTERVAL", "must be 0 (off) or at least %s, got %s", keepalive.MinInterval, c.UpstreamPingInterval)
	}
	if c.ClientPingInterval < 0 {
		bad("CLIENT_PING_INTERVAL", "must not be negative, got %s", c.ClientPingInterval)
	}
	if c.HeartbeatTolerance < 1 {
		bad("HEARTBEAT_TOLERANCE", "must be at least 1, got %v", c.HeartbeatTolerance)
	}
	if c.MaxRequestHeaderBytes < 4<<10 {
		bad("MAX_REQUEST_HEADER_BYTES", "must be at least 4KiB, got %d", c.MaxRequestHeaderBytes)
	}
	if c.MaxHeaders < 1 {
		bad("MAX_HEADERS", "must be at least 1, got %d", c.MaxHeaders)
	}
	if c.MaxHeaderBytes < 64 {
		bad("MAX_HEADER_BYTES", "must be at least 64 bytes, got %d", c.MaxHeaderBytes)
	}
	for name, v := range map[string]ByteSize{"MAX_CLIENT_MESSAGE_BYTES": c.MaxClientMessageBytes, "MAX_UPSTREAM_MESSAGE_BYTES": c.MaxUpstreamMessageBytes} {
		if v != 0 && v < 256 {
			bad(name, "must be 0 or at least 256 bytes, got %d", v)
		}
	}
	if c.MaxConnections < 0 {
		bad("MAX_CONNECTIONS", "must not be negative, got %d", c.MaxConnections)
	}
	if c.HandshakeRatePerIP < 0 {
		bad("HANDSHAKE_RATE_PER_IP", "must not be negative, got %v", c.HandshakeRatePerIP)
	}
	if c.HandshakeBurstPerIP < 1 {
		bad("HANDSHAKE_BURST_PER_IP", "must be at least 1, got %d", c.HandshakeBurstPerIP)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLS_CERT_FILE", "and STOMPGATE_TLS_KEY_FILE must be set together")
	}
	if c.UpstreamURL.URL != nil && c.UpstreamURL.Scheme == "ws" && (c.UpstreamCAFile != "" || c.UpstreamTLSServerName != "" || c.UpstreamTLSInsecureSkipVerify) {
		bad("UPSTREAM_URL", "is ws://, but upstream TLS settings are set: use wss://")
	}
	if c.AdminAddr == "" {
		bad("ADMIN_ADDR", "must not be empty")
	}
	if c.PprofAddr != "" && !isLoopback(c.PprofAddr) {
		bad("PPROF_ADDR", "must be a loopback address like 127.0.0.1:6060, got %q", c.PprofAddr)
	}
	if c.ShutdownDelay < 0 {
		bad("SHUTDOWN_DELAY", "must not be negative, got %s", c.ShutdownDelay)
	}
	if c.DrainPeriod < 0 {
		bad("DRAIN_PERIOD", "must not be negative, got %s", c.DrainPeriod)
	}
	positive("SHUTDOWN_TIMEOUT", c.ShutdownTimeout)
	if c.ShutdownTimeout > 0 && c.ShutdownDelay+c.DrainPeriod > c.ShutdownTimeout {
		bad("SHUTDOWN_TIMEOUT", "(%s) must be at least SHUTDOWN_DELAY + DRAIN_PERIOD (%s)", c.ShutdownTimeout, c.ShutdownDelay+c.DrainPeriod)
	}
	if _, err := c.UpstreamTLSConfig(); err != nil {
		bad("UPSTREAM_CA_FILE", "%v", err)
	}
	if _, err := c.ListenerTLSConfig(); err != nil {
		bad("TLS_CERT_FILE", "%v", err)
	}
	for _, p := range c.SockJSPaths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") || p == "/" {
			bad("SOCKJS_PATHS", "each prefix must be a path like /ws (not / alone), got %q", p)
		}
	}
	if c.SockJSUpstreamSuffix != "" && !strings.HasPrefix(c.SockJSUpstreamSuffix, "/") {
		bad("SOCKJS_UPSTREAM_SUFFIX", "must be empty or start with /, got %q", c.SockJSUpstreamSuffix)
	}
	if len(c.SockJSPaths) > 0 && c.SockJSDisconnectDelay <= 0 {
		bad("SOCKJS_DISCONNECT_DELAY", "must be a positive duration, got %s", c.SockJSDisconnectDelay)
	}
	if len(c.SockJSPaths) > 0 && c.SockJSHeartbeat <= 0 {
		bad("SOCKJS_HEARTBEAT", "must be a positive duration, got %s", c.SockJSHeartbeat)
	}
	if c.MaxMessageBytes < 256 {
		bad("MAX_MESSAGE_BYTES", "must be at least 256 bytes, got %d", c.MaxMessageBytes)
	}
	return errors.Join(errs...)
}

// Error lists every configuration problem found.
type Error struct{ Problems []error }

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  - " + p.Error()
	}
	return "invalid configuration:\n" + strings.Join(lines, "\n")
}

func flatten(errs []error) []error {
	var out []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			out = append(out, flatten(j.Unwrap())...)
			continue
		}
		out = append(out, err)
	}
	return out
}

// URL is a url.URL that parses from text and prints without its password.
type URL struct{ *url.URL }

// UnmarshalText implements encoding.TextUnmarshaler.
func (u *URL) UnmarshalText(b []byte) error {
	p, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	u.URL = p
	return nil
}

// String returns the URL with any password redacted.
func (u URL) String() string {
	if u.URL == nil {
		return ""
	}
	return u.Redacted()
}

// ByteSize is a size in bytes; it parses plain integers and KiB/MiB/GiB
// (also KB/MB/GB, taken as powers of 1024 like Spring's DataSize).
type ByteSize int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *ByteSize) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(text, suf.s) {
			text, mult = strings.TrimSpace(strings.TrimSuffix(text, suf.s)), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("not a byte size: %q (use e.g. 65536, 64KiB or 1MiB)", string(b))
	}
	*s = ByteSize(n * mult)
	return nil
}

// String prints the exact byte count.
func (s ByteSize) String() string { return strconv.FormatInt(int64(s), 10) }

// PrefixList is a comma-separated list of CIDRs; a bare IP means that one
// address. Blank items are ignored so "a, b," works.
type PrefixList []netip.Prefix

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *PrefixList) UnmarshalText(b []byte) error {
	var out PrefixList
	for _, item := range strings.Split(string(b), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return fmt.Errorf("not an IP or CIDR: %q", item)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return fmt.Errorf("not an IP or CIDR: %q", item)
		}
		out = append(out, p.Masked())
	}
	*l = out
	return nil
}

// Contains reports whether addr is inside any of the prefixes.
func (l PrefixList) Contains(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range l {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String prints the list as it would be written in the variable.
func (l PrefixList) String() string {
	parts := make([]string, len(l))
	for i, p := range l {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// LogFormat selects the zap encoder.
type LogFormat string

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *LogFormat) UnmarshalText(b []byte) error {
	switch v := LogFormat(strings.ToLower(strings.TrimSpace(string(b)))); v {
	case "json", "console":
		*f = v
		return nil
	}
	return fmt.Errorf("log format must be json or console, got %q", string(b))
}

// FrameLimit is the effective STOMP frame limit.
func (c *Config) FrameLimit() int64 {
	if c.MaxFrameBytes > 0 {
		return int64(c.MaxFrameBytes)
	}
	fromClient, fromUpstream := c.MessageLimits()
	return max(fromClient, fromUpstream)
}

// HeartBeat is a heart-beat header value, "<send>,<receive>" in milliseconds.
type HeartBeat struct{ inspect.HeartBeat }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HeartBeat) UnmarshalText(b []byte) error {
	hb, err := inspect.ParseHeartBeat(b)
	if err != nil {
		return fmt.Errorf("heart-beat must be two millisecond counts like 10000,10000, got %q", string(b))
	}
	h.HeartBeat = hb
	return nil
}

// String prints the canonical header value.
func (h HeartBeat) String() string { return inspect.FormatHeartBeat(h.HeartBeat) }

// MessageLimits returns the effective per-direction WebSocket message
// limits.
func (c *Config) MessageLimits() (fromClient, fromUpstream int64) {
	fromClient, fromUpstream = int64(c.MaxMessageBytes), int64(c.MaxMessageBytes)
	if c.MaxClientMessageBytes > 0 {
		fromClient = int64(c.MaxClientMessageBytes)
	}
	if c.MaxUpstreamMessageBytes > 0 {
		fromUpstream = int64(c.MaxUpstreamMessageBytes)
	}
	return fromClient, fromUpstream
}

// isLoopback reports whether a host:port address names a loopback host.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// PathList is a comma-separated list of URL path prefixes; a trailing
// slash is dropped.
type PathList []string

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *PathList) UnmarshalText(b []byte) error {
	var out PathList
	for _, item := range strings.Split(string(b), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item != "/" {
			item = strings.TrimSuffix(item, "/")
		}
		out = append(out, item)
	}
	*l = out
	return nil
}

func (l PathList) String() string { return strings.Join(l, ",") }

// OriginList is a comma-separated list of allowed browser origins: exact
// ("https://app.example.com") or with a leading "*." in the host
// ("https://*.example.com", which matches subdomains at any depth but not
// example.com itself). Matching ignores case.
type OriginList []string

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *OriginList) UnmarshalText(b []byte) error {
	var out OriginList
	for _, item := range strings.Split(string(b), ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		if item == "" {
			continue
		}
		u, err := url.Parse(strings.Replace(item, "*.", "wildcard.", 1))
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("not an origin like https://app.example.com or https://*.example.com: %q", item)
		}
		if strings.Count(item, "*") > 1 || (strings.Contains(item, "*") && !strings.Contains(item, "://*.")) {
			return fmt.Errorf("a wildcard may only start the host, as in https://*.example.com: %q", item)
		}
		out = append(out, strings.TrimSuffix(item, "/"))
	}
	*l = out
	return nil
}

// Allows reports whether origin matches the list.
func (l OriginList) Allows(origin string) bool {
	origin = strings.ToLower(origin)
	for _, pat := range l {
		if pat == origin {
			return true
		}
		if scheme, rest, ok := strings.Cut(pat, "://*."); ok {
			// "https://*.example.com" matches "https://a.example.com" and
			// "https://a.b.example.com:443"-style origins with the same port
			// spelling as the pattern.
			prefix := scheme + "://"
			if strings.HasPrefix(origin, prefix) {
				host := origin[len(prefix):]
				if strings.ContainsAny(host, "/@") {
					continue
				}
				if strings.HasSuffix(host, "."+rest) && len(host) > len(rest)+1 {
					return true
				}
			}
		}
	}
	return false
}

// String prints the list as it would be written in the variable.
func (l OriginList) String() string { return strings.Join(l, ",") }

// UpstreamTLSConfig builds the TLS client configuration for a wss://
// upstream, or returns nil when none of the upstream TLS settings is set
// (Go's defaults: system roots, the URL's host).
func (c *Config) UpstreamTLSConfig() (*tls.Config, error) {
	if c.UpstreamCAFile == "" && c.UpstreamTLSServerName == "" && !c.UpstreamTLSInsecureSkipVerify {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.UpstreamTLSServerName,
		InsecureSkipVerify: c.UpstreamTLSInsecureSkipVerify, // an explicit, documented opt-in
	}
	if c.UpstreamCAFile != "" {
		pem, err := os.ReadFile(c.UpstreamCAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.UpstreamCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// ListenerTLSConfig loads the client listener's certificate, or returns nil
// when the listener is plain.
func (c *Config) ListenerTLSConfig() (*tls.Config, error) {
	if c.TLSCertFile == "" || c.TLSKeyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate and key: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}
