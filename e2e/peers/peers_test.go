package peers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeTB records Skipf and Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

// unusedLoopbackURL returns a ws:// URL on a loopback port nothing listens on.
func unusedLoopbackURL(t *testing.T) string {
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("ws://127.0.0.1:%d/ws", port)
}

func TestMissingPeerSkipsOrFails(t *testing.T) {
	url := unusedLoopbackURL(t)

	t.Setenv(EnvE2E, "")
	f := &fakeTB{TB: t}
	if got := rabbitMQWebSTOMP(f, url); got != "" || f.skipped == "" || f.fatal != "" {
		t.Fatalf("without %s=require: got %q, skipped %q, fatal %q; want a skip", EnvE2E, got, f.skipped, f.fatal)
	}
	if !strings.Contains(f.skipped, "make peers") {
		t.Errorf("skip message %q does not say how to get the peers", f.skipped)
	}

	t.Setenv(EnvE2E, "require")
	f = &fakeTB{TB: t}
	if got := rabbitMQWebSTOMP(f, url); got != "" || f.fatal == "" || f.skipped != "" {
		t.Fatalf("with %s=require: got %q, skipped %q, fatal %q; want a failure", EnvE2E, got, f.skipped, f.fatal)
	}
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "module github.com/stompgate/stompgate") {
		t.Fatalf("%s/go.mod is not stompgate's", root)
	}
}

// TestRabbitMQWebSTOMP logs in over Web-STOMP with the default loopback user.
func TestRabbitMQWebSTOMP(t *testing.T) {
	url := RabbitMQWebSTOMP(t)
	conn := dialSTOMP(t, url)
	if _, err := conn.Write([]byte("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	got := readFrame(t, conn)
	if !strings.HasPrefix(got, "CONNECTED\n") || !strings.Contains(got, "\nversion:1.2\n") {
		t.Fatalf("CONNECT answered with %q, want a CONNECTED frame for STOMP 1.2", got)
	}
}

func TestPython3Websockets(t *testing.T) {
	py := Python3Websockets(t)
	out, err := exec.Command(py, "-c", "import websockets; print(websockets.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", py, err, out)
	}
	t.Logf("%s, websockets %s", py, strings.TrimSpace(string(out)))
}

func TestNode(t *testing.T) {
	node, dir := Node(t)
	cmd := exec.Command(node, "-e", `require("ws"); const {Client} = require("@stomp/stompjs"); if (typeof Client !== "function") process.exit(1)`)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node cannot load the e2e/js packages: %v: %s", err, out)
	}
}

func TestStartNginx(t *testing.T) {
	addr := StartNginx(t, `
server {
    listen {{.Listen}};
    location / {
        return 200 "hello from {{.Port}}\n";
    }
}
`)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("StartNginx returned %q, want 127.0.0.1:PORT", addr)
	}
	body := httpGet(t, "http://"+addr+"/")
	if want := "hello from " + port + "\n"; body != want {
		t.Fatalf("GET / = %q, want %q", body, want)
	}
}

func TestStartNginxBadConfig(t *testing.T) {
	Nginx(t)
	f := &fakeTB{TB: t}
	StartNginx(f, "server { listen {{.Listen}}; no_such_directive on; }")
	if !strings.Contains(f.fatal, "no_such_directive") {
		t.Fatalf("StartNginx with a broken config: fatal %q, want nginx's complaint about no_such_directive", f.fatal)
	}
}

// TestNginxProxiesWebSTOMP puts nginx, configured as a WebSocket reverse
// proxy, in front of RabbitMQ and logs in through it.
func TestNginxProxiesWebSTOMP(t *testing.T) {
	RabbitMQWebSTOMP(t)
	addr := StartNginx(t, `
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}
server {
    listen {{.Listen}};
    location /ws {
        proxy_pass http://127.0.0.1:15674;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout 120s;
    }
}
`)
	conn := dialSTOMP(t, "ws://"+addr+"/ws")
	if _, err := conn.Write([]byte("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, conn); !strings.HasPrefix(got, "CONNECTED\n") {
		t.Fatalf("CONNECT through nginx answered with %q", got)
	}
}

type wsConn struct{ *websocket.Conn }

func (c wsConn) Write(b []byte) (int, error) {
	return len(b), c.WriteMessage(websocket.TextMessage, b)
}

func dialSTOMP(t *testing.T, url string) wsConn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{STOMPSubprotocol}}
	conn, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	if conn.Subprotocol() != STOMPSubprotocol {
		t.Fatalf("subprotocol %q, want %q", conn.Subprotocol(), STOMPSubprotocol)
	}
	return wsConn{conn}
}

func readFrame(t *testing.T, c wsConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
