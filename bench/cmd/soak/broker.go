package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stompgate/stompgate/internal/springbroker"
)

// brokerStats is what `soak broker` serves at /soak/stats.
type brokerStats struct {
	Sessions      int   `json:"sessions"`
	Connections   int   `json:"connections"`
	Subscriptions int   `json:"subscriptions"`
	Goroutines    int   `json:"goroutines"`
	Opened        int64 `json:"opened"`
	Closed        int64 `json:"closed"`
	ReadTimeouts  int64 `json:"read_timeouts"`
	ErrorsSent    int64 `json:"errors_sent"`
	// Closes counts ended sessions by "sent <code>, peer <code>, <reason>".
	Closes map[string]int64 `json:"closes"`
	// FirstEnds describes the first ended sessions, read timeouts and
	// ERRORs sent, with their wall-clock time.
	FirstEnds []string `json:"first_ends"`
	// Writes: the longest time a session went without any write from the
	// broker (frame or heart-beat), i.e. the upstream silence stompgate
	// sees, and how many such silences exceeded 2 s and 3 s.
	MaxSilenceMs   int64  `json:"max_silence_ms"`
	MaxSilenceAt   string `json:"max_silence_at"`
	SilencesOver2s int64  `json:"silences_over_2s"`
	SilencesOver3s int64  `json:"silences_over_3s"`
	// The heart-beat task: its passes (runs of heart-beats with less than
	// 300 ms between them), the longest pass and the longest time between
	// the starts of two passes (period + pass, Spring's fixed delay).
	Passes           int64            `json:"hb_passes"`
	MaxPassMs        int64            `json:"hb_max_pass_ms"`
	MaxPassGapMs     int64            `json:"hb_max_pass_gap_ms"`
	MaxPassGapAt     string           `json:"hb_max_pass_gap_at"`
	SilencesBySecond map[string]int64 `json:"silences_over_2s_by_second,omitempty"`
}

// brokerRecorder counts the broker events the soak cares about. OnEvent is
// called synchronously for every message, so the common kinds cost one
// switch.
type brokerRecorder struct {
	opened, closed, readTimeouts, errorsSent atomic.Int64

	mu     sync.Mutex
	closes map[string]int64
	first  []string

	wmu                 sync.Mutex
	lastWrite           map[string]time.Time
	maxSilence          time.Duration
	maxSilenceAt        time.Time
	over2, over3        int64
	over2By             map[string]int64 // by wall-clock second
	passStart, lastBeat time.Time
	passes              int64
	maxPass, maxPassGap time.Duration
	maxPassGapAt        time.Time
}

// wrote records a write to a session (a frame or a heart-beat).
func (r *brokerRecorder) wrote(e springbroker.Event, beat bool) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	t := e.Time
	if prev, ok := r.lastWrite[e.Session]; ok {
		if d := t.Sub(prev); d > r.maxSilence {
			r.maxSilence, r.maxSilenceAt = d, t
		}
		if d := t.Sub(prev); d > 2*time.Second {
			r.over2++
			if len(r.over2By) < 1000 {
				r.over2By[t.Format("15:04:05")]++
			}
			if d > 3*time.Second {
				r.over3++
			}
		}
	}
	r.lastWrite[e.Session] = t
	if !beat {
		return
	}
	// Heart-beats come from the one heart-beat task, in passes.
	if r.lastBeat.IsZero() || t.Sub(r.lastBeat) > 300*time.Millisecond {
		if !r.passStart.IsZero() {
			r.maxPass = max(r.maxPass, r.lastBeat.Sub(r.passStart))
			if g := t.Sub(r.passStart); g > r.maxPassGap {
				r.maxPassGap, r.maxPassGapAt = g, t
			}
		}
		r.passStart = t
		r.passes++
	}
	r.lastBeat = t
}

const maxRecordedEnds = 50

func (r *brokerRecorder) note(e springbroker.Event, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Kind == springbroker.EventClosed {
		r.closes[what]++
	}
	if len(r.first) < maxRecordedEnds {
		r.first = append(r.first, fmt.Sprintf("%s %s session %s remote %s: %s",
			e.Time.Format("15:04:05.000"), e.Kind, e.Session, e.Remote, what))
	}
}

func (r *brokerRecorder) onEvent(e springbroker.Event) {
	switch e.Kind {
	case springbroker.EventOpen:
		r.opened.Add(1)
	case springbroker.EventSentHeartbeat:
		r.wrote(e, true)
	case springbroker.EventClosed:
		r.closed.Add(1)
		r.note(e, fmt.Sprintf("sent %d, peer %d, %s", e.CloseCode, e.PeerCloseCode, e.Err))
		r.wmu.Lock()
		delete(r.lastWrite, e.Session)
		r.wmu.Unlock()
	case springbroker.EventReadTimeout:
		r.readTimeouts.Add(1)
		r.note(e, e.Err)
	case springbroker.EventSentFrame:
		r.wrote(e, false)
		if e.Frame != nil && e.Frame.Command == "ERROR" {
			r.errorsSent.Add(1)
			msg, _ := e.Frame.Header("message")
			r.note(e, "ERROR message:"+msg)
		}
	}
}

// brokerMain is `soak broker`: the Spring-semantics test broker on
// loopback, in its own process so that its file descriptors and CPU are
// not the clients' nor stompgate's. It prints "READY <addr>" once it
// listens and runs until its standard input closes (the soak process
// exited or closed the pipe) or it gets SIGTERM/SIGINT.
func brokerMain(args []string) int {
	fs := flag.NewFlagSet("soak broker", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	hb := fs.Duration("heartbeat", time.Second, "broker heart-beat {sx, sy} (SimpleBrokerMessageHandler.setHeartbeatValue)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rec := &brokerRecorder{closes: map[string]int64{}, lastWrite: map[string]time.Time{}, over2By: map[string]int64{}}
	b := springbroker.New(springbroker.Config{
		HeartBeat: [2]time.Duration{*hb, *hb},
		OnEvent:   rec.onEvent,
		// The soak's SENDs are small; the default limits apply.
	})
	mux := http.NewServeMux()
	mux.Handle("/ws", b)
	mux.HandleFunc("GET /soak/stats", func(w http.ResponseWriter, _ *http.Request) {
		st := brokerStats{
			Sessions:      b.Sessions(),
			Connections:   b.Connections(),
			Subscriptions: b.Subscriptions(),
			Goroutines:    runtime.NumGoroutine(),
			Opened:        rec.opened.Load(),
			Closed:        rec.closed.Load(),
			ReadTimeouts:  rec.readTimeouts.Load(),
			ErrorsSent:    rec.errorsSent.Load(),
		}
		rec.mu.Lock()
		st.Closes = make(map[string]int64, len(rec.closes))
		for k, v := range rec.closes {
			st.Closes[k] = v
		}
		st.FirstEnds = append([]string(nil), rec.first...)
		rec.mu.Unlock()
		rec.wmu.Lock()
		st.MaxSilenceMs, st.SilencesOver2s, st.SilencesOver3s = rec.maxSilence.Milliseconds(), rec.over2, rec.over3
		if !rec.maxSilenceAt.IsZero() {
			st.MaxSilenceAt = rec.maxSilenceAt.Format("15:04:05.000")
		}
		st.Passes, st.MaxPassMs, st.MaxPassGapMs = rec.passes, rec.maxPass.Milliseconds(), rec.maxPassGap.Milliseconds()
		if !rec.maxPassGapAt.IsZero() {
			st.MaxPassGapAt = rec.maxPassGapAt.Format("15:04:05.000")
		}
		st.SilencesBySecond = make(map[string]int64, len(rec.over2By))
		for k, v := range rec.over2By {
			st.SilencesBySecond[k] = v
		}
		rec.wmu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak broker: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("READY %s\n", ln.Addr())

	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stdinClosed:
	case <-sig:
	}
	// Close waits about a second at most per unresponsive session; never
	// hang the soak's shutdown on it.
	done := make(chan struct{})
	go func() {
		b.Close()
		_ = srv.Close()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "soak broker: Close did not finish in 10s")
		return 1
	}
}
