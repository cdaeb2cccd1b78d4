package springbroker

import (
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/stompgate/stompgate/internal/tcpinfo"
)

// Defaults, each taken from Spring.
const (
	defaultPath = "/ws"
	// StompSubProtocolHandler.messageSizeLimit = 64 * 1024
	// (StompSubProtocolHandler.java:100), the BufferingStompDecoder limit.
	defaultMessageSizeLimit = 64 * 1024
	// StompSubProtocolHandler.MINIMUM_WEBSOCKET_MESSAGE_SIZE = 16 * 1024 + 256
	// (:83); afterSessionStarted raises the container's text message limit to
	// it (:663-665). Tomcat's own default is 8K, so on Tomcat this is the
	// effective per-WebSocket-message limit.
	defaultWebSocketMessageSizeLimit = 16*1024 + 256
	// SubProtocolWebSocketHandler sendTimeLimit = 10 * 1000 (:93); used here
	// only as a write deadline.
	sendTimeLimit = 10 * time.Second
	// How long a close handshake may take before the TCP connection is
	// dropped. Not Spring's; keeps Close bounded.
	closeTimeout = time.Second
)

// Config configures a Broker. The zero value is Spring's simple broker
// without a TaskScheduler: no heart-beats.
type Config struct {
	// HeartBeat is SimpleBrokerMessageHandler.setHeartbeatValue {sx, sy}
	// (SimpleBrokerMessageHandler.java:222-227): sx how often the server can
	// send, sy how often it wants to hear from the client. Zero means no
	// TaskScheduler (CONNECTED heart-beat:0,0, no heart-beat task). A
	// non-zero value implies the TaskScheduler Spring requires for it
	// (:265-269). Values are used in whole milliseconds, like Spring's.
	HeartBeat [2]time.Duration
	// Path of the WebSocket endpoint; default "/ws". Other paths get 404.
	Path string
	// MessageSizeLimit is the BufferingStompDecoder buffer limit; default 64K
	// (StompSubProtocolHandler.setMessageSizeLimit).
	MessageSizeLimit int
	// WebSocketMessageSizeLimit is the container's limit for one WebSocket
	// message; default 16*1024+256 (Tomcat behind Spring). A larger message
	// gets close 1009, as from Tomcat. Negative means no limit.
	WebSocketMessageSizeLimit int
	// Subprotocols the endpoint supports; default v10.stomp, v11.stomp,
	// v12.stomp (StompSubProtocolHandler.getSupportedProtocols, :217-220).
	Subprotocols []string
	// DestinationPrefixes of the simple broker; default /topic and /queue
	// (enableSimpleBroker("/topic", "/queue")).
	DestinationPrefixes []string
	// CheckOrigin decides on the Origin header; nil allows requests without
	// Origin and same-origin requests (gorilla's default, which matches
	// Spring's default same-origin policy).
	CheckOrigin func(r *http.Request) bool
	// Logger, optional.
	Logger *zap.Logger
	// OnEvent, optional, is called synchronously from the broker's
	// goroutines with every Event. It must not block for long and must not
	// call Broker.Close.
	OnEvent func(Event)
}

// Broker is the test double of a Spring STOMP endpoint with the simple broker.
type Broker struct {
	cfg      Config
	log      *zap.Logger
	sx, sy   int64 // server heart-beat, ms
	period   time.Duration
	upgrader websocket.Upgrader
	msgID    atomic.Int64

	mu     sync.Mutex
	closed bool
	// conns is SubProtocolWebSocketHandler.sessions: open WebSocket sessions.
	conns map[string]*session
	// sessions is SimpleBrokerMessageHandler.sessions: connected STOMP
	// sessions with their heart-beat state.
	sessions map[string]*brokerSession
	// subs is the DefaultSubscriptionRegistry: session id -> subscriptions.
	subs map[string][]subscription

	stop chan struct{}
	wg   sync.WaitGroup
	// outbound is the clientOutboundChannel's executor for heart-beats:
	// HeartbeatTask.run sends them through getClientOutboundChannel()
	// (SimpleBrokerMessageHandler :525-527), an ExecutorSubscribableChannel
	// whose default executor (TaskExecutorRegistration's constructor) has
	// availableProcessors × 2 threads and an unbounded queue. A pass over
	// the sessions therefore only enqueues, and the next pass is scheduled
	// without waiting for the writes.
	outbound chan *session
}

// brokerSession is SimpleBrokerMessageHandler.SessionInfo (:431-505).
type brokerSession struct {
	s             *session
	readInterval  time.Duration
	writeInterval time.Duration
	lastRead      time.Time // guarded by Broker.mu
	lastWrite     time.Time // guarded by Broker.mu
}

type subscription struct {
	id          string
	destination string
}

// New creates a broker and starts its heart-beat task if HeartBeat is set.
// It panics on a negative heart-beat, as setHeartbeatValue throws
// IllegalArgumentException "Invalid heart-beat" (:222-227).
func New(cfg Config) *Broker {
	if cfg.HeartBeat[0] < 0 || cfg.HeartBeat[1] < 0 {
		panic(fmt.Sprintf("springbroker: Invalid heart-beat: [%d, %d]", cfg.HeartBeat[0].Milliseconds(), cfg.HeartBeat[1].Milliseconds()))
	}
	if cfg.Path == "" {
		cfg.Path = defaultPath
	}
	if cfg.MessageSizeLimit <= 0 {
		cfg.MessageSizeLimit = defaultMessageSizeLimit
	}
	if cfg.WebSocketMessageSizeLimit == 0 {
		cfg.WebSocketMessageSizeLimit = defaultWebSocketMessageSizeLimit
	}
	if len(cfg.Subprotocols) == 0 {
		cfg.Subprotocols = []string{"v10.stomp", "v11.stomp", "v12.stomp"}
	}
	if len(cfg.DestinationPrefixes) == 0 {
		cfg.DestinationPrefixes = []string{"/topic", "/queue"}
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	b := &Broker{
		cfg:      cfg,
		log:      log,
		sx:       cfg.HeartBeat[0].Milliseconds(),
		sy:       cfg.HeartBeat[1].Milliseconds(),
		conns:    map[string]*session{},
		sessions: map[string]*brokerSession{},
		subs:     map[string][]subscription{},
		stop:     make(chan struct{}),
	}
	// Subprotocols are chosen by selectProtocol and handed to gorilla in the
	// response header; gorilla's own selection prefers the server's order,
	// Spring's the client's.
	b.upgrader = websocket.Upgrader{CheckOrigin: cfg.CheckOrigin}

	// SimpleBrokerMessageHandler.initHeartbeatTaskDelay (:272-282):
	// min(sx, sy) when both are set, else the non-zero one.
	switch {
	case b.sx > 0 && b.sy > 0:
		b.period = time.Duration(min(b.sx, b.sy)) * time.Millisecond
	case b.sx > 0:
		b.period = time.Duration(b.sx) * time.Millisecond
	default:
		b.period = time.Duration(b.sy) * time.Millisecond
	}
	if b.period > 0 {
		// startInternal (:257-270): one task for all sessions,
		// scheduleWithFixedDelay on the TaskScheduler.
		b.outbound = make(chan *session, 1<<16)
		for range 2 * runtime.NumCPU() {
			b.wg.Add(1)
			go b.outboundWorker()
		}
		b.wg.Add(1)
		go b.heartbeatTask()
	}
	return b
}

// ServeHTTP serves the WebSocket endpoint at Config.Path; other paths get 404.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != b.cfg.Path {
		http.NotFound(w, r)
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		http.Error(w, "broker closed", http.StatusServiceUnavailable)
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	defer b.wg.Done()

	var respHeader http.Header
	if p := selectProtocol(requestedProtocols(r), b.cfg.Subprotocols); p != "" {
		respHeader = http.Header{"Sec-Websocket-Protocol": {p}}
	}
	conn, err := b.upgrader.Upgrade(w, r, respHeader)
	if err != nil {
		b.log.Debug("handshake failed", zap.Error(err))
		return
	}
	s := newSession(b, conn, r.RemoteAddr)

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		s.close(websocket.CloseGoingAway)
		_ = conn.Close()
		return
	}
	b.conns[s.id] = s
	b.mu.Unlock()

	b.emit(Event{Kind: EventOpen, Time: time.Now(), Session: s.id, Remote: s.remote, Subprotocol: conn.Subprotocol()})
	b.log.Debug("session opened", zap.String("session", s.id), zap.String("remote", s.remote))
	s.run()
}

// requestedProtocols reads every Sec-WebSocket-Protocol header line, as
// WebSocketHttpHeaders.getSecWebSocketProtocol does.
func requestedProtocols(r *http.Request) []string {
	var out []string
	for _, line := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(line, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// selectProtocol is AbstractHandshakeHandler.selectProtocol
// (AbstractHandshakeHandler.java:297-308): the first protocol in the CLIENT's
// order that the handler supports, compared lower-cased, returned as the
// client spelled it. No match: no Sec-WebSocket-Protocol, handshake still
// succeeds.
func selectProtocol(requested, supported []string) string {
	for _, p := range requested {
		lp := strings.ToLower(p)
		for _, s := range supported {
			if s == lp {
				return p
			}
		}
	}
	return ""
}

// Close stops the heart-beat task, closes every WebSocket session with 1001
// (SubProtocolWebSocketHandler.stop closes with CloseStatus.GOING_AWAY,
// :296-313) and waits for all goroutines. A client that does not answer the
// close frame is dropped after about a second.
func (b *Broker) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return
	}
	b.closed = true
	conns := make([]*session, 0, len(b.conns))
	for _, s := range b.conns {
		conns = append(conns, s)
	}
	b.mu.Unlock()
	close(b.stop)
	for _, s := range conns {
		s.close(websocket.CloseGoingAway)
	}
	b.wg.Wait()
}

// Publish sends an application message through the broker channel, like
// SimpMessagingTemplate.convertAndSend(destination, bytes) with no headers.
// It carries no session id, so it is nobody's read activity
// (SimpleBrokerMessageHandler.updateSessionReadTime needs a session id,
// :352-359; spring-projects/spring-framework#24737). It does update the
// receiving sessions' lastWriteTime (sendMessageToSubscribers, :418).
func (b *Broker) Publish(destination string, body []byte) {
	if !b.checkDestinationPrefix(destination) {
		return
	}
	b.sendMessageToSubscribers(destination, nil, "", append([]byte{}, body...))
}

// Sessions returns the number of STOMP sessions the simple broker knows:
// CONNECTed and not yet disconnected or timed out.
func (b *Broker) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// Connections returns the number of open WebSocket sessions.
func (b *Broker) Connections() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// Subscriptions returns the number of subscriptions in the registry.
func (b *Broker) Subscriptions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.subs {
		n += len(l)
	}
	return n
}

func (b *Broker) emit(e Event) {
	if b.cfg.OnEvent != nil {
		b.cfg.OnEvent(e)
	}
}

// checkDestinationPrefix is AbstractBrokerMessageHandler.checkDestinationPrefix
// (AbstractBrokerMessageHandler.java:314-327) with prefixes configured: a
// plain startsWith.
func (b *Broker) checkDestinationPrefix(destination string) bool {
	for _, p := range b.cfg.DestinationPrefixes {
		if strings.HasPrefix(destination, p) {
			return true
		}
	}
	return false
}

// handleFromClient is the per-message part of
// StompSubProtocolHandler.handleMessageFromClient (:292-377), then the
// clientInboundChannel -> SimpleBrokerMessageHandler.handleMessageInternal
// step. A returned error becomes ERROR + close 1002 (handleError ->
// sendErrorMessage, :385-425). Runs on the session's reader goroutine.
func (b *Broker) handleFromClient(s *session, m inbound) error {
	command := ""
	if !m.heartbeat {
		command = m.frame.Command
	}
	isConnect := command == "CONNECT" || command == "STOMP"
	if isConnect {
		// :305-310 (Spring >= 6.2.12, gh-35591): a second CONNECT on the
		// same WebSocket session fails the "Session already exists"
		// assertion; the failed CONNECT then removes the session (:373-376).
		if s.stompSession {
			s.stompSession = false
			return fmt.Errorf("Session already exists") //lint:ignore ST1005 Spring's exact text reaches the client
		}
		s.stompSession = true
	} else if !s.stompSession {
		// :312-314 (Spring >= 6.2.12, gh-35591): anything before CONNECT,
		// heart-beat EOLs included, fails "Unknown session: <id>". Before
		// 6.2.12 such messages went to the broker and were ignored.
		return fmt.Errorf("Unknown session: %s", s.id) //lint:ignore ST1005 Spring's exact text reaches the client
	}
	// :319 — every message's heart-beat header goes through getHeartbeat.
	var hbRaw string
	var hbPresent bool
	if !m.heartbeat {
		hbRaw, hbPresent = m.frame.Header("heart-beat")
	}
	hb, err := parseHeartbeat(hbRaw, hbPresent)
	if err != nil {
		if isConnect {
			s.stompSession = false
		}
		return err
	}
	b.handleMessageInternal(s, m, command, hb)
	return nil
}

// handleMessageInternal is SimpleBrokerMessageHandler.handleMessageInternal
// (:292-350).
func (b *Broker) handleMessageInternal(s *session, m inbound, command string, hb [2]int64) {
	now := time.Now()
	// :298 updateSessionReadTime — before the destination check, for every
	// message with this session id: heart-beats, SEND to /app/**, anything.
	b.mu.Lock()
	if bs := b.sessions[s.id]; bs != nil {
		bs.lastRead = now
	}
	b.mu.Unlock()
	if m.heartbeat {
		return
	}
	f := m.frame
	// :300-302 checkDestinationPrefix; a message without destination passes.
	destination, hasDest := f.Header("destination")
	if hasDest && !b.checkDestinationPrefix(destination) {
		return
	}
	switch command {
	case "SEND", "MESSAGE": // SimpMessageType.MESSAGE (StompCommand.java:36,46)
		if !hasDest {
			return // AbstractSubscriptionRegistry.findSubscriptions: no destination
		}
		b.sendMessageToSubscribers(destination, newNativeHeaders(f.Headers), m.contentType, f.Body)
	case "CONNECT", "STOMP":
		b.handleConnect(s, f, hb, now)
	case "DISCONNECT":
		b.handleDisconnect(s.id)
		// StompSubProtocolHandler.getStompHeaderAccessor (:564-574): the
		// DISCONNECT_ACK becomes RECEIPT when the DISCONNECT had a receipt
		// header, else ERROR "Session closed." (SPR-12288, 4.1.2).
		if receipt, ok := f.Header("receipt"); ok {
			hs := newNativeHeaders(nil)
			hs.set("receipt-id", receipt)
			// The socket stays open after the RECEIPT: Spring does not
			// close it; the client is expected to.
			s.sendFrame("RECEIPT", hs, nil, false)
		} else {
			s.sendError("Session closed.")
		}
	case "SUBSCRIBE":
		id, okID := f.Header("id")
		if !okID || !hasDest {
			// AbstractSubscriptionRegistry.registerSubscription (:47-80)
			// logs and ignores.
			b.log.Error("SUBSCRIBE without id or destination ignored", zap.String("session", s.id))
			return
		}
		b.mu.Lock()
		dup := false
		for _, sub := range b.subs[s.id] {
			if sub.id == id {
				dup = true // DefaultSubscriptionRegistry SessionInfo.addSubscription: putIfAbsent
				break
			}
		}
		if !dup {
			b.subs[s.id] = append(b.subs[s.id], subscription{id: id, destination: destination})
		}
		b.mu.Unlock()
	case "UNSUBSCRIBE":
		id, ok := f.Header("id")
		if !ok {
			b.log.Error("UNSUBSCRIBE without id ignored", zap.String("session", s.id))
			return
		}
		b.mu.Lock()
		l := b.subs[s.id]
		for i, sub := range l {
			if sub.id == id {
				l = append(l[:i:i], l[i+1:]...)
				break
			}
		}
		if len(l) == 0 {
			delete(b.subs, s.id)
		} else {
			b.subs[s.id] = l
		}
		b.mu.Unlock()
	default:
		// ACK, NACK, BEGIN, COMMIT, ABORT, ...: SimpMessageType.OTHER,
		// ignored by the simple broker (only the read time was updated).
	}
}

// handleConnect is the CONNECT branch of handleMessageInternal (:309-334) and
// StompSubProtocolHandler.convertConnectAcktoStompConnected (:589-618).
func (b *Broker) handleConnect(s *session, f *Frame, hb [2]int64, now time.Time) {
	b.mu.Lock()
	if _, ok := b.sessions[s.id]; ok {
		b.mu.Unlock()
		b.log.Warn("Ignoring CONNECT in session. Already connected.", zap.String("session", s.id))
		return
	}
	cx, cy := hb[0], hb[1]
	bs := &brokerSession{s: s, lastRead: now, lastWrite: now}
	// SessionInfo constructor (:451-468), HEARTBEAT_MULTIPLIER = 3.
	if cx > 0 && b.sy > 0 {
		bs.readInterval = time.Duration(max(cx, b.sy)*3) * time.Millisecond
	}
	if cy > 0 && b.sx > 0 {
		bs.writeInterval = time.Duration(max(cy, b.sx)) * time.Millisecond
	}
	b.sessions[s.id] = bs
	b.mu.Unlock()

	// Version: the first of {"1.2","1.1","1.0"} (:91) contained in the
	// accept-version set, split on commas and NOT trimmed
	// (StringUtils.commaDelimitedListToSet). None — including a CONNECT
	// without accept-version — throws IllegalArgumentException in
	// handleMessageToClient, which SubProtocolWebSocketHandler.handleMessage
	// (:383-404) only logs: no CONNECTED is sent and the session stays open
	// (seen from clients as kuraydev/StompClientLib#35).
	accept, _ := f.Header("accept-version")
	var set []string
	if _, ok := f.Header("accept-version"); ok {
		for _, v := range strings.Split(accept, ",") {
			if !contains(set, v) {
				set = append(set, v)
			}
		}
	}
	version := ""
	for _, v := range []string{"1.2", "1.1", "1.0"} {
		if contains(set, v) {
			version = v
			break
		}
	}
	if version == "" {
		b.log.Debug("Failed to send message to client",
			zap.String("session", s.id),
			zap.String("error", "Unsupported STOMP version '["+strings.Join(set, ", ")+"]'"))
		return
	}
	// CONNECTED carries version and heart-beat only: the CONNECT_ACK's
	// heart-beat is the configured value, or 0,0 without a scheduler
	// (:609-615). No "session" or "server" header (and "user-name" only with
	// a Principal, which this double has not).
	hs := newNativeHeaders(nil)
	hs.set("version", version)
	hs.set("heart-beat", strconv.FormatInt(b.sx, 10)+","+strconv.FormatInt(b.sy, 10))
	s.sendFrame("CONNECTED", hs, nil, false)
}

func contains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// handleDisconnect is SimpleBrokerMessageHandler.handleDisconnect (:375-389)
// minus the DISCONNECT_ACK, which the caller turns into a frame.
func (b *Broker) handleDisconnect(id string) {
	b.mu.Lock()
	delete(b.sessions, id)
	delete(b.subs, id)
	b.mu.Unlock()
}

// afterSessionEnded is StompSubProtocolHandler.afterSessionEnded (:669-688):
// the WebSocket is gone, a DISCONNECT goes to the broker (handleDisconnect),
// and its DISCONNECT_ACK finds no session to go to.
func (b *Broker) afterSessionEnded(s *session) {
	b.mu.Lock()
	delete(b.conns, s.id)
	b.mu.Unlock()
	b.handleDisconnect(s.id)
}

// sendMessageToSubscribers is SimpleBrokerMessageHandler.sendMessageToSubscribers
// (:391-423), plus the header conversion of StompSubProtocolHandler
// (getStompHeaderAccessor -> StompHeaderAccessor.wrap and
// updateStompCommandAsServerMessage, StompHeaderAccessor.java:168-225).
// src is the SEND frame's native headers (nil for Publish); contentType the
// parsed content-type ("" if none).
func (b *Broker) sendMessageToSubscribers(destination string, src *nativeHeaders, contentType string, body []byte) {
	type target struct {
		s     *session
		subID string
	}
	var targets []target
	now := time.Now()
	b.mu.Lock()
	for sid, l := range b.subs {
		for _, sub := range l {
			if sub.destination != destination {
				continue
			}
			bs := b.sessions[sid]
			if bs == nil {
				continue // :407-408 — no SessionInfo, nothing sent
			}
			targets = append(targets, target{bs.s, sub.id})
			// :417-419 — lastWriteTime is updated here and only here.
			bs.lastWrite = now
		}
	}
	b.mu.Unlock()

	for _, t := range targets {
		// copyHeadersIfAbsent copies the SEND's native headers, receipt
		// and custom headers included. StompHeaderAccessor.wrap then sets
		// destination and content-type in place (normalised MimeType),
		// updateStompCommandAsServerMessage adds subscription and, when
		// absent, message-id = <sessionId>-<counter> (:221-224).
		hs := newNativeHeaders(nil)
		if src != nil {
			for _, n := range src.names {
				for _, v := range src.values[n] {
					hs.add(n, v)
				}
			}
		}
		hs.set("destination", destination)
		if contentType != "" {
			hs.set("content-type", contentType)
		}
		hs.set("subscription", t.subID)
		if !hs.has("message-id") {
			hs.set("message-id", t.s.id+"-"+strconv.FormatInt(b.msgID.Add(1)-1, 10))
		}
		// StompSubProtocolHandler.sendToClient (:521-528): binary when
		// the payload is non-empty and the content type is compatible with
		// application/octet-stream.
		t.s.sendFrame("MESSAGE", hs, body, len(body) > 0 && octetStreamCompatible(contentType))
	}
}

// octetStreamCompatible approximates
// MimeTypeUtils.APPLICATION_OCTET_STREAM.isCompatibleWith(contentType).
func octetStreamCompatible(ct string) bool {
	if ct == "" {
		return false
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	typ, sub, _ := strings.Cut(ct, "/")
	return (typ == "*" || typ == "application") && (sub == "*" || sub == "octet-stream")
}

// heartbeatTask is SimpleBrokerMessageHandler.HeartbeatTask (:508-531) run
// with a fixed delay, first run at once (scheduleWithFixedDelay, :262).
func (b *Broker) heartbeatTask() {
	defer b.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.heartbeatTick(time.Now())
		t.Reset(b.period)
	}
}

func (b *Broker) heartbeatTick(now time.Time) {
	type expired struct {
		s       *session
		idle    time.Duration
		allowed time.Duration
	}
	var timeouts []expired
	var beats []*session
	b.mu.Lock()
	for id, bs := range b.sessions {
		// :514-516 — read side: (now - lastReadTime) > readInterval ends the
		// session with a DISCONNECT_ACK without receipt, i.e. ERROR
		// "Session closed." and close 1002.
		if bs.readInterval > 0 && now.Sub(bs.lastRead) > bs.readInterval {
			timeouts = append(timeouts, expired{bs.s, now.Sub(bs.lastRead), bs.readInterval})
			delete(b.sessions, id)
			delete(b.subs, id)
			// Spring then still runs the write check for this SessionInfo;
			// whatever it sends goes to a closed session. Skipped here.
			continue
		}
		// :517-528 — write side: (now - lastWriteTime) > writeInterval
		// sends a heart-beat. Sending it does NOT update lastWriteTime (only
		// sendMessageToSubscribers does), so once a session has been idle
		// for writeInterval it gets "\n" on EVERY tick until a MESSAGE is
		// sent to it — more often than negotiated.
		if bs.writeInterval > 0 && now.Sub(bs.lastWrite) > bs.writeInterval {
			beats = append(beats, bs.s)
		}
	}
	b.mu.Unlock()
	for _, e := range timeouts {
		// Not Spring: a diagnostic for the event only. It tells a client
		// that sent nothing (the kernel received nothing either) from a
		// broker too busy to read what arrived.
		var seen string
		if d, n, ok := tcpinfo.PeerSilence(e.s.conn.NetConn()); ok {
			seen = fmt.Sprintf("; the kernel last received bytes from the client %v ago, %d bytes unread", d, n)
		}
		b.emit(Event{Kind: EventReadTimeout, Time: now, Session: e.s.id, Remote: e.s.remote,
			Err: fmt.Sprintf("no STOMP frame or heart-beat for %v (read interval %v)%s", e.idle.Round(time.Millisecond), e.allowed, seen)})
		e.s.sendError("Session closed.")
	}
	for _, s := range beats {
		select {
		case b.outbound <- s:
		default:
			// The queue is unbounded in Spring: past this one's capacity,
			// the send runs on its own goroutine.
			go s.sendHeartbeat()
		}
	}
}

// outboundWorker is one thread of the clientOutboundChannel's executor.
func (b *Broker) outboundWorker() {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case s := <-b.outbound:
			s.sendHeartbeat()
		}
	}
}
