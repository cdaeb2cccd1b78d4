package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/proxy"
)

// oversizeRun is one line of e2e/js/oversize_split.mjs.
type oversizeRun struct {
	Run          int      `json:"run"`
	Connected    bool     `json:"connected"`
	ChunksSent   int      `json:"chunksSent"`
	Error        bool     `json:"error"`
	ErrorMessage *string  `json:"errorMessage"`
	Frames       []string `json:"frames"`
	CloseCode    *int     `json:"closeCode"`
	CloseReason  *string  `json:"closeReason"`
	SocketError  *string  `json:"socketError"`
	WSError      *string  `json:"wsError"`
	SendError    *string  `json:"sendError"`
	TimedOut     bool     `json:"timedOut"`
	Ms           int      `json:"ms"`
}

// A Node `ws` client sends a 70 KiB STOMP frame as 16 KiB WebSocket messages
// written back to back (as stompjs 2.x always does, and @stomp/stompjs with
// splitLargeFrames), through stompgate with a 64 KiB frame limit. stompgate
// refuses the frame; the client must see stompgate's STOMP ERROR and then
// close 1009 every time, not a bare 1006 from a TCP RST because stompgate
// closed the socket while the client was still sending.
//
// On Linux the client's kernel keeps the bytes it had received when the RST
// arrives, and on loopback stompgate's ERROR and close frame have left
// before its close, so here a reset rarely costs the client the ERROR or
// the 1009; on other stacks (or with stompgate's frames still queued) it
// does. The test therefore also requires that the client's TCP connection
// was not reset (no ECONNRESET on its socket): the cause, not only the
// symptom.
func TestNodeOversizedSplitFrameGetsErrorAnd1009(t *testing.T) {
	t.Parallel()
	node, jsDir := peers.Node(t)
	const (
		runs     = 20
		maxFrame = 64 << 10
	)
	// The Spring double's own STOMP buffer limit is also 64 KiB, but
	// stompgate refuses the frame at the message that takes it past its
	// limit; the ERROR text below proves the refusal is stompgate's.
	wantMsg := "frame exceeds " + strconv.Itoa(maxFrame) + " bytes"

	b := startSpring(t, 0, 0)
	g := startScenarioGate(t, b.origin(), func(o *proxy.Options) {
		o.STOMP.Limits.MaxFrameBytes = maxFrame
	})
	opts, _ := json.Marshal(map[string]any{"bodyBytes": 70 << 10, "chunkBytes": 16 << 10, "timeoutMs": 10000})
	p := startLineProc(t, 5*time.Minute, jsDir, node, "oversize_split.mjs", g.url("/ws"), strconv.Itoa(runs), string(opts))

	good, errAnd1009, sockErrs := 0, 0, 0
	var bad []string
	for i := 1; i <= runs; i++ {
		line, err := p.next(30 * time.Second)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		var r oversizeRun
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("run %d: script printed %q: %v", i, line, err)
		}
		t.Logf("run %2d: %s", i, line)
		var why []string
		if !r.Connected {
			why = append(why, "no CONNECTED")
		}
		if r.TimedOut {
			why = append(why, "timed out")
		}
		if !r.Error {
			why = append(why, "no ERROR frame")
		} else if r.ErrorMessage == nil || *r.ErrorMessage != wantMsg {
			got := "<none>"
			if r.ErrorMessage != nil {
				got = strconv.Quote(*r.ErrorMessage)
			}
			why = append(why, fmt.Sprintf("ERROR message %s, want stompgate's %q", got, wantMsg))
		}
		if r.CloseCode == nil || *r.CloseCode != 1009 {
			code := "none"
			if r.CloseCode != nil {
				code = strconv.Itoa(*r.CloseCode)
			}
			why = append(why, "close "+code+", want 1009")
		}
		if r.SocketError != nil {
			sockErrs++
			why = append(why, "client socket error (want none; ECONNRESET is the TCP reset): "+*r.SocketError)
		}
		if r.WSError != nil {
			why = append(why, "ws error: "+*r.WSError)
		}
		if r.Error && r.CloseCode != nil && *r.CloseCode == 1009 {
			errAnd1009++
		}
		if len(why) == 0 {
			good++
		} else {
			bad = append(bad, fmt.Sprintf("run %d: %s", r.Run, strings.Join(why, "; ")))
		}
	}
	t.Logf("%d of %d runs got an ERROR and close 1009; %d had a socket error; %d fully as wanted", errAnd1009, runs, sockErrs, good)
	if good != runs {
		t.Errorf("%d of %d runs got stompgate's ERROR, close 1009 and no socket error:\n  %s", good, runs, strings.Join(bad, "\n  "))
	}
}
