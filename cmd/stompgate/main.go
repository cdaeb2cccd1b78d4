// Command stompgate is a STOMP-aware WebSocket reverse proxy, configured by
// STOMPGATE_* environment variables (see `stompgate -h`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/config"
	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/keepalive"
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
		default:
			fmt.Fprintf(stderr, "stompgate: unknown argument %q\n\n", args[0])
			usage(stderr)
			return 64 // EX_USAGE
		}
	}
	cfg, err := config.Load(nil)
	if err != nil {
		fmt.Fprintf(stderr, "stompgate: %v\n", err)
		return config.ExitConfig
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "stompgate: %v\n", err)
		return config.ExitConfig
	}
	defer log.Sync()
	if err := serve(cfg, log); err != nil {
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

func newLogger(cfg config.Config, stderr io.Writer) (*zap.Logger, error) {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	// No sampling: every session's end line matters to whoever debugs it.
	core := zapcore.NewCore(enc, zapcore.AddSync(stderr), cfg.LogLevel)
	return zap.New(core), nil
}

func serve(cfg config.Config, log *zap.Logger) error {
	h, err := proxy.New(proxy.Options{
		Upstream:         cfg.UpstreamURL.URL,
		DialTimeout:      cfg.UpstreamDialTimeout,
		HandshakeTimeout: cfg.HandshakeTimeout,
		CloseTimeout:     cfg.CloseTimeout,
		WriteTimeout:     cfg.WriteTimeout,
		MaxMessageBytes:  int64(cfg.MaxMessageBytes),
		PreserveHost:     cfg.PreserveHost,
		TrustedProxy:     cfg.TrustedProxies.Contains,
		Logger:           log,
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
				Tolerance:          cfg.HeartbeatTolerance,
				PongTimeout:        cfg.PongTimeout,
				ClientPingInterval: cfg.ClientPingInterval,
				IdleTimeout:        cfg.IdleTimeout,
				Mode:               cfg.HeartbeatMode,
			},
		},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		ErrorLog:          zap.NewStdLog(log),
	}
	log.Info("stompgate listening",
		zap.String("version", version),
		zap.String("listen", ln.Addr().String()),
		zap.String("upstream", cfg.UpstreamURL.String()))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	select {
	case err := <-errc:
		return err
	case s := <-sig:
		log.Info("shutting down", zap.String("signal", s.String()))
	}
	// Stop accepting, then close every session with 1001 and wait for them,
	// bounded by the close timeout. A second signal exits at once.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.CloseTimeout)
	defer cancel()
	go func() {
		select {
		case <-sig:
			log.Warn("second signal: exiting now")
			os.Exit(1)
		case <-ctx.Done():
		}
	}()
	_ = srv.Shutdown(ctx)
	h.CloseAll(1001, "stompgate shutting down")
	done := make(chan struct{})
	go func() { h.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.CloseTimeout + time.Second):
		log.Warn("sessions still open at exit", zap.Int("sessions", h.ActiveSessions()))
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}
