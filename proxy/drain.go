package proxy

import (
	"context"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// DrainMessage is the STOMP ERROR message and close reason clients get when
// stompgate drains.
const DrainMessage = "server restarting, reconnect"

// CloseServiceRestart is the close code sent to clients on drain (RFC 6455
// registry: "Service Restart", the client may reconnect).
const CloseServiceRestart = 1012

// DrainOptions times a graceful drain.
type DrainOptions struct {
	// Delay is how long new handshakes are still accepted after the drain
	// starts (readiness already fails), so load balancers can stop routing
	// here first.
	Delay time.Duration
	// Period is the window over which open sessions are closed, each at a
	// uniformly random moment, so their clients do not reconnect together.
	Period time.Duration
}

// Draining reports whether a drain has started (readiness must fail).
func (h *Handler) Draining() bool { return h.draining.Load() }

// StartDraining marks the handler as draining without closing anything:
// readiness fails from now on. Drain calls it; it is separate so that a
// caller can flip readiness before doing anything else.
func (h *Handler) StartDraining() {
	if !h.draining.Swap(true) {
		h.metrics.Draining.Set(1)
	}
}

// Drain shuts the handler down gracefully: readiness fails at once, new
// handshakes are accepted for opts.Delay and refused (503) after it, and the
// sessions open then are closed spread uniformly at random over opts.Period:
// each STOMP client gets an ERROR with DrainMessage, each broker a
// DISCONNECT, then the client gets close 1012. Drain returns when no session
// remains, or when ctx ends; then whatever remains is closed at once (each
// leg still has CloseTimeout for its handshake) and Drain waits at most
// CloseTimeout more. It reports whether every session ended.
func (h *Handler) Drain(ctx context.Context, opts DrainOptions) bool {
	h.StartDraining()
	log := h.opts.Logger
	log.Info("draining", zap.Duration("shutdown_delay", opts.Delay), zap.Duration("drain_period", opts.Period), zap.Int("sessions", h.ActiveSessions()))

	select {
	case <-time.After(opts.Delay):
	case <-ctx.Done():
	}
	h.refusing.Store(true)

	sessions := h.openSessions()
	timers := make([]*time.Timer, 0, len(sessions))
	for _, s := range sessions {
		var at time.Duration
		if opts.Period > 0 {
			at = rand.N(opts.Period)
		}
		timers = append(timers, time.AfterFunc(at, s.drainClose))
	}
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()

	idle := make(chan struct{})
	go func() { h.Wait(); close(idle) }()
	select {
	case <-idle:
		log.Info("drained: no session left")
		return true
	case <-ctx.Done():
	}
	left := h.ActiveSessions()
	log.Warn("shutdown timeout: closing the sessions left now", zap.Int("sessions", left))
	for _, s := range h.openSessions() {
		go s.drainClose()
	}
	select {
	case <-idle:
		return true
	case <-time.After(h.opts.CloseTimeout + 100*time.Millisecond):
		log.Warn("sessions still open after the close timeout", zap.Int("sessions", h.ActiveSessions()))
		return false
	}
}
