// Command stompgate is a STOMP-aware WebSocket reverse proxy, configured by
// STOMPGATE_* environment variables (see `stompgate -h`).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/admin"
	"github.com/stompgate/stompgate/config"
	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/memtrim"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
	"github.com/stompgate/stompgate/proxy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			usage(stdout)
			return 0
		case "-version", "--version", "version":
			fmt.Fprintf(stdout, "stompgate %s (%s)\n", version, goVersion())
			return 0
		case "config":
			return configCommand(args[1:], stdout, stderr)
		case "demo":
			return demoCommand(stdout, stderr)
		default:
			fmt.Fprintf(stderr, "stompgate: unknown argument %q\n\n", args[0])
			usage(stderr)
			return 64 // EX_USAGE
		}
	}
	cfg, log, ok := setup(nil, stderr)
	if !ok {
		return config.ExitConfig
	}
	defer log.Sync()
	if err := serve(cfg, log, extras{}); err != nil {
		log.Error("stompgate stopped", zap.Error(err))
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `stompgate: a STOMP-aware WebSocket reverse proxy.

Usage:
  stompgate                    run the proxy (configured by the environment)
  stompgate config print       print the effective configuration, secrets redacted
  stompgate config validate    check the configuration and exit (0 = valid, 78 = invalid)
  stompgate config docs        print docs/configuration.md
  stompgate demo               run in front of an embedded demo broker, with a page at
                               http://127.0.0.1:8090/ (no broker needed)
  stompgate --version          print the version
  stompgate -h                 print this help

`)
	config.WriteUsage(w)
}

func configCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "stompgate: usage: stompgate config print|validate|docs")
		return 64
	}
	switch args[0] {
	case "docs":
		config.WriteMarkdown(stdout)
		return 0
	case "print", "validate":
		cfg, err := config.Load(nil)
		if err != nil {
			fmt.Fprintf(stderr, "stompgate: %v\n", err)
			return config.ExitConfig
		}
		if args[0] == "print" {
			config.WritePrint(stdout, cfg)
		} else {
			fmt.Fprintln(stdout, "configuration is valid")
		}
		return 0
	}
	fmt.Fprintf(stderr, "stompgate: unknown config command %q\n", args[0])
	return 64
}

// setup loads the configuration (from environ, or the process environment
// when nil) and builds the logger; on a configuration error it says why on
// stderr and reports false.
func setup(environ []string, stderr io.Writer) (config.Config, *zap.Logger, bool) {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "stompgate: %v\n", err)
		return cfg, nil, false
	}
	return cfg, newLogger(cfg, stderr), true
}

func newLogger(cfg config.Config, stderr io.Writer) *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	// No sampling here: every session's end line matters to whoever debugs
	// it. The proxy samples only its per-handshake failure lines, which a
	// flood of refused handshakes would otherwise multiply.
	core := zapcore.NewCore(enc, zapcore.AddSync(stderr), cfg.LogLevel)
	return zap.New(core)
}

// proxyOptions turns the configuration into the proxy's options.
func proxyOptions(cfg config.Config, log *zap.Logger, m *metrics.Metrics) (proxy.Options, error) {
	upTLS, err := cfg.UpstreamTLSConfig()
	if err != nil {
		return proxy.Options{}, err
	}
	fromClient, fromUpstream := cfg.MessageLimits()
	var allowOrigin func(string) bool
	if len(cfg.AllowedOrigins) > 0 {
		allowOrigin = cfg.AllowedOrigins.Allows
	}
	return proxy.Options{
		Upstream:                cfg.UpstreamURL.URL,
		DialTimeout:             cfg.UpstreamDialTimeout,
		HandshakeTimeout:        cfg.HandshakeTimeout,
		CloseTimeout:            cfg.CloseTimeout,
		WriteTimeout:            cfg.WriteTimeout,
		MaxMessageBytes:         int64(cfg.MaxMessageBytes),
		MaxClientMessageBytes:   fromClient,
		MaxUpstreamMessageBytes: fromUpstream,
		AllowOrigin:             allowOrigin,
		MaxConnections:          cfg.MaxConnections,
		HandshakeRatePerIP:      cfg.HandshakeRatePerIP,
		HandshakeBurstPerIP:     cfg.HandshakeBurstPerIP,
		PreserveHost:            cfg.PreserveHost,
		TrustedProxy:            cfg.TrustedProxies.Contains,
		TLSClientConfig:         upTLS,
		Metrics:                 m,
		Logger:                  log,
		SockJS: proxy.SockJSOptions{
			Paths:           cfg.SockJSPaths,
			UpstreamSuffix:  cfg.SockJSUpstreamSuffix,
			DisconnectDelay: cfg.SockJSDisconnectDelay,
			HeartbeatDelay:  cfg.SockJSHeartbeat,
			ClientScriptURL: cfg.SockJSClientURL,
		},
		STOMP: proxy.STOMPOptions{
			Strict: cfg.StompStrict,
			Limits: inspect.Limits{
				MaxHeaderBytes: int(cfg.MaxHeaderBytes),
				MaxHeaders:     cfg.MaxHeaders,
				MaxFrameBytes:  int(cfg.FrameLimit()),
			},
			UpstreamHeartBeat: cfg.UpstreamHeartbeat.HeartBeat,
			ClientHeartBeat:   cfg.ClientHeartbeat.HeartBeat,
			Keepalive: keepalive.Config{
				Tolerance:            cfg.HeartbeatTolerance,
				PongTimeout:          cfg.PongTimeout,
				ClientPingInterval:   cfg.ClientPingInterval,
				UpstreamPingInterval: cfg.UpstreamPingInterval,
				IdleTimeout:          cfg.IdleTimeout,
				Mode:                 cfg.HeartbeatMode,
			},
		},
	}, nil
}

// readyCheckTimeout caps the readiness check's wait for the upstream's
// answer (STOMPGATE_READY_CHECKS_UPSTREAM): a frozen broker fails /readyz
// within it (plus at most the second a previous result stays cached),
// while a broker slow for a moment still passes.
const readyCheckTimeout = 2 * time.Second

// extras are what the demo adds to a normal run.
type extras struct {
	adminAllowOrigin string            // CORS origin for /debug/sessions
	onListening      func(addr string) // called once the proxy listens
}

// serve runs stompgate until a signal (or POST /drain followed by a
// signal) ends a graceful drain.
//
// Ownership: serve owns the three servers (proxy, admin, optional pprof)
// and the drain goroutine; it returns only after the drain has finished or
// hit SHUTDOWN_TIMEOUT and every server is shut down.
func serve(cfg config.Config, log *zap.Logger, x extras) error {
	m := metrics.New(version)
	opts, err := proxyOptions(cfg, log, m)
	if err != nil {
		return err
	}
	h, err := proxy.New(opts)
	if err != nil {
		return err
	}
	lnTLS, err := cfg.ListenerTLSConfig()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	if lnTLS != nil {
		ln = tls.NewListener(ln, lnTLS)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin: listen on %s: %w", cfg.AdminAddr, err)
	}

	// Memory left free by bursts of handshakes goes back to the OS within
	// seconds (internal/memtrim); the goroutine ends with serve.
	trimCtx, stopTrim := context.WithCancel(context.Background())
	defer stopTrim()
	go memtrim.Run(trimCtx, memtrim.DefaultPolicy, nil, loggedTrim(log, debug.FreeOSMemory))

	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		// Go's default is 1 MiB, and the headers are forwarded upstream.
		MaxHeaderBytes: int(cfg.MaxRequestHeaderBytes),
		ErrorLog:       zap.NewStdLog(log),
	}

	// The drain starts once, from the first signal or POST /drain, and
	// runs under its own SHUTDOWN_TIMEOUT.
	drainDone := make(chan struct{})
	var stopAccepting *time.Timer
	var drainStart time.Time
	startDrain := sync.OnceFunc(func() {
		drainStart = time.Now()
		// After SHUTDOWN_DELAY the handler refuses every handshake (503),
		// so the listener has nothing left to offer: it is closed then,
		// rather than when the last session ends, up to DRAIN_PERIOD and
		// CLOSE_TIMEOUT later, so that a replacement can bind the same
		// address at once (Go sets SO_REUSEADDR, so the sessions still
		// draining on that port do not stop it). Shutdown closes the
		// listener and the idle keep-alive connections, and waits for
		// requests in progress; the sessions are hijacked connections,
		// which http.Server no longer tracks, so they drain as before.
		//
		// With SockJS the listener stays open until the drain ends: a
		// polling client gets its close frame c[1012,…] on its next
		// request, and a streaming one needs its request to finish.
		closeListenerAfter := cfg.ShutdownDelay
		if len(cfg.SockJSPaths) > 0 {
			closeListenerAfter = cfg.ShutdownDelay + cfg.DrainPeriod + cfg.CloseTimeout
		}
		stopAccepting = time.AfterFunc(closeListenerAfter, func() {
			log.Info("closing the proxy listener: new connections are refused while sessions drain",
				zap.String("listen", ln.Addr().String()), zap.Int("sessions", h.ActiveSessions()))
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
		go func() {
			defer close(drainDone)
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			h.Drain(ctx, proxy.DrainOptions{Delay: cfg.ShutdownDelay, Period: cfg.DrainPeriod})
		}()
	})

	var check func(context.Context) error
	if cfg.ReadyChecksUpstream {
		check = admin.UpstreamCheck(cfg.UpstreamURL.URL, opts.TLSClientConfig, min(cfg.UpstreamDialTimeout, readyCheckTimeout))
	}
	adminSrv := &http.Server{
		Handler: admin.Handler(admin.Options{
			Registry:      m.Registry,
			Draining:      h.Draining,
			CheckUpstream: check,
			Drain:         startDrain,
			Sessions:      func() any { return h.Sessions() },
			AllowOrigin:   x.adminAllowOrigin,
			Logger:        log,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(log),
	}
	// Only failures are sent: the proxy server is also shut down on
	// purpose during a drain (stopAccepting), which is no failure.
	errc := make(chan error, 3)
	serveIn := func(name string, s *http.Server, l net.Listener) {
		go func() {
			if err := serveErr(name, s.Serve(l)); err != nil {
				errc <- err
			}
		}()
	}
	serveIn("proxy", srv, ln)
	serveIn("admin", adminSrv, adminLn)
	var pprofSrv *http.Server
	if cfg.PprofAddr != "" {
		pln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			return fmt.Errorf("pprof: listen on %s: %w", cfg.PprofAddr, err)
		}
		pprofSrv = &http.Server{Handler: admin.PprofHandler(), ReadHeaderTimeout: 5 * time.Second}
		serveIn("pprof", pprofSrv, pln)
	}
	scheme := "ws"
	if lnTLS != nil {
		scheme = "wss"
	}
	log.Info("stompgate listening",
		zap.String("version", version),
		zap.String("listen", scheme+"://"+ln.Addr().String()),
		zap.String("admin", adminLn.Addr().String()),
		zap.String("upstream", cfg.UpstreamURL.String()))
	if x.onListening != nil {
		x.onListening(ln.Addr().String())
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	var runErr error
	select {
	case runErr = <-errc:
		log.Error("server failed: shutting down", zap.Error(runErr))
	case s := <-sig:
		log.Info("shutting down", zap.String("signal", s.String()), zap.Bool("already_draining", h.Draining()))
	}
	// A second signal exits at once.
	go func() {
		<-sig
		log.Warn("second signal: exiting now", zap.Int("sessions", h.ActiveSessions()))
		_ = log.Sync()
		os.Exit(1)
	}()
	startDrain()
	select {
	case <-drainDone:
	case <-time.After(cfg.ShutdownTimeout + cfg.CloseTimeout + time.Second):
		// Only when a POST /drain started long ago is stuck: never wait
		// past the pod's grace period.
		log.Warn("drain did not finish in time", zap.Int("sessions", h.ActiveSessions()))
	}
	if h.SockJSClosing() {
		// A polling SockJS client fetches the close frame c[1012,…] of a
		// session the drain ended with its next request, the one after
		// the response that carried the ERROR: the listener stays open
		// for it as long as a close handshake is given, within the
		// shutdown's bound.
		if wait := min(cfg.CloseTimeout, time.Until(drainStart.Add(cfg.ShutdownTimeout+cfg.CloseTimeout))); wait > 0 {
			time.Sleep(wait)
		}
	}
	stopAccepting.Stop() // when the drain ended before the listener closed
	ctx, cancel := context.WithTimeout(context.Background(), cfg.CloseTimeout)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = adminSrv.Shutdown(ctx)
	if pprofSrv != nil {
		_ = pprofSrv.Shutdown(ctx)
	}
	log.Info("stopped", zap.Int("sessions_left", h.ActiveSessions()))
	return runErr
}

// serveErr names which server stopped, and hides the expected
// ErrServerClosed.
func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s server: %w", name, err)
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}

// loggedTrim is memtrim's trim, logged with its duration: a trim is a
// forced collection that returns every free page, so an RSS drop (or a
// pause) can be told from the log.
func loggedTrim(log *zap.Logger, free func()) func(memtrim.Stats) {
	return func(s memtrim.Stats) {
		start := time.Now()
		free()
		log.Info("memory trimmed", zap.Duration("took", time.Since(start)),
			zap.Uint64("free_before_bytes", s.Free), zap.Uint64("in_use_bytes", s.InUse))
	}
}
