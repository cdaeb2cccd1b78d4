// Package metrics defines stompgate's Prometheus metrics. Every label has a
// small fixed set of values (never a session id, an address, a user or a
// destination), and every series the proxy touches on a per-message path is
// resolved once, in New, so counting costs one atomic add.
package metrics

import (
	"runtime/debug"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stompgate/stompgate/inspect"
)

// Direction of a message through the proxy.
type Direction int

// Directions, used as label values client_to_upstream and
// upstream_to_client.
const (
	ClientToUpstream Direction = iota
	UpstreamToClient
)

var directionNames = [2]string{"client_to_upstream", "upstream_to_client"}

// Hop is one side of the proxy, used as label values client and upstream.
type Hop int

// Hops.
const (
	HopClient Hop = iota
	HopUpstream
)

var hopNames = [2]string{"client", "upstream"}

// Evidence is what showed that a passed read deadline was a late read, not
// a silent peer (label evidence of stompgate_late_reads_total).
type Evidence int

// Evidences, in the order stompgate looks for them.
const (
	// EvidenceRead: the pump read bytes between the engine's snapshot and
	// its check; the timer and the pump raced.
	EvidenceRead Evidence = iota
	// EvidenceUnread: bytes waited in the socket's receive queue
	// (SIOCINQ): stompgate had not read them in time.
	EvidenceUnread
	// EvidenceKernel: the kernel had received data after the last read
	// stamp (TCP_INFO), though none waited and none was stamped: the pump
	// was held between its read and its stamp, or the bytes came during
	// the check.
	EvidenceKernel
	numEvidences
)

var evidenceNames = [numEvidences]string{"read", "unread", "kernel"}

// String is the evidence's label value.
func (e Evidence) String() string { return evidenceNames[e] }

// Handshake results (label result of stompgate_handshakes_total).
const (
	HandshakeOK              = "ok"
	HandshakeUpstreamRefused = "upstream_refused" // the upstream could not be dialled
	HandshakeUpstreamStatus  = "upstream_status"  // the broker answered other than 101
	HandshakeOriginDenied    = "origin_denied"
	HandshakeLimit           = "limit" // MAX_CONNECTIONS reached, or draining
	HandshakeRateLimited     = "rate_limited"
	HandshakeTimeout         = "timeout" // dialling the upstream timed out
	HandshakeClientFailed    = "client_failed"
)

var handshakeResults = []string{
	HandshakeOK, HandshakeUpstreamRefused, HandshakeUpstreamStatus, HandshakeOriginDenied,
	HandshakeLimit, HandshakeRateLimited, HandshakeTimeout, HandshakeClientFailed,
}

// Liveness failure reasons (label reason of
// stompgate_liveness_failures_total).
const (
	ReasonPongTimeout      = "pong_timeout"
	ReasonHeartbeatTimeout = "heartbeat_timeout"
)

// closeCodes are the codes given their own label value; anything else is
// counted as "other" so a peer cannot create series at will.
var closeCodes = []int{1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}

const numCommands = int(inspect.CmdError) + 1

// Metrics holds stompgate's collectors. A nil *Metrics is not valid; use
// Discard when nothing should be exported.
type Metrics struct {
	// Registry holds these metrics plus the Go and process collectors;
	// serve it with promhttp.HandlerFor.
	Registry *prometheus.Registry

	SessionsActive  prometheus.Gauge
	Draining        prometheus.Gauge
	SessionDuration prometheus.Histogram
	PingsSent       prometheus.Counter
	PongsReceived   prometheus.Counter

	handshakes map[string]prometheus.Counter
	bytes      [2]prometheus.Counter
	messages   [2]prometheus.Counter
	frames     [2][numCommands]prometheus.Counter
	hbSent     [2]prometheus.Counter
	hbRecv     [2]prometheus.Counter
	lateReads  [2][numEvidences]prometheus.Counter
	liveness   *prometheus.CounterVec
	closes     [2]map[string]prometheus.Counter
}

// New creates the metrics and registers them, with the Go and process
// collectors and stompgate_build_info, on a new registry.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{Registry: reg}

	m.SessionsActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "stompgate_sessions_active", Help: "WebSocket sessions currently proxied."})
	m.Draining = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "stompgate_draining", Help: "1 while stompgate is draining (after SIGTERM or POST /drain), else 0."})
	m.SessionDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "stompgate_session_duration_seconds", Help: "How long proxied sessions lasted.",
		// STOMP sessions live from seconds (a failing client) to days.
		Buckets: []float64{1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400},
	})
	m.PingsSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stompgate_pings_sent_total", Help: "WebSocket pings stompgate sent to clients to probe liveness."})
	m.PongsReceived = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stompgate_pongs_received_total", Help: "WebSocket pongs received from clients."})
	f(m.SessionsActive)
	f(m.Draining)
	f(m.SessionDuration)
	f(m.PingsSent)
	f(m.PongsReceived)

	hs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_handshakes_total", Help: "Client WebSocket handshakes by result."}, []string{"result"})
	m.handshakes = make(map[string]prometheus.Counter, len(handshakeResults))
	for _, r := range handshakeResults {
		m.handshakes[r] = hs.WithLabelValues(r)
	}
	f(hs)

	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_bytes_total", Help: "WebSocket payload bytes read, by direction."}, []string{"direction"})
	msgs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_messages_total", Help: "WebSocket messages read, by direction."}, []string{"direction"})
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_frames_total", Help: "STOMP frames seen, by direction and command (heart-beats not included)."}, []string{"direction", "command"})
	for d, dn := range directionNames {
		m.bytes[d] = bytes.WithLabelValues(dn)
		m.messages[d] = msgs.WithLabelValues(dn)
		for c := range numCommands {
			m.frames[d][c] = frames.WithLabelValues(dn, inspect.Command(c).String())
		}
	}
	f(bytes)
	f(msgs)
	f(frames)

	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_heartbeats_sent_total", Help: "STOMP heart-beats (EOLs) stompgate generated, by the hop they were sent on."}, []string{"hop"})
	recv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_heartbeats_received_total", Help: "STOMP heart-beats (EOLs) received, by the hop they came from."}, []string{"hop"})
	m.liveness = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_liveness_failures_total", Help: "Peers declared dead by the liveness engine, by hop and reason."}, []string{"hop", "reason"})
	late := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_late_reads_total", Help: "Read deadlines that passed after the peer's bytes had reached the host: stompgate read them late (a host short of CPU), and the peer was not declared dead. By the hop read from and the evidence that saved the deadline: read (the pump read during the check), unread (bytes waited in the receive queue), kernel (the kernel's record of the last receipt)."}, []string{"hop", "evidence"})
	closes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stompgate_closes_total", Help: "Ended legs by leg and the close code that ended them (1006: the connection was lost)."}, []string{"leg", "code"})
	for h, hn := range hopNames {
		m.hbSent[h] = sent.WithLabelValues(hn)
		m.hbRecv[h] = recv.WithLabelValues(hn)
		for e, en := range evidenceNames {
			m.lateReads[h][e] = late.WithLabelValues(hn, en)
		}
		m.closes[h] = make(map[string]prometheus.Counter, len(closeCodes)+1)
		for _, c := range closeCodes {
			m.closes[h][strconv.Itoa(c)] = closes.WithLabelValues(hn, strconv.Itoa(c))
		}
		m.closes[h]["other"] = closes.WithLabelValues(hn, "other")
		for _, r := range []string{ReasonPongTimeout, ReasonHeartbeatTimeout} {
			m.liveness.WithLabelValues(hn, r)
		}
	}
	f(sent)
	f(recv)
	f(m.liveness)
	f(late)
	f(closes)

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stompgate_build_info", Help: "Always 1; labels say which stompgate build is running."}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, goVersion()).Set(1)
	f(buildInfo)

	// Besides the defaults, the scheduler's latencies: how long goroutines
	// waited to run. Every heart-beat stompgate sends and every deadline it
	// checks is a goroutine or timer that has to get a CPU, so a sidecar
	// starved of CPU shows here before brokers start closing sessions.
	f(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)))
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Discard returns metrics registered nowhere but a private registry: for
// tests and for embedding the proxy without exporting anything.
func Discard() *Metrics { return New("none") }

// Handshake counts one client handshake with its result (one of the
// Handshake* constants).
func (m *Metrics) Handshake(result string) {
	if c, ok := m.handshakes[result]; ok {
		c.Inc()
	}
}

// Messages counts msgs WebSocket messages of bytes payload bytes in all,
// read in direction d. The proxy adds a read's worth at a time.
func (m *Metrics) Messages(d Direction, msgs, bytes int64) {
	m.messages[d].Add(float64(msgs))
	m.bytes[d].Add(float64(bytes))
}

// Frames counts n STOMP frames of command c.
func (m *Metrics) Frames(d Direction, c inspect.Command, n int64) {
	if int(c) < numCommands {
		m.frames[d][c].Add(float64(n))
	}
}

// HeartbeatSent counts a heart-beat stompgate generated on hop h.
func (m *Metrics) HeartbeatSent(h Hop) { m.hbSent[h].Inc() }

// HeartbeatReceived counts a heart-beat received from hop h.
func (m *Metrics) HeartbeatReceived(h Hop) { m.hbRecv[h].Inc() }

// LateRead counts a read deadline on hop h that passed after the peer's
// bytes had reached the host, as shown by e.
func (m *Metrics) LateRead(h Hop, e Evidence) { m.lateReads[h][e].Inc() }

// LivenessFailure counts a peer declared dead on hop h for reason (one of
// the Reason* constants).
func (m *Metrics) LivenessFailure(h Hop, reason string) {
	m.liveness.WithLabelValues(hopNames[h], reason).Inc()
}

// Close counts a leg that ended with code.
func (m *Metrics) Close(h Hop, code int) {
	c, ok := m.closes[h][strconv.Itoa(code)]
	if !ok {
		c = m.closes[h]["other"]
	}
	c.Inc()
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}
