package e2e

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stompgate/stompgate/config"
	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/internal/wstest"
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

// freeAddr returns an address for a child process to bind
// (wstest.FreeAddr).
func freeAddr(t testing.TB) string { return wstest.FreeAddr(t) }

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
// RabbitMQ; its admin port answers probes, /metrics (scraped after the real
// session) and /debug/sessions; SIGTERM fails readiness at once, drains the
// session with STOMP ERROR + 1012, and the process exits 0; the log has no
// credentials.
func TestBinaryServesAndStops(t *testing.T) {
	origin, path := rabbit(t)
	bin := buildStompgate(t)
	addr, adminAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"STOMPGATE_UPSTREAM_URL=" + origin,
		"STOMPGATE_LISTEN_ADDR=" + addr,
		"STOMPGATE_ADMIN_ADDR=" + adminAddr,
		"STOMPGATE_CLOSE_TIMEOUT=1s",
		"STOMPGATE_SHUTDOWN_DELAY=300ms",
		"STOMPGATE_DRAIN_PERIOD=500ms",
		"STOMPGATE_SHUTDOWN_TIMEOUT=3s",
		"STOMPGATE_LOG_LEVEL=debug",
	}
	var logs stomptest.LockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	admin := func(method, p string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+adminAddr+p, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := admin("GET", "/livez"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stompgate's admin server did not answer on %s:\n%s", adminAddr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := admin("GET", "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the drain: %d %s", code, body)
	}
	if code, _ := admin("GET", "/drain"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /drain: %d, want 405", code)
	}

	c := stomptest.Dial(t, "ws://"+addr+path, stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest()...)
	dest := "/queue/stompgate-e2e-" + t.Name()
	c.Subscribe("s1", dest)
	c.SendFrame("SEND", []byte("metered"), "destination", dest)
	c.Expect(5*time.Second, "MESSAGE")

	_, metrics := admin("GET", "/metrics")
	for _, want := range []string{
		`stompgate_handshakes_total{result="ok"} 1`,
		`stompgate_sessions_active 1`,
		`stompgate_frames_total{command="CONNECT",direction="client_to_upstream"} 1`,
		`stompgate_frames_total{command="SEND",direction="client_to_upstream"} 1`,
		`stompgate_frames_total{command="MESSAGE",direction="upstream_to_client"} 1`,
		`stompgate_build_info{goversion=`,
		`go_goroutines `,
		`go_sched_latencies_seconds_bucket{le=`,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, body := admin("GET", "/debug/sessions"); code != http.StatusOK || !strings.Contains(body, `"connected": true`) || !strings.Contains(body, `"heart_beat_sent": "10000,10000"`) {
		t.Errorf("/debug/sessions: %d %s", code, body)
	}

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, 250*time.Millisecond, func() bool { code, _ := admin("GET", "/readyz"); return code == http.StatusServiceUnavailable })
	o := observe(c, 3*time.Second)
	if o.CloseCode != 1012 || len(o.Frames) == 0 || !strings.Contains(o.Frames[len(o.Frames)-1], "server restarting, reconnect") {
		t.Errorf("drained client saw %+v, want ERROR 'server restarting, reconnect' then close 1012", o)
	}
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

// waitUntil polls cond for up to within.
func waitUntil(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A second SIGTERM during a drain exits at once, whatever is still open.
func TestBinarySecondSignalExitsAtOnce(t *testing.T) {
	bin := buildStompgate(t)
	addr, adminAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:1", // never dialled: no session needed
		"STOMPGATE_LISTEN_ADDR=" + addr,
		"STOMPGATE_ADMIN_ADDR=" + adminAddr,
		"STOMPGATE_SHUTDOWN_DELAY=20s",
		"STOMPGATE_DRAIN_PERIOD=5s",
		"STOMPGATE_SHUTDOWN_TIMEOUT=30s",
	}
	var logs stomptest.LockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitUntil(t, 5*time.Second, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, 2*time.Second, func() bool { return strings.Contains(logs.String(), `"msg":"draining"`) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("exited after the first signal, during a 20s shutdown delay: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("second signal: %v, want exit status 1", err)
		}
		t.Logf("exited %v after the second signal", time.Since(start).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Fatalf("still running 2s after the second signal:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "second signal: exiting now") {
		t.Errorf("no log line for the second signal:\n%s", logs.String())
	}
}
