package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stompgate/stompgate/metrics"
)

// admit decides whether a WebSocket handshake may proceed, before the
// upstream is dialled. It returns an HTTP status and reason when it may not.
// A successful admit reserves a connection slot that freeSlot gives back.
func (h *Handler) admit(r *http.Request) (status int, result, reason string) {
	if h.refusing.Load() {
		return http.StatusServiceUnavailable, metrics.HandshakeLimit, "stompgate is draining; connect to another instance"
	}
	if origin := r.Header.Get("Origin"); origin != "" && h.opts.AllowOrigin != nil && !h.opts.AllowOrigin(origin) {
		// A handshake without Origin is not from a browser; an Origin
		// check only protects browsers from cross-site use.
		return http.StatusForbidden, metrics.HandshakeOriginDenied, "origin not allowed"
	}
	if h.limiter != nil && !h.limiter.allow(h.clientIP(r), time.Now()) {
		return http.StatusTooManyRequests, metrics.HandshakeRateLimited, "too many handshakes from this address"
	}
	if max := h.opts.MaxConnections; max > 0 {
		if h.slots.Add(1) > int64(max) {
			h.slots.Add(-1)
			return http.StatusServiceUnavailable, metrics.HandshakeLimit, "connection limit reached"
		}
	} else {
		h.slots.Add(1)
	}
	return 0, "", ""
}

// freeSlot gives back the slot taken by a successful admit.
func (h *Handler) freeSlot() { h.slots.Add(-1) }

// clientIP is the address the rate limit applies to: the peer's, or, when
// the peer is a trusted proxy, the nearest untrusted address in
// X-Forwarded-For (the right-most one a trusted hop appended).
func (h *Handler) clientIP(r *http.Request) netip.Addr {
	ip := remoteAddr(r)
	if !h.opts.TrustedProxy(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // a malformed chain: rate-limit the proxy we know
		}
		a = a.Unmap()
		if !h.opts.TrustedProxy(a) {
			return a
		}
		ip = a
	}
	return ip
}

// ipLimiter is a token bucket per client address. Buckets that have been
// full for a while are forgotten, so memory is bounded by the addresses
// seen in the last few minutes, not since start.
type ipLimiter struct {
	rate  rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[netip.Addr]*ipBucket
	lastSweep time.Time
}

type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(perSecond float64, burst int) *ipLimiter {
	if burst < 1 {
		burst = 1
	}
	return &ipLimiter{rate: rate.Limit(perSecond), burst: burst, buckets: make(map[netip.Addr]*ipBucket)}
}

func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A bucket idle for the time it takes to refill completely carries no
	// state worth keeping.
	refill := time.Duration(float64(l.burst)/float64(l.rate)*float64(time.Second)) + time.Minute
	if now.Sub(l.lastSweep) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > refill {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[ip]
	if b == nil {
		b = &ipBucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[ip] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}
