// Package peers locates the real protocol peers that stompgate's end-to-end
// tests run against: RabbitMQ's Web-STOMP endpoint, python3 with the
// websockets module, nginx, and Node.js with the client packages of e2e/js.
//
// `make peers` (scripts/test-deps.sh) installs all of them and starts
// RabbitMQ on 127.0.0.1. Each helper here checks that its peer is really
// usable and, when it is not, skips the test with a message saying what is
// missing. With STOMPGATE_E2E=require in the environment (as `make test` and
// CI set it) a missing peer fails the test instead, so a broken setup cannot
// pass as a run of skipped tests.
package peers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// EnvE2E names the environment variable that, set to "require", turns a
// missing peer from a skip into a test failure.
const EnvE2E = "STOMPGATE_E2E"

// RabbitMQWebSTOMPURL is where scripts/test-deps.sh starts RabbitMQ's
// Web-STOMP listener (user guest, passcode guest, vhost "/").
const RabbitMQWebSTOMPURL = "ws://127.0.0.1:15674/ws"

// STOMPSubprotocol is the WebSocket subprotocol for STOMP 1.2.
const STOMPSubprotocol = "v12.stomp"

const hint = "run `make peers` (scripts/test-deps.sh) to install and start the test peers"

// Required reports whether missing peers fail tests (STOMPGATE_E2E=require)
// rather than skip them.
func Required() bool { return os.Getenv(EnvE2E) == "require" }

// missing skips the test, or fails it when peers are required. Callers
// return right after it: a test double's Skipf may return.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (%s=require, so this fails instead of skipping); %s", msg, EnvE2E, hint)
		return
	}
	t.Skipf("%s; %s (set %s=require to fail instead of skip)", msg, hint, EnvE2E)
}

// RabbitMQWebSTOMP returns the URL of RabbitMQ's Web-STOMP endpoint,
// ws://127.0.0.1:15674/ws, after checking that it accepts a WebSocket
// upgrade for subprotocol v12.stomp.
func RabbitMQWebSTOMP(t testing.TB) string {
	t.Helper()
	return rabbitMQWebSTOMP(t, RabbitMQWebSTOMPURL)
}

func rabbitMQWebSTOMP(t testing.TB, url string) string {
	t.Helper()
	if err := probeWebSocket(url, STOMPSubprotocol); err != nil {
		missing(t, "RabbitMQ Web-STOMP is not usable at %s: %v", url, err)
		return ""
	}
	return url
}

// probeWebSocket opens a WebSocket to url asking for subprotocol and closes
// it again.
func probeWebSocket(url, subprotocol string) error {
	d := websocket.Dialer{
		HandshakeTimeout: 3 * time.Second,
		Subprotocols:     []string{subprotocol},
	}
	conn, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("upgrade refused with HTTP %s: %w", resp.Status, err)
		}
		return err
	}
	defer conn.Close()
	if got := conn.Subprotocol(); got != subprotocol {
		return fmt.Errorf("server chose subprotocol %q, want %q", got, subprotocol)
	}
	_ = conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	return nil
}

// Python3Websockets returns the path of a python3 interpreter that can
// import the websockets module (Debian's python3-websockets, so
// /usr/bin/python3 is tried before the python3 on PATH).
func Python3Websockets(t testing.TB) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil && p != candidates[0] {
		candidates = append(candidates, p)
	}
	var problems []error
	for _, py := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c", "import websockets").CombinedOutput()
		cancel()
		if err == nil {
			return py
		}
		problems = append(problems, fmt.Errorf("%s: %v: %s", py, err, lastLine(out)))
	}
	missing(t, "no python3 with the websockets module: %v", errors.Join(problems...))
	return ""
}

// Nginx returns the path of the nginx binary.
func Nginx(t testing.TB) string {
	t.Helper()
	p, err := nginxPath()
	if err != nil {
		missing(t, "nginx not found: %v", err)
		return ""
	}
	return p
}

func nginxPath() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	// /usr/sbin is not on every user's PATH.
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("not on PATH, nor in /usr/sbin or /usr/local/sbin")
}

// Node returns the node binary and the e2e/js directory of the repository,
// whose node_modules holds @stomp/stompjs and ws. Run node scripts with
// cmd.Dir = jsDir so that require() finds them.
func Node(t testing.TB) (nodeBin, jsDir string) {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node not found on PATH: %v", err)
		return "", ""
	}
	root, err := repoRoot()
	if err != nil {
		missing(t, "cannot locate the repository root: %v", err)
		return "", ""
	}
	jsDir = filepath.Join(root, "e2e", "js")
	for _, pkg := range []string{"@stomp/stompjs", "ws"} {
		if _, err := os.Stat(filepath.Join(jsDir, "node_modules", pkg, "package.json")); err != nil {
			missing(t, "node package %s is not installed in %s (npm ci there)", pkg, jsDir)
			return "", ""
		}
	}
	return nodeBin, jsDir
}

// RepoRoot returns the repository root: the nearest directory at or above
// the test's working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	return root
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod at or above %s", wd)
		}
		dir = parent
	}
}

func lastLine(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}
