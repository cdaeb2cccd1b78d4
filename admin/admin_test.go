package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestProbesAndDrain(t *testing.T) {
	var draining atomic.Bool
	var drains atomic.Int32
	var upstreamDown atomic.Bool
	var checks atomic.Int32
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "stompgate_test_total", Help: "x"}))
	h := Handler(Options{
		Registry: reg,
		Draining: draining.Load,
		CheckUpstream: func(context.Context) error {
			checks.Add(1)
			if upstreamDown.Load() {
				return errors.New("connection refused")
			}
			return nil
		},
		Drain:       func() { drains.Add(1); draining.Store(true) },
		Sessions:    func() any { return []string{"s1"} },
		AllowOrigin: "*",
	})
	if r := get(t, h, "GET", "/livez"); r.Code != 200 {
		t.Fatalf("/livez %d", r.Code)
	}
	if r := get(t, h, "GET", "/readyz"); r.Code != 200 {
		t.Fatalf("/readyz %d %s", r.Code, r.Body)
	}
	// The upstream check is cached: a probe storm is not a dial storm.
	upstreamDown.Store(true)
	for range 10 {
		get(t, h, "GET", "/readyz")
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("upstream dialled %d times within the cache period", n)
	}
	if r := get(t, h, "GET", "/metrics"); r.Code != 200 || !strings.Contains(r.Body.String(), "stompgate_test_total 0") {
		t.Fatalf("/metrics %d %s", r.Code, r.Body)
	}
	if r := get(t, h, "GET", "/debug/sessions"); r.Code != 200 || r.Header().Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.Body.String(), `"s1"`) {
		t.Fatalf("/debug/sessions %d %v %s", r.Code, r.Header(), r.Body)
	}
	if r := get(t, h, "GET", "/drain"); r.Code != http.StatusMethodNotAllowed || drains.Load() != 0 {
		t.Fatalf("GET /drain: %d, drains %d", r.Code, drains.Load())
	}
	if r := get(t, h, "POST", "/drain"); r.Code != http.StatusAccepted || drains.Load() != 1 {
		t.Fatalf("POST /drain: %d, drains %d", r.Code, drains.Load())
	}
	if r := get(t, h, "GET", "/readyz"); r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), "draining") {
		t.Fatalf("/readyz while draining: %d %s", r.Code, r.Body)
	}
	if r := get(t, h, "GET", "/livez"); r.Code != 200 {
		t.Fatalf("/livez while draining %d", r.Code)
	}
	if r := get(t, h, "GET", "/debug/pprof/"); r.Code != http.StatusNotFound {
		t.Fatalf("pprof reachable on the admin handler: %d", r.Code)
	}
}

func TestReadinessFailsWhileUpstreamIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	h := Handler(Options{CheckUpstream: DialCheck(addr, 0)})
	if r := get(t, h, "GET", "/readyz"); r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), "upstream unreachable") {
		t.Fatalf("/readyz with the upstream down: %d %s", r.Code, r.Body)
	}
}

func TestPprofHandler(t *testing.T) {
	if r := get(t, PprofHandler(), "GET", "/debug/pprof/goroutine?debug=1"); r.Code != 200 || !strings.Contains(r.Body.String(), "goroutine") {
		t.Fatalf("pprof: %d", r.Code)
	}
}
