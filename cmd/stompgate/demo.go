package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/stompgate/stompgate/config"
	"github.com/stompgate/stompgate/internal/demo"
)

// demoDefaults are the settings `stompgate demo` uses unless the
// environment sets them: everything on loopback, heart-beats every 2 s so
// the page's counters move, a quick shutdown, and SockJS at /ws (the
// page's SockJS switch) with the demo's own copy of sockjs-client for the
// iframe page, so that nothing is loaded from a CDN.
var demoDefaults = map[string]string{
	"SOCKJS_PATHS":       "/ws",
	"SOCKJS_CLIENT_URL":  demo.SockJSClientPath,
	"LISTEN_ADDR":        "127.0.0.1:8090",
	"ADMIN_ADDR":         "127.0.0.1:9095",
	"UPSTREAM_HEARTBEAT": "2000,2000",
	"CLIENT_HEARTBEAT":   "2000,2000",
	"SHUTDOWN_DELAY":     "0s",
	"DRAIN_PERIOD":       "1s",
	"SHUTDOWN_TIMEOUT":   "5s",
	"LOG_FORMAT":         "console",
}

// demoCommand runs stompgate in front of an embedded Spring-semantics
// broker that also serves the demo page.
func demoCommand(stdout, stderr io.Writer) int {
	environ := os.Environ()
	set := map[string]bool{}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for k, v := range demoDefaults {
		if !set[config.Prefix+k] {
			environ = append(environ, config.Prefix+k+"="+v)
		}
	}
	// The upstream is the embedded broker, whatever the environment says;
	// a placeholder satisfies the loader until its address is known.
	environ = append(environ, config.Prefix+"UPSTREAM_URL=ws://127.0.0.1:1")
	cfg, log, ok := setup(environ, stderr)
	if !ok {
		return config.ExitConfig
	}
	defer log.Sync()

	_, adminPort, err := net.SplitHostPort(cfg.AdminAddr)
	if err != nil {
		fmt.Fprintf(stderr, "stompgate: %sADMIN_ADDR: %v\n", config.Prefix, err)
		return config.ExitConfig
	}
	d := demo.New(demo.Options{
		AdminPort: adminPort,
		HeartBeat: [2]time.Duration{2 * time.Second, 2 * time.Second},
		Logger:    log.Named("broker"),
	})
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "stompgate: demo broker: %v\n", err)
		return 1
	}
	brokerSrv := &http.Server{Handler: d, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = brokerSrv.Serve(bln) }()
	defer func() {
		d.Close()
		_ = brokerSrv.Close()
	}()
	if err := cfg.UpstreamURL.UnmarshalText([]byte("ws://" + bln.Addr().String())); err != nil {
		fmt.Fprintf(stderr, "stompgate: %v\n", err)
		return 1
	}

	err = serve(cfg, log, extras{
		// The page, served by the proxy's port, reads the admin port.
		adminAllowOrigin: "*",
		onListening: func(addr string) {
			fmt.Fprintf(stdout, "stompgate demo: open http://%s/ in a browser (admin API on %s, embedded broker on %s). Ctrl-C stops.\n",
				addr, cfg.AdminAddr, bln.Addr())
		},
	})
	if err != nil {
		log.Error("stompgate stopped", zap.Error(err))
		return 1
	}
	return 0
}
