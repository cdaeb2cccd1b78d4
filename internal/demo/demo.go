// Package demo is what `stompgate demo` puts behind stompgate: the
// Spring-semantics test broker (internal/springbroker) at /ws and a page at
// / (page.html, self-contained: its own small STOMP 1.2 client, no
// external scripts) that connects through stompgate, subscribes to
// /topic/demo, sends, and shows both hops' heart-beat contracts and
// counters from the admin API's /debug/sessions.
//
// It is a demonstration and a test fixture, not a broker to deploy.
package demo

import (
	_ "embed"
	"html/template"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/stompgate/stompgate/internal/springbroker"
)

// Options configures the demo.
type Options struct {
	// AdminPort is the admin server's port; the page fetches
	// /debug/sessions from it on the host it was loaded from.
	AdminPort string
	// HeartBeat is the embedded broker's heart-beat {send, receive}.
	HeartBeat [2]time.Duration
	Logger    *zap.Logger
}

// Demo serves the page and the embedded broker.
type Demo struct {
	broker *springbroker.Broker
	mux    *http.ServeMux
}

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Parse(pageHTML))

// New creates the demo broker and page.
func New(o Options) *Demo {
	b := springbroker.New(springbroker.Config{
		HeartBeat: o.HeartBeat,
		Path:      "/ws",
		Logger:    o.Logger,
		// The page is served by the same origin it connects to, through
		// stompgate; allow any origin so that localhost and 127.0.0.1 both
		// work.
		CheckOrigin: func(*http.Request) bool { return true },
	})
	d := &Demo{broker: b, mux: http.NewServeMux()}
	d.mux.Handle("/ws", b)
	d.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, struct{ AdminPort string }{o.AdminPort})
	})
	return d
}

// ServeHTTP implements http.Handler.
func (d *Demo) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// Broker is the embedded broker.
func (d *Demo) Broker() *springbroker.Broker { return d.broker }

// Close ends the broker's sessions.
func (d *Demo) Close() { d.broker.Close() }
