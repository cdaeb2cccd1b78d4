package proxy

// Guards of the hot-path rules that live in this package; each rule, its
// mechanism and its figure are in docs/internals/hot-path.md.

import (
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/internal/wstest"
	"github.com/stompgate/stompgate/keepalive"
)

// wsconn.Piece is returned by value for every piece read: at most four
// fields, none an array, so the compiler keeps it in registers
// (docs/internals/hot-path.md#four-fields).
func TestPieceFitsInRegisters(t *testing.T) {
	checkRegisterStruct(t, reflect.TypeFor[wsconn.Piece]())
}

func checkRegisterStruct(t *testing.T, typ reflect.Type) {
	t.Helper()
	if n := typ.NumField(); n > 4 {
		t.Errorf("%v has %d fields; more than 4 makes every returned value a copy through memory (docs/internals/hot-path.md#four-fields)", typ, n)
	}
	for i := range typ.NumField() {
		if f := typ.Field(i); f.Type.Kind() == reflect.Array && f.Type.Len() > 1 {
			t.Errorf("%v.%s is an array of %d: it keeps %v in memory", typ, f.Name, f.Type.Len(), typ)
		}
	}
}

// The frames of the heart-beat timer's common path, as the compiler lays
// them out for amd64 (docs/internals/hot-path.md#timer-frame). Each
// firing runs on a new goroutine whose stack starts small; a frame that
// grows past these bounds may make every heart-beat pay a stack copy.
var frameBounds = []struct {
	fn  string // as in the assembly listing, after the package path
	max int    // bytes of locals
}{
	{"(*liveness).onTimer", 56},
	{"(*leg).sendEOL", 80},
}

func TestTimerFrames(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the bounds are amd64's; frame sizes differ on %s", runtime.GOARCH)
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot ask the compiler for frame sizes")
	}
	// The production build (no race detector, whatever this test was built
	// with), this package only. The build cache replays the listing when
	// nothing changed.
	cmd := exec.Command(goCmd, "build", "-gcflags=github.com/stompgate/stompgate/proxy=-S", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build -gcflags=-S: %v\n%.2000s", err, out)
	}
	for _, b := range frameBounds {
		re := regexp.MustCompile(`TEXT\s+github\.com/stompgate/stompgate/proxy\.` + regexp.QuoteMeta(b.fn) + `\(SB\), ABIInternal, \$(\d+)-\d+`)
		m := re.FindSubmatch(out)
		if m == nil {
			t.Errorf("%s: no TEXT line in the compiler's listing (renamed, or inlined?)", b.fn)
			continue
		}
		n, _ := strconv.Atoi(string(m[1]))
		if n > b.max {
			t.Errorf("%s has a %d-byte frame, want at most %d (docs/internals/hot-path.md#timer-frame)", b.fn, n, b.max)
		} else {
			t.Logf("%s: %d-byte frame (bound %d)", b.fn, n, b.max)
		}
	}
}

// A heart-beat timer firing that writes an EOL to each peer allocates
// nothing: the engine's snapshot (activity, with its heardSince functions
// made once), Tick, the timer's re-arming and both writes
// (docs/internals/hot-path.md#timer-allocs).
func TestTimerEOLAllocatesNothing(t *testing.T) {
	p, c, b := connectedSession(t, stompOpts(nil))
	sessions := p.h.openSessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions open, want 1", len(sessions))
	}
	s := sessions[0]
	lv := &s.live
	// Each run starts the engine over, connected an hour ago with EOLs
	// due every half hour to both peers and nothing expected from them,
	// so that the firing sends an EOL to each and re-arms the timer far
	// away (the real firing never comes during the test).
	cfg := p.h.opts.STOMP.Keepalive
	sent := 0
	fire := func() {
		past := time.Now().Add(-time.Hour)
		eols := keepalive.Periods{Send: time.Hour}
		lv.mu.Lock()
		lv.ka.Init(cfg, past)
		lv.ka.ConnectForwarded(past, inspect.V12)
		lv.ka.UpstreamConnected(past, inspect.V12, eols)
		lv.ka.ClientConnected(past, inspect.V12, eols)
		lv.mu.Unlock()
		now := wsconn.Now()
		for _, l := range []*leg{s.client, s.upstream} {
			l.readAt.Store(now)
			l.writeAt.Store(0)
		}
		before := s.client.heartBeatsSent.Load() + s.upstream.heartBeatsSent.Load()
		lv.onTimer()
		sent += int(s.client.heartBeatsSent.Load() + s.upstream.heartBeatsSent.Load() - before)
	}
	for range 10 { // warm the write buffers' pool
		fire()
	}
	const runs = 200 // 600 bytes to each peer, unread: well within a socket's buffers
	allocs := testing.AllocsPerRun(runs, fire)
	if want := 2 * (10 + runs + 1); sent != want {
		t.Fatalf("%d EOLs sent, want %d: the firing did not take the EOL path", sent, want)
	}
	if mc, err := readMsg(c, time.Second); err != nil || mc != "\n" {
		t.Errorf("client got %q, %v; want an EOL", mc, err)
	}
	if mb, err := readMsg(b, time.Second); err != nil || mb != "\n" {
		t.Errorf("broker got %q, %v; want an EOL", mb, err)
	}
	if wstest.RaceEnabled {
		t.Skipf("%.1f allocations per firing; not checked with the race detector (sync.Pool drops buffers)", allocs)
	}
	if allocs != 0 {
		t.Errorf("%.1f allocations per timer firing with two EOLs, want 0", allocs)
	}
}
