package e2e

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stompgate/stompgate/config"
	"github.com/stompgate/stompgate/e2e/peers"
)

// buildStompgate builds cmd/stompgate into a temporary directory.
func buildStompgate(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stompgate")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=e2e-test", "-o", bin, "./cmd/stompgate")
	cmd.Dir = peers.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestBinaryCLI(t *testing.T) {
	bin := buildStompgate(t)
	run := func(env []string, args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return string(out), code
	}
	out, code := run(nil, "-h")
	if code != 0 {
		t.Errorf("-h exited %d", code)
	}
	for _, v := range config.Vars() {
		if !strings.Contains(out, v.Name) {
			t.Errorf("-h does not list %s", v.Name)
		}
	}
	if out, _ := run(nil, "--version"); !strings.Contains(out, "stompgate e2e-test") {
		t.Errorf("--version printed %q", out)
	}
	out, code = run([]string{"STOMPGATE_UPSTREAM_URL=ftp://x", "STOMPGATE_CLOSE_TIMEOUT=soon"}, "config", "validate")
	if code != config.ExitConfig || !strings.Contains(out, "STOMPGATE_UPSTREAM_URL") || !strings.Contains(out, "STOMPGATE_CLOSE_TIMEOUT") {
		t.Errorf("config validate: exit %d, output %q; want 78 naming both variables", code, out)
	}
	if _, code := run(nil); code != config.ExitConfig {
		t.Errorf("no upstream: exit %d, want 78", code)
	}
	out, code = run([]string{"STOMPGATE_UPSTREAM_URL=ws://guest:topsecret@127.0.0.1:15674/ws"}, "config", "print")
	if code != 0 || strings.Contains(out, "topsecret") || !strings.Contains(out, "STOMPGATE_LISTEN_ADDR=:8090") {
		t.Errorf("config print: exit %d, output %q", code, out)
	}
}

// The real binary, configured by the environment, proxies a session to
// RabbitMQ, logs it without credentials, and exits 0 on SIGTERM.
func TestBinaryServesAndStops(t *testing.T) {
	origin, path := rabbit(t)
	bin := buildStompgate(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"STOMPGATE_UPSTREAM_URL=" + origin,
		"STOMPGATE_LISTEN_ADDR=" + addr,
		"STOMPGATE_CLOSE_TIMEOUT=1s",
		"STOMPGATE_LOG_LEVEL=debug",
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stompgate did not listen on %s:\n%s", addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, _, err := dialStomp(t, "ws://"+addr+path, nil, "v12.stomp")
	if err != nil {
		t.Fatal(err)
	}
	c.connect()
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("stompgate did not stop on SIGTERM:\n%s", logs.String())
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	out := logs.String()
	if !strings.Contains(out, `"msg":"session ended"`) {
		t.Errorf("no session line:\n%s", out)
	}
	if strings.Contains(out, "guest") {
		t.Errorf("credentials in the log:\n%s", out)
	}
}
