package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/internal/stomptest"
)

// envDemoScreenshot names the variable that asks TestDemoInChromium to copy
// its screenshot somewhere (relative paths are from the repository root),
// e.g. STOMPGATE_DEMO_SCREENSHOT=docs/demo.png.
const envDemoScreenshot = "STOMPGATE_DEMO_SCREENSHOT"

// demoChromium returns the Chromium that e2e/js/demo_chromium.mjs drives
// (STOMPGATE_CHROMIUM, default Debian's /usr/bin/chromium) after checking
// that it and playwright-core are installed. Like the peers package, it
// skips when they are missing, or fails with STOMPGATE_E2E=require.
func demoChromium(t *testing.T, jsDir string) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...) + "; run `make peers` (scripts/test-deps.sh) to install it"
		if peers.Required() {
			t.Fatalf("%s (%s=require, so this fails instead of skipping)", msg, peers.EnvE2E)
		}
		t.Skip(msg)
	}
	chromium := os.Getenv("STOMPGATE_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if fi, err := os.Stat(chromium); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		missing("no Chromium at %s (Debian package chromium): %v", chromium, err)
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing("node package playwright-core is not installed in %s (npm ci there)", jsDir)
	}
	return chromium
}

// demoResult is what demo_chromium.mjs prints.
type demoResult struct {
	OK          bool             `json:"ok"`
	Browser     string           `json:"browser"`
	Body        string           `json:"body"`
	ConnectedMs int              `json:"connectedMs"`
	RoundTripMs int              `json:"roundTripMs"`
	MovedMs     int              `json:"movedMs"`
	Before      map[string]int64 `json:"before"`
	After       map[string]int64 `json:"after"`
	Page        struct {
		State      string            `json:"state"`
		Version    string            `json:"version"`
		HeartBeat  string            `json:"heartBeat"`
		Periods    string            `json:"periods"`
		HBSent     int               `json:"hbSent"`
		HBReceived int               `json:"hbReceived"`
		Sessions   int               `json:"sessions"`
		Offered    map[string]string `json:"offered"`
	} `json:"page"`
	Drain *struct {
		Status     int    `json:"status"`
		Close      string `json:"close"`
		StompError string `json:"stompError"`
	} `json:"drain"`
	PageErrors []string `json:"pageErrors"`
	Error      *string  `json:"error"`
}

// `stompgate demo`, as the README tells a newcomer to run it, opened in
// headless Chromium: the page connects through stompgate to the embedded
// broker, a message typed into it round-trips, and the page shows
// stompgate's heart-beat counters moving on both hops. The screenshot is
// the one in docs/demo.png (STOMPGATE_DEMO_SCREENSHOT=docs/demo.png
// refreshes it).
func TestDemoInChromium(t *testing.T) {
	node, jsDir := peers.Node(t)
	chromium := demoChromium(t, jsDir)
	bin := buildStompgate(t)
	listen, admin := freeAddr(t), freeAddr(t)
	if os.Getenv(envDemoScreenshot) != "" && portsFree(demoListen, demoAdmin) {
		// The screenshot for the docs shows the addresses the README gives.
		listen, admin = demoListen, demoAdmin
	}

	cmd := exec.Command(bin, "demo")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"STOMPGATE_LISTEN_ADDR=" + listen,
		"STOMPGATE_ADMIN_ADDR=" + admin,
		"STOMPGATE_LOG_LEVEL=debug",
	}
	logs := &stomptest.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("stompgate demo output:\n%s", logs.String())
		}
	})

	pageURL := "http://" + listen + "/"
	var page []byte
	if !eventually(10*time.Second, func() bool {
		resp, err := http.Get(pageURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		page, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("stompgate demo did not serve %s within 10s", pageURL)
	}
	_, adminPort, _ := strings.Cut(admin, ":")
	if !bytes.Contains(page, []byte(`data-admin-port="`+adminPort+`"`)) {
		t.Fatalf("the page does not name the admin port %s:\n%s", adminPort, page)
	}
	if !strings.Contains(logs.String(), "open "+pageURL) {
		t.Errorf("stompgate demo did not tell where to open the page:\n%s", logs.String())
	}

	shot := filepath.Join(t.TempDir(), "demo.png")
	p := startLineProc(t, 90*time.Second, jsDir, node, "demo_chromium.mjs", pageURL, shot, adminURL(admin, "/drain"))
	line, err := p.next(80 * time.Second)
	if err != nil {
		t.Fatalf("demo_chromium.mjs (Chromium %s): %v", chromium, err)
	}
	t.Logf("demo_chromium.mjs: %s", line)
	var r demoResult
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("demo_chromium.mjs printed %q: %v", line, err)
	}
	if !r.OK || r.Error != nil {
		msg := "no error given"
		if r.Error != nil {
			msg = *r.Error
		}
		t.Fatalf("the demo page failed in Chromium: %s", msg)
	}
	if len(r.PageErrors) > 0 {
		t.Errorf("errors in the page: %q", r.PageErrors)
	}
	if r.Page.Sessions != 1 {
		t.Errorf("the page shows %d sessions, want 1 (its own)", r.Page.Sessions)
	}
	// Both hops, as the page shows them: what the peer offered → what
	// stompgate sent (the demo's 2000,2000 everywhere).
	for _, hop := range []string{"client", "upstream"} {
		if got := r.Page.Offered[hop]; got != "2000,2000 → 2000,2000" {
			t.Errorf("%s hop heart-beat on the page: %q, want 2000,2000 → 2000,2000", hop, got)
		}
		for _, dir := range []string{"sent", "received"} {
			id := "hb-" + hop + "-" + dir
			if r.After[id] < r.Before[id]+2 {
				t.Errorf("%s: %d → %d; want it to move by 2 or more", id, r.Before[id], r.After[id])
			}
		}
	}
	if r.Page.HeartBeat != "2000,2000" || r.Page.Version != "v12.stomp / 1.2" {
		t.Errorf("the page negotiated heart-beat %q, version %q; want 2000,2000 and v12.stomp / 1.2", r.Page.HeartBeat, r.Page.Version)
	}
	checkScreenshot(t, shot)
	// POST /drain: the page reports the ERROR frame and the close code that
	// end its session.
	if d := r.Drain; d == nil || d.Status != http.StatusAccepted || !strings.HasPrefix(d.Close, "1012") ||
		d.StompError != "server restarting, reconnect" {
		t.Errorf("after POST /drain the page shows %+v; want close 1012 and the ERROR message \"server restarting, reconnect\"", d)
	}
	<-p.done

	// The session is gone.
	sessions := adminURL(admin, "/debug/sessions")
	if !eventually(10*time.Second, func() bool { return strings.TrimSpace(httpBody(sessions)) == "[]" }) {
		t.Errorf("sessions left after the browser closed: %s", httpBody(sessions))
	}

	if dst := os.Getenv(envDemoScreenshot); dst != "" {
		if !filepath.IsAbs(dst) {
			dst = filepath.Join(peers.RepoRoot(t), dst)
		}
		b, err := os.ReadFile(shot)
		if err == nil {
			err = os.WriteFile(dst, b, 0o644)
		}
		if err != nil {
			t.Fatalf("%s: %v", envDemoScreenshot, err)
		}
		t.Logf("screenshot copied to %s", dst)
	}

	stopped = true
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("stompgate demo exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Errorf("stompgate demo did not stop within 10s of SIGTERM")
	}
	if r.Body == "" || strings.Contains(logs.String(), r.Body) {
		t.Errorf("the message body %q is in stompgate's log, or the script did not report it", r.Body)
	}
}

// The addresses `stompgate demo` listens on by default.
const demoListen, demoAdmin = "127.0.0.1:8090", "127.0.0.1:9095"

// portsFree reports whether every addr can be listened on now.
func portsFree(addrs ...string) bool {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

func adminURL(addr, path string) string { return "http://" + addr + path }

func httpBody(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// checkScreenshot checks that the file is a PNG of a page, not an empty
// or tiny image.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("screenshot is %dx%d, want at least 800x600", b.Dx(), b.Dy())
	}
}
