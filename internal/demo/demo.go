// Package demo is what `stompgate demo` puts behind stompgate: the
// Spring-semantics test broker (internal/springbroker) at /ws and at
// /ws/websocket (where Spring serves the raw WebSocket endpoint of a
// .withSockJS() endpoint, and where stompgate's SockJS termination dials),
// and a page at / (page.html: its own small STOMP 1.2 client, nothing
// loaded from elsewhere) that connects through stompgate over a WebSocket
// or, switched on the page, over SockJS, subscribes to /topic/demo, sends,
// and shows both hops' heart-beat contracts and counters from the admin
// API's /debug/sessions. For SockJS the page loads sockjs-client from the
// demo itself (SockJSClientPath: a copy of sockjs-client's dist/
// sockjs.min.js, MIT licence, served with its LICENSE), so the demo runs
// without a network.
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

// SockJSClientPath is where the demo serves sockjs-client: the page loads
// it when switched to SockJS, and `stompgate demo` points
// STOMPGATE_SOCKJS_CLIENT_URL (the script of SockJS's iframe page) at it.
const SockJSClientPath = "/sockjs-client/sockjs.min.js"

// sockjsClientLicensePath is sockjs-client's licence, which its copy
// must carry.
const sockjsClientLicensePath = "/sockjs-client/LICENSE"

// sockjs-client 1.6.1, dist/sockjs.min.js and LICENSE as published on npm.
//
//go:embed sockjs-client/sockjs.min.js
var sockjsClientJS []byte

//go:embed sockjs-client/LICENSE
var sockjsClientLicense []byte

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
	// The raw endpoint of a Spring .withSockJS() endpoint at /ws, which
	// stompgate's SockJS termination dials (STOMPGATE_SOCKJS_UPSTREAM_SUFFIX
	// /websocket): the same broker.
	d.mux.HandleFunc("/ws/websocket", func(w http.ResponseWriter, r *http.Request) {
		r2, u := *r, *r.URL
		u.Path, u.RawPath = "/ws", ""
		r2.URL = &u
		b.ServeHTTP(w, &r2)
	})
	d.mux.HandleFunc("GET "+SockJSClientPath, static("text/javascript; charset=utf-8", sockjsClientJS))
	d.mux.HandleFunc("GET "+sockjsClientLicensePath, static("text/plain; charset=utf-8", sockjsClientLicense))
	d.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, struct{ AdminPort string }{o.AdminPort})
	})
	return d
}

func static(contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(body)
	}
}

// ServeHTTP implements http.Handler.
func (d *Demo) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// Broker is the embedded broker.
func (d *Demo) Broker() *springbroker.Broker { return d.broker }

// Close ends the broker's sessions.
func (d *Demo) Close() { d.broker.Close() }
