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
	claimed    bool
	expire     *time.Timer
	deliveries deliveries
	polls      int  // polls in flight (servePoll), under the endpoint's mu
	ended      bool // the session ended; the id is kept for the disconnect delay
	// streams in flight (serveStream) and when the last one ended, under
	// the endpoint's mu.
	streams     int
	streamEnded time.Time
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

// serves reports whether r belongs to this endpoint's SockJS protocol.
// Other paths under the prefix (Spring's raw /websocket endpoint, say) are
// proxied as usual, and so is a WebSocket upgrade at the prefix itself:
// SockJS has none there (its raw transport is <prefix>/websocket), and a
// broker whose SockJS and raw endpoints share a path (RabbitMQ Web-STOMP's
// /ws) serves its WebSocket clients there.
func (e *sockjsEndpoint) serves(r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, e.prefix)
	if !ok {
		return false
	}
	if rest == "" || rest == "/" {
		return !websocket.IsWebSocketUpgrade(r)
	}
	return rest == "/info" || sockjsIframePath.MatchString(rest) || sockjsSessionPath.MatchString(rest)
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
	if transport == "xhr_send" || transport == "jsonp_send" {
		if e.checkSend(w, r, transport) {
			e.lib.ServeHTTP(w, r)
		}
		return
	}
	if !opensSession(transport, r) {
		// A CORS preflight, or a request the library refuses before any
		// session: it takes no slot.
		e.lib.ServeHTTP(w, r)
		return
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
		e.servePoll(w, r, id)
		return
	}
	e.serveStream(w, r, id)
}

// streamSettle is how long after a session's streaming request ended the
// next one is held back: sockjs-go lets go of the old request on a
// goroutine of its own, and a client reconnecting at once (after the
// response limit) would otherwise be told c[2010,…], which ends its
// session. A poll is retried instead (servePoll); a stream's opening bytes
// are written before the library's refusal, so it cannot be.
const streamSettle = 20 * time.Millisecond

// serveStream serves a streaming request (xhr_streaming, eventsource,
// htmlfile) of session id.
func (e *sockjsEndpoint) serveStream(w http.ResponseWriter, r *http.Request, id string) {
	e.mu.Lock()
	a := e.sessions[id]
	var wait time.Duration
	if a != nil {
		if a.streams == 0 && !a.streamEnded.IsZero() {
			wait = streamSettle - time.Since(a.streamEnded)
		}
		a.streams++
	}
	e.mu.Unlock()
	if a == nil {
		e.lib.ServeHTTP(w, r)
		return
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	e.lib.ServeHTTP(&deliveryWriter{ResponseWriter: w, d: &a.deliveries}, r)
	e.mu.Lock()
	a.streams--
	a.streamEnded = time.Now()
	e.mu.Unlock()
}

// servePoll serves one poll (xhr, jsonp) of session id. sockjs-go detaches
// a poll's receiver from its session on a goroutine of its own after the
// response: a client that polls again at once (as sockjs-client does) can
// find the last poll still attached and be told c[2010,"Another
// connection still open"], which ends its session. When that happens with
// no other poll of the session in flight, the answer is held back and the
// poll served again once the library caught up (within pollRetryFor).
func (e *sockjsEndpoint) servePoll(w http.ResponseWriter, r *http.Request, id string) {
	e.mu.Lock()
	a := e.sessions[id]
	if a != nil {
		a.polls++
	}
	e.mu.Unlock()
	if a == nil {
		e.lib.ServeHTTP(w, r)
		return
	}
	defer func() {
		e.mu.Lock()
		a.polls--
		e.mu.Unlock()
	}()
	deadline := time.Now().Add(pollRetryFor)
	for {
		pw := &pollWriter{header: http.Header{}, d: &a.deliveries}
		e.lib.ServeHTTP(pw, r)
		e.mu.Lock()
		alone := a.polls == 1
		e.mu.Unlock()
		if !pw.busy() || !alone || time.Now().After(deadline) || r.Context().Err() != nil {
			pw.copyTo(w)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// pollRetryFor bounds how long a poll that raced the library's detach of
// the previous one is retried.
const pollRetryFor = 100 * time.Millisecond

// pollWriter holds a poll's whole answer (one frame) until it is known not
// to be the library's mistaken c[2010,…].
type pollWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
	d      *deliveries
}

func (w *pollWriter) Header() http.Header { return w.header }
func (w *pollWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
func (w *pollWriter) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *pollWriter) Flush()                      {}

// busy reports whether the answer is "another connection still open".
func (w *pollWriter) busy() bool {
	return bytes.Contains(w.body.Bytes(), []byte(`c[2010,`))
}

func (w *pollWriter) copyTo(dst http.ResponseWriter) {
	for k, v := range w.header {
		dst.Header()[k] = v
	}
	if w.status != 0 {
		dst.WriteHeader(w.status)
	}
	b := w.body.Bytes()
	if _, err := dst.Write(b); err == nil && bytes.Contains(b, []byte("a[")) {
		w.d.add()
	}
}

// deliveries counts the message frames (a[…]) written to a session's
// receiving requests, whatever the transport's framing around them.
type deliveries struct {
	mu   sync.Mutex
	n    int64
	wake chan struct{} // closed at the next delivery
}

func (d *deliveries) count() (int64, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.wake == nil {
		d.wake = make(chan struct{})
	}
	return d.n, d.wake
}

func (d *deliveries) add() {
	d.mu.Lock()
	d.n++
	if d.wake != nil {
		close(d.wake)
		d.wake = nil
	}
	d.mu.Unlock()
}

// deliveryWriter is a receiving request's response, counting the message
// frames written to it. The library writes each frame with one Write.
type deliveryWriter struct {
	http.ResponseWriter
	d *deliveries
}

func (w *deliveryWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	if err == nil && bytes.Contains(b, []byte("a[")) {
		w.d.add()
	}
	return n, err
}

func (w *deliveryWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// sockjsCallback is what the library accepts as a jsonp or htmlfile
// callback name.
var sockjsCallback = regexp.MustCompile(`^[a-zA-Z0-9_.]+$`)

// opensSession reports whether a request for a receiving transport is one
// the library serves with a session: the transport's own method and, for
// jsonp and htmlfile, a valid callback.
func opensSession(transport string, r *http.Request) bool {
	switch transport {
	case "websocket":
		return true // refused by the upgrader, which gives the slot back
	case "xhr", "xhr_streaming":
		return r.Method == http.MethodPost
	case "eventsource":
		return r.Method == http.MethodGet
	case "jsonp", "htmlfile":
		return r.Method == http.MethodGet && sockjsCallback.MatchString(r.URL.Query().Get("c"))
	}
	return false
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
// the session's own end), after the disconnect delay: until then the
// SockJS session still holds what the proxy wrote last (a drain's ERROR and
// c[1012,…], say) for the client's next request, which must reach it
// rather than be admitted as a new session, and be refused while draining.
func (e *sockjsEndpoint) forget(id string) {
	e.mu.Lock()
	a := e.sessions[id]
	if a != nil && a.claimed {
		a.ended = true
	}
	e.mu.Unlock()
	if a == nil || !a.claimed {
		return
	}
	time.AfterFunc(e.h.opts.SockJS.DisconnectDelay, func() {
		e.mu.Lock()
		if e.sessions[id] == a {
			delete(e.sessions, id)
		}
		e.mu.Unlock()
	})
}

// closing reports whether a session ended within the disconnect delay.
func (e *sockjsEndpoint) closing() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.sessions {
		if a.ended {
			return true
		}
	}
	return false
}

// SockJSClosing reports whether a SockJS session ended within the SockJS
// disconnect delay: its client, when polling, may not have fetched its
// close frame yet (it does with its next request).
func (h *Handler) SockJSClosing() bool {
	for _, e := range h.sockjs {
		if e.closing() {
			return true
		}
	}
	return false
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
	e.mu.Lock()
	a := e.sessions[s.ID()] // claimed: it stays until the session ends
	e.mu.Unlock()
	client := &libClient{s: s, d: &a.deliveries, wait: e.h.opts.SockJS.DisconnectDelay}
	// The library's request has the prefix stripped: the session's path
	// (log line, /debug/sessions) is the one the client asked for.
	r := s.Request()
	if !strings.HasPrefix(r.URL.Path, e.prefix+"/") {
		r = r.Clone(r.Context())
		r.URL.Path = e.prefix + r.URL.Path
		r.URL.RawPath = ""
	}
	e.bridge(client, r, s.ID(), "sockjs/"+receiverName(s.ReceiverType()))
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
//
// sockjs-go queues what is sent while the client has no receiving request
// open (between polls), and drops that queue when the session closes: the
// STOMP ERROR stompgate sends before its close would be lost. So Close
// first waits, for at most the disconnect delay, until a receiving request
// took what was queued (deliveries).
type libClient struct {
	s    sockjs.Session
	d    *deliveries
	wait time.Duration

	queued bool  // the last Send found no receiving request
	mark   int64 // deliveries before it
}

func (c *libClient) Recv(ctx context.Context) (string, error) { return c.s.RecvCtx(ctx) }

// Send is called from the bridge's one sending goroutine, as is Close.
func (c *libClient) Send(msg string) error {
	before, _ := c.d.count()
	if err := c.s.Send(msg); err != nil {
		return err
	}
	if after, _ := c.d.count(); after > before {
		c.queued = false // written to an open request
	} else if !c.queued {
		c.queued, c.mark = true, before
	}
	return nil
}

func (c *libClient) Close(code int, reason string) {
	if c.queued {
		deadline := time.NewTimer(c.wait)
		defer deadline.Stop()
	wait:
		for {
			n, wake := c.d.count()
			if n > c.mark {
				break
			}
			select {
			case <-wake:
			case <-deadline.C:
				break wait
			case <-c.s.Context().Done():
				break wait
			}
		}
	}
	_ = c.s.Close(uint32(code), reason)
}

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
