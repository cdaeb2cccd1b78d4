package proxy

import (
	"crypto/tls"
	"net/netip"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
)

// Options configures a Handler. Zero durations take the documented defaults.
type Options struct {
	// Upstream is the broker's WebSocket base URL (ws:// or wss://).
	Upstream *url.URL
	// DialTimeout bounds TCP connect + TLS + upgrade to the upstream.
	DialTimeout time.Duration
	// HandshakeTimeout bounds writing the client's 101 response.
	HandshakeTimeout time.Duration
	// CloseTimeout bounds every close handshake; then TCP is aborted.
	CloseTimeout time.Duration
	// WriteTimeout bounds one message write to either peer. A peer that does
	// not read for this long is treated as lost.
	WriteTimeout time.Duration
	// MaxMessageBytes is the largest WebSocket message accepted from either
	// side, unless MaxClientMessageBytes or MaxUpstreamMessageBytes says
	// otherwise for one direction.
	MaxMessageBytes                                int64
	MaxClientMessageBytes, MaxUpstreamMessageBytes int64
	// AllowOrigin decides whether a browser handshake with this Origin may
	// proceed (403 otherwise). Nil lets every origin through to the
	// upstream, which then decides. Handshakes without Origin are not
	// checked.
	AllowOrigin func(origin string) bool
	// MaxConnections is the most sessions open at once (503 beyond); 0 is
	// unlimited.
	MaxConnections int
	// HandshakeRatePerIP limits handshakes per second from one client
	// address (429 beyond), with HandshakeBurstPerIP at once; 0 is off.
	HandshakeRatePerIP  float64
	HandshakeBurstPerIP int
	// Metrics receives counts; nil exports nothing.
	Metrics *metrics.Metrics
	// PreserveHost sends the client's Host upstream.
	PreserveHost bool
	// TrustedProxy reports whether X-Forwarded-* from this peer are trusted.
	// Nil trusts nobody.
	TrustedProxy func(netip.Addr) bool
	// TLSClientConfig is used for wss:// upstreams and https pass-through.
	TLSClientConfig *tls.Config
	// Logger receives one line per session and per failed handshake.
	Logger *zap.Logger
	// STOMP configures what stompgate does with the STOMP it sees.
	STOMP STOMPOptions
	// SockJS configures SockJS termination; no Paths: off.
	SockJS SockJSOptions
}

// SockJSOptions configures SockJS termination: stompgate serves the SockJS
// protocol under each path prefix and carries each SockJS session to the
// upstream as one WebSocket STOMP connection.
type SockJSOptions struct {
	// Paths are the path prefixes SockJS is served under (e.g. "/ws").
	Paths []string
	// UpstreamSuffix is appended to the prefix for the upstream's
	// WebSocket path: "/websocket" reaches the raw endpoint Spring serves
	// under every .withSockJS() endpoint.
	UpstreamSuffix string
	// DisconnectDelay: a session whose client has had no request open for
	// this long is gone (SockJS's disconnect_delay). Default 5s.
	DisconnectDelay time.Duration
	// HeartbeatDelay: an h frame goes to the client after this long
	// without a frame. Default 25s.
	HeartbeatDelay time.Duration
	// ClientScriptURL is the sockjs-client script the iframe page loads
	// (the iframe-based transports).
	ClientScriptURL string
}

// STOMPOptions configures STOMP inspection and the per-hop liveness
// contracts.
type STOMPOptions struct {
	// Strict refuses non-STOMP sessions (close 1002) instead of passing
	// them through unscanned.
	Strict bool
	// Limits bounds frames from either side; MaxFrameBytes 0 means
	// MaxMessageBytes.
	Limits inspect.Limits
	// UpstreamHeartBeat goes into the CONNECT sent upstream (terminate
	// mode); ClientHeartBeat into the CONNECTED sent to the client.
	UpstreamHeartBeat, ClientHeartBeat inspect.HeartBeat
	// Keepalive holds tolerance, pong timeout, ping interval, idle timeout
	// and the heart-beat mode.
	Keepalive keepalive.Config
}

// DefaultSockJSClientURL is the sockjs-client script the SockJS iframe
// page loads unless told otherwise (Spring's default too).
const DefaultSockJSClientURL = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 10*time.Second)
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.CloseTimeout, 5*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 1 << 20
	}
	if o.MaxClientMessageBytes <= 0 {
		o.MaxClientMessageBytes = o.MaxMessageBytes
	}
	if o.MaxUpstreamMessageBytes <= 0 {
		o.MaxUpstreamMessageBytes = o.MaxMessageBytes
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Discard()
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.STOMP.Limits.MaxFrameBytes <= 0 {
		o.STOMP.Limits.MaxFrameBytes = int(max(o.MaxClientMessageBytes, o.MaxUpstreamMessageBytes))
	}
	o.STOMP.Keepalive = o.STOMP.Keepalive.WithDefaults()
	def(&o.SockJS.DisconnectDelay, 5*time.Second)
	def(&o.SockJS.HeartbeatDelay, 25*time.Second)
	if o.SockJS.ClientScriptURL == "" {
		o.SockJS.ClientScriptURL = DefaultSockJSClientURL
	}
	if o.TrustedProxy == nil {
		o.TrustedProxy = func(netip.Addr) bool { return false }
	}
}
