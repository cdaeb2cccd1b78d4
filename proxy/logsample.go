package proxy

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// The per-handshake failure lines (refused handshakes, failed dials,
// upstream refusals, failed client upgrades, failed pass-through
// requests): the first failLogFirst lines of each kind per failLogWindow
// are written, then one summary line per window counts the rest.
const (
	failLogFirst  = 10
	failLogWindow = time.Second
)

// logSampler bounds log lines that a flood would otherwise multiply: 2,000
// refused handshakes were 2,000 lines. Per key, the first `first` lines of
// a window are written and the others only counted; when a window had any
// suppressed, a timer writes one summary line at its end (a timer rather
// than the next line: a flood that stops must still be reported). Metrics
// still count every event. Session lines never go through it.
type logSampler struct {
	log    *zap.Logger
	first  int
	window time.Duration

	mu   sync.Mutex
	keys map[sampleKey]*sampleWindow
}

// sampleKey is one kind of line: its message, status and reason. Each
// comes from a small fixed set (never an address or an error text), so
// the map stays small.
type sampleKey struct {
	msg    string
	status int
	reason string
}

type sampleWindow struct {
	start              time.Time
	logged, suppressed int
}

func newLogSampler(log *zap.Logger, first int, window time.Duration) *logSampler {
	return &logSampler{log: log, first: first, window: window, keys: make(map[sampleKey]*sampleWindow)}
}

// allow reports whether a line of kind k may be written now, and counts it
// otherwise.
func (l *logSampler) allow(k sampleKey) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[k]
	if w == nil {
		w = &sampleWindow{start: now}
		l.keys[k] = w
	} else if w.suppressed == 0 && now.Sub(w.start) >= l.window {
		// A window without suppressed lines ends silently; one with some
		// ends when its summary is written.
		*w = sampleWindow{start: now}
	}
	if w.logged < l.first {
		w.logged++
		return true
	}
	w.suppressed++
	if w.suppressed == 1 {
		time.AfterFunc(w.start.Add(l.window).Sub(now), func() { l.summarize(k) })
	}
	return false
}

// summarize writes the summary of k's window and opens a new one.
func (l *logSampler) summarize(k sampleKey) {
	l.mu.Lock()
	w := l.keys[k]
	delete(l.keys, k)
	l.mu.Unlock()
	fields := []zap.Field{zap.Int("suppressed", w.suppressed), zap.Int("logged", w.logged), zap.Duration("window", l.window)}
	if k.status != 0 {
		fields = append(fields, zap.Int("status", k.status))
	}
	if k.reason != "" {
		fields = append(fields, zap.String("reason", k.reason))
	}
	l.log.Warn(k.msg+" (sampled)", fields...)
}
