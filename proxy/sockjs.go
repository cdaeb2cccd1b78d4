package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/igm/sockjs-go/v3/sockjs"
	"go.uber.org/zap"

	"github.com/stompgate/stompgate/metrics"
)

// SockJS termination. Under each configured prefix stompgate serves the
// SockJS protocol itself (/info, the iframe page and every transport), and
// each SockJS session becomes one proxied session whose client leg is a
// bridge (sockjs_bridge.go): the session's pumps, STOMP flow, liveness,
// limits, endings, metrics and log line are those of a WebSocket client,
// unchanged. The upstream sees a plain WebSocket STOMP client at the
// prefix plus the upstream suffix.
//
// The HTTP transports, the iframe page and /info come from sockjs-go
// (github.com/igm/sockjs-go/v3). stompgate guards what it leaves open: it
// refuses before the library creates a session (admission, origins), bounds
// and checks the bodies of xhr_send and jsonp_send, answers /info with 503
// while draining, and serves the websocket transport itself, with a read
// limit.

// sockjsSessionPath matches /<server>/<session>/<transport> below a prefix.
var sockjsSessionPath = regexp.MustCompile(`^/([^/.]+)/([^/.]+)/(xhr|xhr_send|xhr_streaming|eventsource|htmlfile|jsonp|jsonp_send|websocket)$`)

var sockjsIframePath = regexp.MustCompile(`^/iframe[0-9-.a-z_]*\.html$`)

// sockjsEndpoint serves SockJS under one prefix.
type sockjsEndpoint struct {
	h      *Handler
	prefix string
	lib    *sockjs.Handler

	mu sync.Mutex
	// sessions are the SockJS session ids admitted and not ended: a
	// receiving request for another id opens a session, and is admitted
	// first (slots, rate, draining), as a WebSocket handshake is.
	sessions map[string]*sockjsAdmission
}

// sockjsAdmission is a SockJS session that holds a slot. Until the session
// starts (claimed), a timer gives the slot back should it never start.
type sockjsAdmission struct {
	claimed bool
	expire  *time.Timer
}

func newSockJSEndpoint(h *Handler, prefix string) *sockjsEndpoint {
	e := &sockjsEndpoint{h: h, prefix: strings.TrimSuffix(prefix, "/"), sessions: make(map[string]*sockjsAdmission)}
	o := h.opts.SockJS
	e.lib = sockjs.NewHandler(e.prefix, sockjs.Options{
		// /info says websocket; the transport itself is stompgate's
		// (serveWebSocket), which bounds what a client may send.
		Websocket:       true,
		SockJSURL:       o.ClientScriptURL,
		ResponseLimit:   128 << 10,
		HeartbeatDelay:  o.HeartbeatDelay,
		DisconnectDelay: o.DisconnectDelay,
	}, e.started)
	return e
}

// serves reports whether path belongs to this endpoint's SockJS protocol.
// Other paths under the prefix (Spring's raw /websocket endpoint, say) are
// proxied as usual.
func (e *sockjsEndpoint) serves(path string) bool {
	rest, ok := strings.CutPrefix(path, e.prefix)
	if !ok {
		return false
	}
	return rest == "" || rest == "/" || rest == "/info" || sockjsIframePath.MatchString(rest) || sockjsSessionPath.MatchString(rest)
}

func (e *sockjsEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := e.h
	rest := strings.TrimPrefix(r.URL.Path, e.prefix)
	log := h.opts.Logger.With(zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path))
	if origin := r.Header.Get("Origin"); origin != "" && h.opts.AllowOrigin != nil && !h.opts.AllowOrigin(origin) {
		h.refuse(w, r, log, http.StatusForbidden, metrics.HandshakeOriginDenied, "origin not allowed", "")
		return
	}
	if rest == "/info" && h.draining.Load() {
		// New clients go elsewhere: an instance that answers /info is where
		// sockjs-client opens its session.
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "stompgate: draining; connect to another instance", http.StatusServiceUnavailable)
		return
	}
	m := sockjsSessionPath.FindStringSubmatch(rest)
	if m == nil {
		e.lib.ServeHTTP(w, r)
		return
	}
	id, transport := m[2], m[3]
	switch transport {
	case "xhr_send", "jsonp_send":
		if !e.checkSend(w, r, transport) {
			return
		}
		e.lib.ServeHTTP(w, r)
		return
	case "jsonp", "htmlfile":
		if r.URL.Query().Get("c") == "" {
			e.lib.ServeHTTP(w, r) // the library refuses it, before any session
			return
		}
	}
	if transport == "websocket" {
		if !e.admit(w, r, log, id, true) {
			return
		}
		e.serveWebSocket(w, r, id)
		return
	}
	if !e.admit(w, r, log, id, false) {
		return
	}
	if transport == "xhr" || transport == "jsonp" {
		e.servePoll(w, r, transport)
		return
	}
	e.lib.ServeHTTP(w, r)
}

// pollRetryFor bounds how long a poll waits for the library to let go of
// the previous poll of its session.
const pollRetryFor = 100 * time.Millisecond

// servePoll serves a polling request (xhr, jsonp). A client polls again as
// soon as a poll has brought messages, and the library detaches the
// finished poll from the session asynchronously: the next poll may find it
// still attached and be answered c[2010,"Another connection still open"],
// which ends the client's session. Such an answer is held back and the
// poll served again, for up to pollRetryFor; the session itself is
// untouched by a refused attach.
func (e *sockjsEndpoint) servePoll(w http.ResponseWriter, r *http.Request, transport string) {
	refusal := "c[2010,"
	if transport == "jsonp" {
		refusal = r.URL.Query().Get("c") + `("c[2010,`
	}
	header := w.Header().Clone()
	deadline := time.Now().Add(pollRetryFor)
	for wait := 100 * time.Microsecond; ; wait *= 2 {
		pw := &pollWriter{w: w, refusal: refusal}
		e.lib.ServeHTTP(pw, r)
		if !pw.refused || time.Now().After(deadline) {
			pw.release()
			return
		}
		time.Sleep(wait)
		clear(w.Header())
		for k, v := range header {
			w.Header()[k] = v
		}
	}
}

// pollWriter passes a poll's response through, except that it holds the
// status and flushes until the first write, and holds that write back when
// it is the refusal (refused).
type pollWriter struct {
	w       http.ResponseWriter
	refusal string
	status  int
	started bool // the first write went through: pass everything on
	refused bool
	held    []byte
}

func (p *pollWriter) Header() http.Header { return p.w.Header() }

func (p *pollWriter) WriteHeader(status int) {
	if p.started {
		p.w.WriteHeader(status)
		return
	}
	if p.status == 0 {
		p.status = status
	}
}

func (p *pollWriter) Write(b []byte) (int, error) {
	if p.started {
		return p.w.Write(b)
	}
	if p.refused {
		p.held = append(p.held, b...)
		return len(b), nil
	}
	if bytes.HasPrefix(b, []byte(p.refusal)) {
		p.refused = true
		p.held = append(p.held, b...)
		return len(b), nil
	}
	p.start()
	return p.w.Write(b)
}

func (p *pollWriter) Flush() {
	if p.started {
		p.w.(http.Flusher).Flush()
	}
}

func (p *pollWriter) start() {
	p.started = true
	if p.status != 0 {
		p.w.WriteHeader(p.status)
	}
}

// release writes what was held back: the refusal, once retrying is over,
// or the status of a response without a body.
func (p *pollWriter) release() {
	if p.started {
		return
	}
	p.start()
	if len(p.held) > 0 {
		_, _ = p.w.Write(p.held)
	}
}

// admit admits a request that opens SockJS session id (one not known yet,
// or any websocket transport request), as a WebSocket handshake is
// admitted: false when it was refused (answered).
func (e *sockjsEndpoint) admit(w http.ResponseWriter, r *http.Request, log *zap.Logger, id string, always bool) bool {
	e.mu.Lock()
	_, known := e.sessions[id]
	e.mu.Unlock()
	if known && !always {
		return true
	}
	if status, result, reason := e.h.admit(r); status != 0 {
		e.h.refuse(w, r, log, status, result, reason, "")
		return false
	}
	a := &sockjsAdmission{}
	// The session starts at once when the request is served; should it
	// not (the client went away first), the slot comes back.
	a.expire = time.AfterFunc(e.h.opts.DialTimeout+e.h.opts.HandshakeTimeout, func() { e.expire(id, a) })
	e.mu.Lock()
	if old := e.sessions[id]; old != nil && !old.claimed {
		old.expire.Stop()
		e.h.freeSlot()
	}
	e.sessions[id] = a
	e.mu.Unlock()
	return true
}

func (e *sockjsEndpoint) expire(id string, a *sockjsAdmission) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sessions[id] == a && !a.claimed {
		delete(e.sessions, id)
		e.h.freeSlot()
	}
}

// claim marks session id as started; false when it was not admitted.
func (e *sockjsEndpoint) claim(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.sessions[id]
	if a == nil || a.claimed {
		return false
	}
	a.claimed = true
	a.expire.Stop()
	return true
}

// forget removes session id once its session ended (its slot is freed by
// the session's own end). The library keeps an ended session for the
// disconnect delay to give a polling client its close frame (c[1012,…] in
// a drain) on its next poll: until then that poll belongs to the session
// and goes to the library, rather than being admitted as a new session,
// which a drain would refuse with 503 and the close frame never arrive.
func (e *sockjsEndpoint) forget(id string) {
	e.mu.Lock()
	a := e.sessions[id]
	e.mu.Unlock()
	if a == nil || !a.claimed {
		return
	}
	time.AfterFunc(e.h.opts.SockJS.DisconnectDelay+time.Second, func() {
		e.mu.Lock()
		if e.sessions[id] == a {
			delete(e.sessions, id)
		}
		e.mu.Unlock()
	})
}

// maxSendBody bounds one xhr_send or jsonp_send body: the largest client
// message, escaped as JSON (at most 6 bytes per byte), and its framing.
func (e *sockjsEndpoint) maxSendBody() int64 {
	return 6*e.h.opts.MaxClientMessageBytes + 1024
}

// checkSend reads a send request's body within its bound and checks that
// it is what the library will accept (a JSON array of strings, or for
// jsonp_send the same in a form field d): the library would otherwise take
// a body cut by a read error for messages. It puts the body back for the
// library; false when it answered the request itself.
func (e *sockjsEndpoint) checkSend(w http.ResponseWriter, r *http.Request, transport string) bool {
	if r.Body == nil {
		return true
	}
	limit := e.maxSendBody()
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body.Close()
	if err != nil {
		http.Error(w, "stompgate: reading the body failed", http.StatusBadRequest)
		return false
	}
	if int64(len(body)) > limit {
		e.h.opts.Logger.Info("SockJS send refused: body too large", zap.String("remote", r.RemoteAddr), zap.Int64("limit", limit))
		http.Error(w, fmt.Sprintf("stompgate: SockJS send body over %d bytes", limit), http.StatusRequestEntityTooLarge)
		return false
	}
	payload := body
	if transport == "jsonp_send" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			http.Error(w, "Broken JSON encoding.", http.StatusBadRequest)
			return false
		}
		payload = []byte(form.Get("d"))
	}
	var messages []string
	if len(bytes.TrimSpace(payload)) > 0 && json.Unmarshal(payload, &messages) != nil {
		http.Error(w, "Broken JSON encoding.", http.StatusBadRequest)
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return true
}

// started is the library's session handler: the session has a receiver,
// and becomes a proxied session.
func (e *sockjsEndpoint) started(s sockjs.Session) {
	if !e.claim(s.ID()) {
		_ = s.Close(websocket.CloseTryAgainLater, "stompgate: session not admitted")
		return
	}
	e.bridge(libClient{s}, s.Request(), s.ID(), "sockjs/"+receiverName(s.ReceiverType()))
}

// upstreamURL is the broker's WebSocket URL for a SockJS session under this
// prefix: the prefix plus the suffix, with the client request's query.
func (e *sockjsEndpoint) upstreamURL(r *http.Request) *url.URL {
	in := &url.URL{Path: e.prefix + e.h.opts.SockJS.UpstreamSuffix, RawQuery: r.URL.RawQuery}
	return targetURL(e.h.opts.Upstream, in)
}

// stompSubprotocols are offered to the broker for a SockJS client, which
// negotiates none itself: the broker sees what a STOMP WebSocket client
// offers.
var stompSubprotocols = []string{"v12.stomp", "v11.stomp", "v10.stomp"}

// bridge dials the broker for a SockJS session and runs the session until
// it ends. A failed dial ends the SockJS session with 1011 and the reason.
func (e *sockjsEndpoint) bridge(client sockjsClient, r *http.Request, id, transport string) {
	h := e.h
	start := time.Now()
	target := e.upstreamURL(r)
	log := h.opts.Logger.With(
		zap.String("remote", r.RemoteAddr),
		zap.String("path", r.URL.Path),
		zap.String("upstream", redactedNoQuery(target)),
	)
	header := h.upstreamHeader(r)
	header.Del("Content-Type")
	header["Sec-Websocket-Protocol"] = stompSubprotocols
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.DialTimeout)
	upConn, resp, err := h.dialer.DialContext(ctx, target.String(), header)
	cancel()
	if err != nil {
		reason := "upstream unreachable"
		result := metrics.HandshakeUpstreamRefused
		switch status, why := dialFailure(err); {
		case resp != nil:
			reason = fmt.Sprintf("upstream refused the handshake with %d", resp.StatusCode)
			result = metrics.HandshakeUpstreamStatus
		case status == http.StatusGatewayTimeout:
			reason, result = why, metrics.HandshakeTimeout
		}
		h.metrics.Handshake(result)
		if h.failLog.allow(sampleKey{msg: "upstream dial failed", reason: reason}) {
			log.Warn("upstream dial failed", zap.String("reason", reason), zap.Error(err), zap.Duration("duration", time.Since(start)), zap.String("transport", transport))
		}
		client.Close(websocket.CloseInternalServerErr, "stompgate: "+reason)
		e.forgetAdmitted(id)
		return
	}
	hc := upConn.NetConn().(*handshakeConn)
	leftover := hc.afterHandshake()
	proxyEnd, bridgeEnd, err := socketPair()
	if err != nil {
		log.Error("SockJS bridge failed", zap.Error(err))
		_ = hc.Close()
		client.Close(websocket.CloseInternalServerErr, "stompgate: internal error")
		e.forgetAdmitted(id)
		return
	}
	h.metrics.Handshake(metrics.HandshakeOK)
	s := newSession(h, "", log, r)
	s.transport = transport
	s.attach(proxyEnd, "", hc.Conn, upConn.Subprotocol(), leftover)
	h.track(s, true)
	s.start(func() {
		h.freeSlot()
		h.track(s, false)
		e.forget(id)
	})
	runBridge(bridgeEnd, client, h.opts.WriteTimeout, h.opts.CloseTimeout)
}

// forgetAdmitted gives back the slot of a session that never ran.
func (e *sockjsEndpoint) forgetAdmitted(id string) {
	e.mu.Lock()
	if a := e.sessions[id]; a != nil {
		delete(e.sessions, id)
		e.h.freeSlot()
	}
	e.mu.Unlock()
}

// libClient is a sockjs-go session as the bridge's client.
type libClient struct{ s sockjs.Session }

func (c libClient) Recv(ctx context.Context) (string, error) { return c.s.RecvCtx(ctx) }
func (c libClient) Send(msg string) error                    { return c.s.Send(msg) }
func (c libClient) Close(code int, reason string)            { _ = c.s.Close(uint32(code), reason) }

func receiverName(t sockjs.ReceiverType) string {
	switch t {
	case sockjs.ReceiverTypeXHR:
		return "xhr"
	case sockjs.ReceiverTypeXHRStreaming:
		return "xhr_streaming"
	case sockjs.ReceiverTypeEventSource:
		return "eventsource"
	case sockjs.ReceiverTypeHtmlFile:
		return "htmlfile"
	case sockjs.ReceiverTypeJSONP:
		return "jsonp"
	}
	return "unknown"
}
