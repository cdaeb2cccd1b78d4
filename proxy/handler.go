// Package proxy is stompgate's HTTP handler: it upgrades each WebSocket client
// after dialling the upstream broker, then runs one Session per client that
// pumps messages both ways, serialises writes and maps closes. Plain HTTP
// requests are reverse-proxied to the same upstream.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/stompgate/stompgate/metrics"
)

// Handler serves WebSocket upgrades by proxying them to the upstream and
// passes every other request through with httputil.ReverseProxy.
type Handler struct {
	opts     Options
	dialer   websocket.Dialer
	upgrader websocket.Upgrader
	http     *httputil.ReverseProxy

	metrics  *metrics.Metrics
	failLog  *logSampler // the per-handshake failure lines, never the sessions'
	limiter  *ipLimiter  // nil: no per-address handshake limit
	slots    atomic.Int64
	draining atomic.Bool // readiness fails; set by Drain
	refusing atomic.Bool // new handshakes get 503; set by Drain after its delay
	sockjs   []*sockjsEndpoint

	mu       sync.Mutex
	idle     *sync.Cond // signalled when sessions becomes empty
	sessions map[*Session]struct{}
}

// handshakeBufferSize is gorilla's buffer size for the opening handshakes
// only: after them, stompgate reads and writes frames itself
// (internal/wsconn), whose buffers follow the traffic.
const handshakeBufferSize = 1024

// New validates opts and returns a Handler.
func New(opts Options) (*Handler, error) {
	if opts.Upstream == nil || (opts.Upstream.Scheme != "ws" && opts.Upstream.Scheme != "wss") || opts.Upstream.Host == "" {
		return nil, fmt.Errorf("proxy: upstream must be a ws:// or wss:// URL with a host, got %v", opts.Upstream)
	}
	opts.setDefaults()
	h := &Handler{opts: opts, metrics: opts.Metrics, sessions: make(map[*Session]struct{})}
	h.failLog = newLogSampler(opts.Logger, failLogFirst, failLogWindow)
	if opts.HandshakeRatePerIP > 0 {
		h.limiter = newIPLimiter(opts.HandshakeRatePerIP, opts.HandshakeBurstPerIP)
	}
	h.idle = sync.NewCond(&h.mu)
	plain, withTLS := netDialer(opts.TLSClientConfig)
	h.dialer = websocket.Dialer{
		Proxy:             nil, // a sidecar talks to its pod's broker directly
		HandshakeTimeout:  opts.DialTimeout,
		NetDialContext:    plain,
		NetDialTLSContext: withTLS,
		ReadBufferSize:    handshakeBufferSize,
		WriteBufferSize:   handshakeBufferSize,
	}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: opts.HandshakeTimeout,
		ReadBufferSize:   handshakeBufferSize,
		WriteBufferSize:  handshakeBufferSize,
		// The upstream sees the client's Origin and decides; stompgate's own
		// origin policy is applied before dialling.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	h.http = h.newHTTPProxy()
	for _, p := range opts.SockJS.Paths {
		h.sockjs = append(h.sockjs, newSockJSEndpoint(h, p))
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, e := range h.sockjs {
		if e.serves(r) {
			e.ServeHTTP(w, r)
			return
		}
	}
	if websocket.IsWebSocketUpgrade(r) {
		h.serveWebSocket(w, r)
		return
	}
	h.http.ServeHTTP(w, r)
}

// openSessions is a snapshot of the open sessions, taken under the lock
// and used without it.
func (h *Handler) openSessions() []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	sessions := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	return sessions
}

// ActiveSessions returns the number of sessions currently proxied.
func (h *Handler) ActiveSessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Wait blocks until no session is open. Sessions that start meanwhile are
// waited for too; stop the listener first.
func (h *Handler) Wait() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.sessions) > 0 {
		h.idle.Wait()
	}
}

func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	target := targetURL(h.opts.Upstream, r.URL)
	log := h.opts.Logger.With(
		zap.String("remote", r.RemoteAddr),
		zap.String("path", r.URL.Path),
		// Without the query: browsers often carry tokens there.
		zap.String("upstream", redactedNoQuery(target)),
	)

	header := h.upstreamHeader(r)
	// Offered subprotocols go upstream verbatim, in the client's order, so
	// the broker picks exactly as it would without stompgate.
	if protos := r.Header.Values("Sec-Websocket-Protocol"); len(protos) > 0 {
		header["Sec-Websocket-Protocol"] = protos
	}

	if !r.ProtoAtLeast(1, 1) {
		// RFC 6455 section 4.2.1: the opening handshake is an HTTP/1.1 (or
		// later) GET. gorilla's Upgrader does not check it, so an HTTP/1.0
		// request got a 101; it is refused before anything is dialled.
		h.refuse(w, r, log, http.StatusBadRequest, metrics.HandshakeClientFailed, reasonNotHTTP11, ", got "+r.Proto)
		return
	}
	if status, result, reason := h.admit(r); status != 0 {
		h.refuse(w, r, log, status, result, reason, "")
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			h.freeSlot()
		}
	}()

	ctx, cancel := context.WithTimeout(r.Context(), h.opts.DialTimeout)
	upConn, resp, err := h.dialer.DialContext(ctx, target.String(), header)
	cancel()
	if err != nil {
		h.failHandshake(w, r, log, resp, err, time.Since(start))
		return
	}

	respHeader := http.Header{}
	if p := upConn.Subprotocol(); p != "" {
		respHeader.Set("Sec-Websocket-Protocol", p)
	}
	// Cookies the broker sets in its 101 (sticky sessions, CSRF) reach the
	// client.
	if resp != nil {
		for _, c := range resp.Header.Values("Set-Cookie") {
			respHeader.Add("Set-Cookie", c)
		}
	}
	clientConn, err := h.upgrader.Upgrade(w, r, respHeader)
	if err != nil {
		// gorilla has already answered the client with an HTTP error.
		h.metrics.Handshake(metrics.HandshakeClientFailed)
		if h.failLog.allow(sampleKey{msg: "client upgrade failed"}) {
			log.Warn("client upgrade failed", zap.Error(err))
		}
		closeConn(upConn, websocket.CloseGoingAway, "client handshake failed", h.opts.CloseTimeout)
		return
	}

	h.metrics.Handshake(metrics.HandshakeOK)
	// From here on stompgate reads and writes frames itself; gorilla's
	// connections (and their buffers) are dropped.
	hc := upConn.NetConn().(*handshakeConn)
	leftover := hc.afterHandshake()
	s := newSession(h, clientConn.Subprotocol(), log, r)
	s.attach(clientConn.NetConn(), clientConn.Subprotocol(), hc.Conn, upConn.Subprotocol(), leftover)
	h.track(s, true)
	// The session runs on its pumps' goroutines, owned by the Handler
	// (Wait, Drain and CloseAll reach it through h.sessions), so that this
	// handler returns and net/http frees what it holds per connection
	// (its 4 KiB write buffer, the request, a stack grown by parsing):
	// about half of an idle session's memory otherwise.
	handedOff = true
	s.start(func() {
		// The slot is freed before the session leaves h.sessions, so a
		// caller that saw the session count drop can be admitted.
		h.freeSlot()
		h.track(s, false)
	})
}

// upstreamHeader is what the dial to the broker carries of the client's
// request r: its end-to-end headers (cookies, Authorization, Origin), the
// forwarding headers and, with PreserveHost, its Host.
func (h *Handler) upstreamHeader(r *http.Request) http.Header {
	header := endToEnd(r.Header)
	setForwarded(header, r.Header, r, h.opts.TrustedProxy(remoteAddr(r)))
	if h.opts.PreserveHost {
		header.Set("Host", r.Host)
	}
	return header
}

// reasonNotHTTP11 is the reason an HTTP/1.0 upgrade request is refused.
const reasonNotHTTP11 = "WebSocket handshakes need HTTP/1.1 or later (RFC 6455 section 4.2.1)"

// refuse answers a handshake stompgate itself turns down, before the
// upstream is dialled: status with "stompgate: <reason><detail>" as the
// body, counted under result and logged, sampled.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, log *zap.Logger, status int, result, reason, detail string) {
	h.metrics.Handshake(result)
	http.Error(w, "stompgate: "+reason+detail, status)
	if h.failLog.allow(sampleKey{msg: "handshake refused", status: status, reason: reason}) {
		log.Warn("handshake refused", zap.Int("status", status), zap.String("reason", reason+detail), zap.String("origin", r.Header.Get("Origin")))
	}
}

func (h *Handler) track(s *Session, add bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if add {
		h.sessions[s] = struct{}{}
		h.metrics.SessionsActive.Inc()
		if h.refusing.Load() {
			// Admitted just before the drain began: close it with the rest.
			go s.drainClose()
		}
		return
	}
	delete(h.sessions, s)
	h.metrics.SessionsActive.Dec()
	if len(h.sessions) == 0 {
		h.idle.Broadcast()
	}
}

// failHandshake answers a client whose upstream could not be reached. A
// broker's own HTTP answer (401, 403, 404...) reaches the client as is, so a
// browser sees the real reason.
func (h *Handler) failHandshake(w http.ResponseWriter, r *http.Request, log *zap.Logger, resp *http.Response, err error, took time.Duration) {
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
		for k, vs := range endToEnd(resp.Header) {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		var body []byte
		if resp.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
		h.metrics.Handshake(metrics.HandshakeUpstreamStatus)
		if h.failLog.allow(sampleKey{msg: "upstream refused the handshake", status: resp.StatusCode}) {
			log.Warn("upstream refused the handshake", zap.Int("status", resp.StatusCode), zap.Duration("duration", took))
		}
		return
	}
	status, reason := dialFailure(err)
	if r.Context().Err() != nil {
		reason = "client went away during upstream dial"
	}
	if status == http.StatusGatewayTimeout {
		h.metrics.Handshake(metrics.HandshakeTimeout)
	} else {
		h.metrics.Handshake(metrics.HandshakeUpstreamRefused)
	}
	http.Error(w, fmt.Sprintf("stompgate: %s: %v", reason, err), status)
	if h.failLog.allow(sampleKey{msg: "upstream dial failed", status: status, reason: reason}) {
		log.Warn("upstream dial failed", zap.Int("status", status), zap.String("reason", reason), zap.Error(err), zap.Duration("duration", took))
	}
}

func (h *Handler) newHTTPProxy() *httputil.ReverseProxy {
	base := *h.opts.Upstream
	base.Scheme = httpScheme(base.Scheme)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.TLSClientConfig = h.opts.TLSClientConfig
	transport.DialContext = (&net.Dialer{Timeout: h.opts.DialTimeout}).DialContext
	return &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&base)
			trusted := h.opts.TrustedProxy(remoteAddr(pr.In))
			if trusted {
				for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} {
					if v := pr.In.Header.Values(k); len(v) > 0 {
						pr.Out.Header[k] = v
					}
				}
			}
			setForwarded(pr.Out.Header, pr.In.Header, pr.In, trusted)
			if h.opts.PreserveHost {
				pr.Out.Host = pr.In.Host
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status, reason := dialFailure(err)
			if h.failLog.allow(sampleKey{msg: "http pass-through failed", status: status, reason: reason}) {
				h.opts.Logger.Warn("http pass-through failed", zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path), zap.Int("status", status), zap.Error(err))
			}
			http.Error(w, "stompgate: "+reason, status)
		},
		ErrorLog: zap.NewStdLog(h.opts.Logger),
	}
}

// CloseAll closes every open session with code and reason, as a server that
// is going away. Sessions end within CloseTimeout.
func (h *Handler) CloseAll(code int, reason string) {
	for _, s := range h.openSessions() {
		s.shutdown(code, reason)
	}
}

// dialFailure maps an error reaching the upstream to the status the client
// gets: 504 when it timed out, 502 otherwise.
func dialFailure(err error) (status int, reason string) {
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		return http.StatusGatewayTimeout, "upstream timed out"
	}
	return http.StatusBadGateway, "upstream unreachable"
}

// redactedNoQuery prints u for logs: no password, no query, no fragment.
func redactedNoQuery(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return c.Redacted()
}
