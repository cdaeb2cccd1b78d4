package config

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load([]string{"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:15674/ws"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ListenAddr != ":8090" || cfg.UpstreamDialTimeout != 10*time.Second || cfg.CloseTimeout != 5*time.Second {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.MaxMessageBytes != 1<<20 {
		t.Errorf("MaxMessageBytes = %d, want 1MiB", cfg.MaxMessageBytes)
	}
	if !cfg.PreserveHost || cfg.LogFormat != "json" {
		t.Errorf("PreserveHost/LogFormat defaults wrong: %+v", cfg)
	}
}

// Every problem must be reported at once, naming each variable.
func TestLoadReportsEveryProblem(t *testing.T) {
	_, err := Load([]string{
		"STOMPGATE_UPSTREAM_URL=http://x",
		"STOMPGATE_CLOSE_TIMEOUT=5",
		"STOMPGATE_MAX_MESSAGE_BYTES=lots",
		"STOMPGATE_TRUSTED_PROXIES=10.0.0.0/8, nonsense",
		"STOMPGATE_LOG_FORMAT=xml",
		"STOMPGATE_HANDSHAKE_TIMEOUT=-1s",
	})
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want *Error, got %v", err)
	}
	msg := err.Error()
	for _, name := range []string{"UPSTREAM_URL", "CLOSE_TIMEOUT", "MAX_MESSAGE_BYTES", "TRUSTED_PROXIES", "LOG_FORMAT", "HANDSHAKE_TIMEOUT"} {
		if !strings.Contains(msg, "STOMPGATE_"+name) {
			t.Errorf("error does not name STOMPGATE_%s:\n%s", name, msg)
		}
	}
}

func TestLoadRequiresUpstream(t *testing.T) {
	_, err := Load([]string{})
	if err == nil || !strings.Contains(err.Error(), "STOMPGATE_UPSTREAM_URL") {
		t.Fatalf("want an error naming STOMPGATE_UPSTREAM_URL, got %v", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"65536": 65536, "64KiB": 65536, "1MiB": 1 << 20, " 2 MB ": 2 << 20, "512B": 512} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q -> %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1TiB", "x"} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestPrefixList(t *testing.T) {
	var l PrefixList
	if err := l.UnmarshalText([]byte("10.0.0.0/8, 127.0.0.1,,::1")); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"10.1.2.3": true, "127.0.0.1": true, "127.0.0.2": false, "::1": true, "::ffff:10.0.0.1": true} {
		if got := l.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestPrintRedactsUpstreamPassword(t *testing.T) {
	cfg, err := Load([]string{"STOMPGATE_UPSTREAM_URL=ws://user:s3cret@127.0.0.1/ws"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WritePrint(&b, cfg)
	if strings.Contains(b.String(), "s3cret") {
		t.Fatalf("password printed:\n%s", b.String())
	}
}

// Every field must be documented: -h and the docs come from these tags.
func TestEveryVariableDocumented(t *testing.T) {
	for _, v := range Vars() {
		if v.Desc == "" {
			t.Errorf("%s has no desc tag", v.Name)
		}
		if !v.Required && v.Default == "" && !strings.Contains(v.Desc, "empty") && !strings.Contains(v.Desc, "Empty") && !strings.Contains(v.Desc, "unset") {
			t.Errorf("%s has no default and its description does not say what empty means", v.Name)
		}
	}
}

// docs/configuration.md is generated; fail when it is stale.
func TestConfigurationDocIsCurrent(t *testing.T) {
	var want bytes.Buffer
	WriteMarkdown(&want)
	got, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("docs/configuration.md is stale: run `go run ./cmd/stompgate config docs > docs/configuration.md`")
	}
}

func TestOriginList(t *testing.T) {
	var l OriginList
	if err := l.UnmarshalText([]byte(" https://App.example.com, https://*.example.org ,")); err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://app.example.com":            true,
		"https://APP.example.com":            true,
		"http://app.example.com":             false,
		"https://a.example.org":              true,
		"https://a.b.example.org":            true,
		"https://example.org":                false,
		"https://evilexample.org":            false,
		"https://a.example.org.evil.com":     false,
		"http://a.example.org":               false,
		"https://app.example.com:8443":       false,
		"https://x.example.org/.example.org": false,
	} {
		if got := l.Allows(origin); got != want {
			t.Errorf("Allows(%q) = %v, want %v", origin, got, want)
		}
	}
	for _, bad := range []string{"example.com", "https://a.*.example.com", "https://example.com/path", "*"} {
		if err := l.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestOperationsValidation(t *testing.T) {
	_, err := Load([]string{
		"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:1",
		"STOMPGATE_PPROF_ADDR=0.0.0.0:6060",
		"STOMPGATE_TLS_CERT_FILE=/nonexistent.pem",
		"STOMPGATE_UPSTREAM_CA_FILE=/nonexistent-ca.pem",
		"STOMPGATE_SHUTDOWN_TIMEOUT=10s",
		"STOMPGATE_MAX_CONNECTIONS=-1",
		"STOMPGATE_HANDSHAKE_BURST_PER_IP=0",
		"STOMPGATE_MAX_CLIENT_MESSAGE_BYTES=10",
	})
	if err == nil {
		t.Fatal("invalid operations settings accepted")
	}
	for _, name := range []string{"PPROF_ADDR", "TLS_CERT_FILE", "UPSTREAM_URL", "SHUTDOWN_TIMEOUT", "MAX_CONNECTIONS", "HANDSHAKE_BURST_PER_IP", "MAX_CLIENT_MESSAGE_BYTES"} {
		if !strings.Contains(err.Error(), Prefix+name) {
			t.Errorf("error does not name %s%s:\n%v", Prefix, name, err)
		}
	}
	cfg, err := Load([]string{"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:1", "STOMPGATE_PPROF_ADDR=127.0.0.1:6060", "STOMPGATE_MAX_UPSTREAM_MESSAGE_BYTES=2MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if c, u := cfg.MessageLimits(); c != 1<<20 || u != 2<<20 {
		t.Errorf("message limits %d, %d", c, u)
	}
}

// The client listener's header limit defaults to 64 KiB (Go's own default
// is 1 MiB, all of it forwarded upstream) and cannot be set below 4 KiB.
func TestMaxRequestHeaderBytes(t *testing.T) {
	cfg, err := Load([]string{"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:15674/ws"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxRequestHeaderBytes != 64<<10 {
		t.Errorf("default MaxRequestHeaderBytes = %d, want 65536", cfg.MaxRequestHeaderBytes)
	}
	cfg, err = Load([]string{"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:15674/ws", "STOMPGATE_MAX_REQUEST_HEADER_BYTES=4KiB"})
	if err != nil || cfg.MaxRequestHeaderBytes != 4096 {
		t.Errorf("4KiB: %d, %v", cfg.MaxRequestHeaderBytes, err)
	}
	_, err = Load([]string{"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:15674/ws", "STOMPGATE_MAX_REQUEST_HEADER_BYTES=4095"})
	if err == nil || !strings.Contains(err.Error(), "STOMPGATE_MAX_REQUEST_HEADER_BYTES: must be at least 4KiB") {
		t.Errorf("4095 bytes: %v, want an error naming STOMPGATE_MAX_REQUEST_HEADER_BYTES", err)
	}
}

// STOMPGATE_SOCKJS_UPSTREAM_SUFFIX set to "" means no suffix (RabbitMQ
// Web-STOMP), not the default; unset means the default.
func TestSockJSUpstreamSuffixEmpty(t *testing.T) {
	base := []string{"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:15674", "STOMPGATE_SOCKJS_PATHS=/ws"}
	for _, c := range []struct {
		env  []string
		want string
	}{
		{nil, "/websocket"},
		{[]string{"STOMPGATE_SOCKJS_UPSTREAM_SUFFIX="}, ""},
		{[]string{"STOMPGATE_SOCKJS_UPSTREAM_SUFFIX=/raw"}, "/raw"},
	} {
		cfg, err := Load(append(append([]string{}, base...), c.env...))
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if cfg.SockJSUpstreamSuffix != c.want {
			t.Errorf("%v: suffix %q, want %q", c.env, cfg.SockJSUpstreamSuffix, c.want)
		}
	}
	t.Setenv("STOMPGATE_UPSTREAM_URL", "ws://127.0.0.1:15674")
	t.Setenv("STOMPGATE_SOCKJS_PATHS", "/ws")
	t.Setenv("STOMPGATE_SOCKJS_UPSTREAM_SUFFIX", "")
	if cfg, err := Load(nil); err != nil || cfg.SockJSUpstreamSuffix != "" {
		t.Errorf("process environment with an empty suffix: %q, %v; want \"\"", cfg.SockJSUpstreamSuffix, err)
	}
}
