package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	h := Handler(Options{CheckUpstream: UpstreamCheck(&url.URL{Scheme: "ws", Host: addr, Path: "/ws"}, nil, time.Second)})
	if r := get(t, h, "GET", "/readyz"); r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), "upstream unreachable") {
		t.Fatalf("/readyz with the upstream down: %d %s", r.Code, r.Body)
	}
}

// A frozen upstream (SIGSTOP, a wedged event loop) still completes TCP
// connects: the kernel queues them in the listen backlog. A listener that
// never accepts is exactly that. /readyz must fail within the check's
// deadline, and pass again once the same listener answers, whatever the
// status it answers with.
func TestReadinessFailsWhileUpstreamIsFrozen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// What a TCP connect check saw: success.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("a TCP connect to the frozen upstream failed (%v): the test would not show the fault", err)
	}
	c.Close()

	var gotAuth, gotQuery atomic.Value
	upstream := &url.URL{Scheme: "ws", User: url.UserPassword("guest", "s3cret"), Host: ln.Addr().String(), Path: "/ws", RawQuery: "token=t0ken"}
	const deadline = 300 * time.Millisecond
	h := Handler(Options{CheckUpstream: UpstreamCheck(upstream, nil, deadline)})
	start := time.Now()
	r := get(t, h, "GET", "/readyz")
	took := time.Since(start)
	if r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), "no HTTP answer") {
		t.Fatalf("/readyz with a frozen upstream: %d %s", r.Code, r.Body)
	}
	if took > deadline+time.Second {
		t.Errorf("/readyz took %v to fail, deadline %v", took, deadline)
	}
	for _, secret := range []string{"s3cret", "guest", "t0ken"} {
		if strings.Contains(r.Body.String(), secret) {
			t.Errorf("/readyz shows %q: %s", secret, r.Body)
		}
	}
	t.Logf("frozen upstream: /readyz %d after %v: %s", r.Code, took.Round(time.Millisecond), strings.TrimSpace(r.Body.String()))

	// The upstream thaws: it answers 400, as a WebSocket endpoint answers a
	// plain GET. The connects queued in the backlog meanwhile are served
	// too.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		gotQuery.Store(r.URL.RawQuery)
		http.Error(w, "Can \"Upgrade\" only to \"WebSocket\".", http.StatusBadRequest)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	thawed := time.Now()
	for {
		r = get(t, h, "GET", "/readyz")
		if r.Code == http.StatusOK {
			break
		}
		if time.Since(thawed) > 3*time.Second {
			t.Fatalf("/readyz still %d %s 3s after the upstream answers", r.Code, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("answering upstream: /readyz 200 after %v", time.Since(thawed).Round(time.Millisecond))
	if a, q := gotAuth.Load(), gotQuery.Load(); a != "" || q != "" {
		t.Errorf("the check sent Authorization %q, query %q", a, q)
	}
}

func TestPprofHandler(t *testing.T) {
	if r := get(t, PprofHandler(), "GET", "/debug/pprof/goroutine?debug=1"); r.Code != 200 || !strings.Contains(r.Body.String(), "goroutine") {
		t.Fatalf("pprof: %d", r.Code)
	}
}
