// Package admin is stompgate's admin HTTP API, served on its own port so
// that probes, scrapes and drains never compete with (or get exposed
// alongside) client traffic:
//
//	GET  /livez           200 while the process serves HTTP; no dependencies
//	GET  /readyz          200, or 503 while draining (or while the upstream
//	                      does not answer HTTP, when that check is on)
//	GET  /metrics         Prometheus metrics
//	POST /drain           start the graceful drain (202); for a preStop hook
//	GET  /debug/sessions  open sessions and their heart-beat contracts, JSON
package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Options wires the admin API to the rest of stompgate.
type Options struct {
	// Registry is served at /metrics.
	Registry *prometheus.Registry
	// Draining reports whether a drain has started; /readyz fails then.
	Draining func() bool
	// CheckUpstream, when set, is called by /readyz (its result cached for
	// a second) and a non-nil error fails readiness. It must bound its own
	// duration (UpstreamCheck does): probes wait for it.
	CheckUpstream func(context.Context) error
	// Drain starts the graceful drain; it must return at once and be safe
	// to call more than once.
	Drain func()
	// Sessions returns what /debug/sessions serves, as JSON.
	Sessions func() any
	// AllowOrigin, when set, is sent as Access-Control-Allow-Origin on
	// /debug/sessions, so a page served elsewhere (the demo) can read it.
	AllowOrigin string
	Logger      *zap.Logger
}

// Handler returns the admin API.
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	check := &cachedCheck{fn: o.CheckUpstream, ttl: time.Second}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if o.Draining != nil && o.Draining() {
			text(w, http.StatusServiceUnavailable, "draining")
			return
		}
		if o.CheckUpstream != nil {
			if err := check.run(r.Context()); err != nil {
				text(w, http.StatusServiceUnavailable, "upstream unreachable: "+err.Error())
				return
			}
		}
		text(w, http.StatusOK, "ok")
	})
	if o.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{
			ErrorLog: zap.NewStdLog(o.Logger),
		}))
	}
	mux.HandleFunc("/drain", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			text(w, http.StatusMethodNotAllowed, "use POST")
			return
		}
		if o.Drain == nil {
			text(w, http.StatusNotImplemented, "drain not available")
			return
		}
		o.Logger.Info("drain requested", zap.String("remote", r.RemoteAddr))
		o.Drain()
		text(w, http.StatusAccepted, "draining")
	})
	mux.HandleFunc("GET /debug/sessions", func(w http.ResponseWriter, _ *http.Request) {
		if o.AllowOrigin != "" {
			w.Header().Set("Access-Control-Allow-Origin", o.AllowOrigin)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		var v any = []struct{}{}
		if o.Sessions != nil {
			v = o.Sessions()
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	})
	return mux
}

// PprofHandler serves net/http/pprof under /debug/pprof/. It is mounted on
// its own loopback listener, never on the admin port.
func PprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// UpstreamCheck returns an upstream check that sends one HTTP GET to the
// upstream's WebSocket URL (ws becomes http, wss https; without user
// information or query, so no credential is sent, logged or shown) and
// passes on any HTTP answer, whatever its status: a 400 or a 404 proves
// that the broker's process accepts, reads and answers, which is what a
// handshake needs. A TCP connect alone proves none of it: the kernel
// completes connects into the listen backlog of a stopped (SIGSTOP) or
// wedged process, whose handshakes then wait for UPSTREAM_DIAL_TIMEOUT.
// A plain GET rather than a WebSocket handshake, so that no probe opens a
// session at the broker. Connect, TLS and the response's header must all
// arrive within timeout.
func UpstreamCheck(upstream *url.URL, tlsConfig *tls.Config, timeout time.Duration) func(context.Context) error {
	target := *upstream
	target.User = nil
	target.RawQuery, target.ForceQuery, target.Fragment, target.RawFragment = "", false, "", ""
	switch target.Scheme {
	case "wss":
		target.Scheme = "https"
	case "ws":
		target.Scheme = "http"
	}
	if target.Path == "" {
		target.Path = "/"
	}
	where := target.String()
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // the same direct path as the proxy's dials
			DialContext:       (&net.Dialer{Timeout: timeout}).DialContext,
			TLSClientConfig:   tlsConfig,
			DisableKeepAlives: true, // one connection per check, closed after it
		},
		// A redirect is an answer too.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "stompgate-readyz")
		resp, err := client.Do(req)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("no HTTP answer from %s within %s", where, timeout)
			}
			return err
		}
		// The status line is the answer; the body is not needed.
		return resp.Body.Close()
	}
}

func text(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

// cachedCheck runs fn at most once per ttl, so a probe storm cannot turn
// into a request storm against the upstream. fn bounds its own duration:
// capping it at ttl here would override its deadline (UpstreamCheck's is
// chosen by serve).
type cachedCheck struct {
	fn  func(context.Context) error
	ttl time.Duration

	mu   sync.Mutex
	at   time.Time
	last error
}

func (c *cachedCheck) run(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.last
	}
	c.last = c.fn(ctx)
	c.at = time.Now()
	return c.last
}
