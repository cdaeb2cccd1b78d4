package stompflow

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/keepalive"
)

// The tests feed a conversation messages, as any transport would, and
// compare what each direction forwarded (as whole messages) and what the
// observer was told.

const (
	text   = 1 // message types as a transport gives them (WebSocket's values)
	binary = 2
)

// recorder is the observer: it writes each event as a line.
type recorder struct{ events []string }

func (r *recorder) NotSTOMP(why string) { r.events = append(r.events, "not STOMP: "+why) }
func (r *recorder) ConnectForwarded(v inspect.Version) {
	r.events = append(r.events, "connect forwarded "+v.String())
}
func (r *recorder) DisconnectForwarded() { r.events = append(r.events, "disconnect forwarded") }
func (r *recorder) Connected(v inspect.Version, up, client keepalive.Periods) {
	r.events = append(r.events, fmt.Sprintf("connected %v upstream %v/%v client %v/%v", v, up.Send, up.Recv, client.Send, client.Recv))
}
func (r *recorder) OwnReceipt() { r.events = append(r.events, "own receipt") }

// msgSink is the Sink of one message: it joins what the Direction wrote,
// and keeps held messages forwarded ahead of it.
type msgSink struct {
	held  []string
	data  strings.Builder
	wrote bool
}

func (m *msgSink) Chunk(b []byte) { m.data.Write(b); m.wrote = true }
func (m *msgSink) Write(b []byte) {
	if len(b) > 0 {
		m.data.Write(b)
		m.wrote = true
	}
}
func (m *msgSink) WriteMessage(typ int, data []byte) {
	m.held = append(m.held, fmt.Sprintf("%d:%q", typ, data))
}

// msg is one message in: its chunks (a message may arrive in pieces).
type msg struct {
	fromClient bool
	typ        int
	chunks     []string
}

func c(chunks ...string) msg { return msg{fromClient: true, typ: text, chunks: chunks} }
func u(chunks ...string) msg { return msg{typ: text, chunks: chunks} }

// feed passes m through conv and returns what was forwarded, one string
// per message ("type:payload"), and the error, if any.
func feed(conv *Conversation, m msg) ([]string, error) {
	d := &conv.UpstreamToClient
	if m.fromClient {
		d = &conv.ClientToUpstream
	}
	out := &msgSink{}
	empty := true
	for _, ch := range m.chunks {
		if len(ch) == 0 {
			continue
		}
		empty = false
		if d.Scanning() {
			if err := d.Feed([]byte(ch), out); err != nil {
				return out.held, err
			}
		} else {
			out.Chunk([]byte(ch))
		}
	}
	forwardEmpty, err := d.EndMessage(m.typ, empty, out)
	if err != nil {
		return out.held, err
	}
	got := out.held
	if out.wrote || forwardEmpty {
		got = append(got, fmt.Sprintf("%d:%q", m.typ, out.data.String()))
	}
	return got, nil
}

func out(payloads ...string) []string {
	var s []string
	for _, p := range payloads {
		s = append(s, fmt.Sprintf("%d:%q", text, p))
	}
	return s
}

var (
	upstreamHB = inspect.HeartBeat{Send: 10 * time.Second, Receive: 10 * time.Second}
	clientHB   = inspect.HeartBeat{Send: 20 * time.Second, Receive: 20 * time.Second}
)

func config(mode keepalive.Mode, strict bool) Config {
	return Config{Mode: mode, Strict: strict, UpstreamHeartBeat: upstreamHB, ClientHeartBeat: clientHB}
}

const (
	connect    = "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\x00"
	connected  = "CONNECTED\nversion:1.2\nheart-beat:5000,5000\n\n\x00"
	send       = "SEND\ndestination:/queue/a\ncontent-length:5\n\nhe\x00lo\x00"
	disconnect = "DISCONNECT\n\n\x00"
)

// step is one message in and what it must produce.
type step struct {
	in      msg
	want    []string // forwarded messages; nil: nothing
	wantErr string   // the error's text, when one is expected
}

func TestFlow(t *testing.T) {
	tests := []struct {
		name        string
		mode        keepalive.Mode
		strict      bool
		subprotocol string
		steps       []step
		events      []string
	}{
		{
			name: "CONNECT's heart-beat is what stompgate promises the broker",
			steps: []step{
				{in: c(connect), want: out("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2"},
		},
		{
			name: "a CONNECT split across chunks is held until whole",
			steps: []step{
				{in: c("CONN", "ECT\naccept-version:1.1,1.2\nhe", "art-beat:1000,0\n\n", "\x00"), want: out("CONNECT\naccept-version:1.1,1.2\nheart-beat:10000,10000\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2"},
		},
		{
			name: "a CONNECT without heart-beat gets stompgate's",
			steps: []step{
				{in: c("STOMP\naccept-version:1.2\n\n\x00"), want: out("STOMP\nheart-beat:10000,10000\naccept-version:1.2\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2"},
		},
		{
			name: "CONNECTED's heart-beat is what stompgate promises the client; each hop negotiated apart",
			steps: []step{
				{in: c(connect), want: out("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00")},
				{in: u(connected), want: out("CONNECTED\nversion:1.2\nheart-beat:20000,20000\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2", "connected 1.2 upstream 10s/10s client 0s/0s"},
		},
		{
			name: "Passthrough normalises heart-beat but keeps its values; one contract end to end",
			mode: keepalive.Passthrough,
			steps: []step{
				{in: c("CONNECT\naccept-version:1.2\nheart-beat:10000, 10000\n\n\x00"), want: out("CONNECT\naccept-version:1.2\nheart-beat:10000,10000\n\n\x00")},
				{in: u(connected), want: out(connected)},
			},
			events: []string{"connect forwarded 1.2", "connected 1.2 upstream 10s/10s client 10s/10s"},
		},
		{
			name: "Passthrough leaves a CONNECT without heart-beat alone",
			mode: keepalive.Passthrough,
			steps: []step{
				{in: c("CONNECT\naccept-version:1.2\n\n\x00"), want: out("CONNECT\naccept-version:1.2\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2"},
		},
		{
			name: "frames are forwarded byte for byte, however they are cut",
			steps: []step{
				{in: c(connect), want: out("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00")},
				{in: c(send), want: out(send)},
				{in: c("SE", "ND\ndestination:/q\n", "\nbody", "\x00"), want: out("SEND\ndestination:/q\n\nbody\x00")},
				{in: c(send + send), want: out(send + send)},
			},
			events: []string{"connect forwarded 1.2"},
		},
		{
			name: "Terminate consumes heart-beats both ways; an empty message is one",
			steps: []step{
				{in: c(connect), want: out("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00")},
				{in: u(connected), want: out("CONNECTED\nversion:1.2\nheart-beat:20000,20000\n\n\x00")},
				{in: c("\n")},
				{in: u("\r\n")},
				{in: c()},
				{in: u()},
				{in: c(send + "\n"), want: out(send)},
			},
			events: []string{"connect forwarded 1.2", "connected 1.2 upstream 10s/10s client 0s/0s"},
		},
		{
			name: "Passthrough relays heart-beats and empty messages",
			mode: keepalive.Passthrough,
			steps: []step{
				{in: c(connect), want: out(connect)},
				{in: u(connected), want: out(connected)},
				{in: c("\n"), want: out("\n")},
				{in: u("\n"), want: out("\n")},
				{in: c(), want: out("")},
			},
			events: []string{"connect forwarded 1.2", "connected 1.2 upstream 0s/0s client 0s/0s"},
		},
		{
			name: "the broker's bytes before CONNECT are not scanned",
			steps: []step{
				{in: u("not\x00stomp"), want: out("not\x00stomp")},
				{in: u(), want: out("")},
			},
		},
		{
			name: "heart-beats before CONNECT are held, then dropped (Terminate)",
			steps: []step{
				{in: c("\n")},
				{in: c()},
				{in: c(connect), want: out("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2"},
		},
		{
			name: "heart-beats before CONNECT are held, then forwarded as they came (Passthrough)",
			mode: keepalive.Passthrough,
			steps: []step{
				{in: c("\n")},
				{in: msg{fromClient: true, typ: binary}},
				{in: c("\n" + connect), want: []string{`1:"\n"`, `2:""`, fmt.Sprintf("%d:%q", text, "\n"+connect)}},
			},
			events: []string{"connect forwarded 1.2"},
		},
		{
			name: "the client's DISCONNECT gets stompgate's receipt, whose RECEIPT is consumed",
			steps: []step{
				{in: c(connect), want: out("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00")},
				{in: u(connected), want: out("CONNECTED\nversion:1.2\nheart-beat:20000,20000\n\n\x00")},
				{in: c(disconnect), want: out("DISCONNECT\nreceipt:stompgate-s1\n\n\x00")},
				{in: u("RECEIPT\nreceipt-id:stompgate-s1\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2", "connected 1.2 upstream 10s/10s client 0s/0s", "disconnect forwarded", "own receipt"},
		},
		{
			name: "a DISCONNECT with its own receipt is the client's, and so is the RECEIPT",
			steps: []step{
				{in: c(connect), want: out("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00")},
				{in: u(connected), want: out("CONNECTED\nversion:1.2\nheart-beat:20000,20000\n\n\x00")},
				{in: c("DISCONNECT\nreceipt:77\n\n\x00"), want: out("DISCONNECT\nreceipt:77\n\n\x00")},
				{in: u("RECEIPT\nreceipt-id:77\n\n\x00"), want: out("RECEIPT\nreceipt-id:77\n\n\x00")},
			},
			events: []string{"connect forwarded 1.2", "connected 1.2 upstream 10s/10s client 0s/0s", "disconnect forwarded"},
		},
		{
			name: "Passthrough adds no receipt",
			mode: keepalive.Passthrough,
			steps: []step{
				{in: c(connect), want: out(connect)},
				{in: c(disconnect), want: out(disconnect)},
			},
			events: []string{"connect forwarded 1.2", "disconnect forwarded"},
		},
		{
			name:  "a first message that is not STOMP makes the conversation pass-through",
			steps: []step{{in: c("hello"), want: out("hello")}, {in: c("\n"), want: out("\n")}},
			events: []string{
				"not STOMP: client's first message is not a STOMP frame",
			},
		},
		{
			name:   "strict refuses a first message that is not STOMP",
			strict: true,
			steps:  []step{{in: c("hello"), wantErr: "first frame must be CONNECT or STOMP"}},
		},
		{
			name:   "a first frame that is not CONNECT makes it pass-through",
			steps:  []step{{in: c(send), want: out(send)}},
			events: []string{"not STOMP: first client frame is SEND"},
		},
		{
			name:   "a first line that is no command makes it pass-through",
			steps:  []step{{in: c("GET / HTTP/1.1\r\n\r\n"), want: out("GET / HTTP/1.1\r\n\r\n")}},
			events: []string{"not STOMP: first client frame is UNKNOWN"},
		},
		{
			name:   "strict refuses a first frame that is not CONNECT",
			strict: true,
			steps:  []step{{in: c(send), wantErr: "first frame must be CONNECT or STOMP, got SEND"}},
		},
		{
			name:   "a first message the scanner rejects makes it pass-through",
			steps:  []step{{in: c("\x00\x00junk"), want: out("\x00\x00junk")}},
			events: []string{"not STOMP: client sent no STOMP frame: NUL octet outside a frame"},
		},
		{
			name:   "a subprotocol that is not STOMP's passes through from the start, unscanned",
			steps:  []step{{in: c("\n"), want: out("\n")}, {in: c(send), want: out(send)}},
			events: nil,
			// set below
			subprotocol: "mqtt",
		},
		{
			name:  "an invalid heart-beat in CONNECT is the client's error",
			steps: []step{{in: c("CONNECT\naccept-version:1.2\nheart-beat:x\n\n\x00"), wantErr: "invalid heart-beat header in CONNECT"}},
		},
		{
			name: "STOMP 1.0: CONNECTED keeps its heart-beat",
			steps: []step{
				{in: c("CONNECT\n\n\x00"), want: out("CONNECT\nheart-beat:10000,10000\n\n\x00")},
				{in: u("CONNECTED\nsession:1\n\n\x00"), want: out("CONNECTED\nsession:1\n\n\x00")},
			},
			events: []string{"connect forwarded 1.0", "connected 1.0 upstream 0s/0s client 0s/0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			conv := New(config(tt.mode, tt.strict), "s1", tt.subprotocol, rec)
			for i, st := range tt.steps {
				got, err := feed(conv, st.in)
				if st.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), st.wantErr) {
						t.Fatalf("step %d: error %v, want %q", i, err, st.wantErr)
					}
					var fe *Error
					var ie *inspect.Error
					if !errors.As(err, &fe) && !errors.As(err, &ie) {
						t.Errorf("step %d: error %T, want *stompflow.Error or *inspect.Error", i, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if !reflect.DeepEqual(got, st.want) {
					t.Errorf("step %d: forwarded\n %q\nwant\n %q", i, got, st.want)
				}
			}
			if !reflect.DeepEqual(rec.events, tt.events) {
				t.Errorf("events\n %q\nwant\n %q", rec.events, tt.events)
			}
		})
	}
}

// A client sending more messages than a STOMP client would before its
// first frame is not STOMP: what was held goes through as it came.
func TestTooManyMessagesBeforeAFrame(t *testing.T) {
	rec := &recorder{}
	conv := New(config(keepalive.Terminate, false), "s1", "", rec)
	for i := 0; i < maxLeadMsgs; i++ {
		if got, err := feed(conv, c("\n")); err != nil || got != nil {
			t.Fatalf("message %d: %q, %v; want it held", i, got, err)
		}
	}
	got, err := feed(conv, c("\n"))
	if err != nil || len(got) != maxLeadMsgs+1 {
		t.Fatalf("message %d: %d forwarded, %v; want all %d", maxLeadMsgs, len(got), err, maxLeadMsgs+1)
	}
	if !conv.Disabled() || len(rec.events) != 1 || !strings.HasPrefix(rec.events[0], "not STOMP") {
		t.Errorf("disabled %v, events %q", conv.Disabled(), rec.events)
	}
}

// The first ERROR the client is forwarded is the one the session line
// names; one arriving after the end (an answer to stompgate's goodbye) is
// not.
func TestErrorMessage(t *testing.T) {
	conv := New(config(keepalive.Terminate, false), "s1", "v12.stomp", &recorder{})
	feed(conv, c(connect))
	feed(conv, u("ERROR\nmessage:bad\\cthing\n\n\x00"))
	if m, ok := conv.ErrorMessage(); !ok || m != `bad\cthing` {
		t.Errorf("ErrorMessage = %q, %v; want the first ERROR's raw header", m, ok)
	}
	if conv.ClaimError() {
		t.Error("ClaimError after the broker's ERROR: want false, the client has its ERROR")
	}

	conv = New(config(keepalive.Terminate, false), "s1", "v12.stomp", &recorder{})
	feed(conv, c(connect))
	conv.End()
	feed(conv, u("ERROR\nmessage:Session closed.\n\n\x00"))
	if m, ok := conv.ErrorMessage(); ok {
		t.Errorf("ErrorMessage = %q after the end; want none", m)
	}
}

// ClaimError lets stompgate send its own ERROR once, and only to a client
// that speaks STOMP and has not disconnected.
func TestClaimError(t *testing.T) {
	conv := New(config(keepalive.Terminate, false), "s1", "", &recorder{})
	if conv.ClaimError() {
		t.Error("before CONNECT: want false")
	}
	feed(conv, c(connect))
	if !conv.ClaimError() || conv.ClaimError() {
		t.Error("after CONNECT: want true once")
	}
	conv = New(config(keepalive.Terminate, false), "s1", "", &recorder{})
	feed(conv, c(connect))
	feed(conv, c(disconnect))
	if conv.ClaimError() {
		t.Error("after the client's DISCONNECT: want false")
	}
}

// Goodbye gives a connected broker one DISCONNECT whose RECEIPT is
// stompgate's.
func TestGoodbye(t *testing.T) {
	rec := &recorder{}
	conv := New(config(keepalive.Terminate, false), "s1", "", rec)
	feed(conv, c(connect))
	if _, ok := conv.Goodbye("bye"); ok {
		t.Error("before CONNECTED: want no DISCONNECT")
	}
	feed(conv, u(connected))
	frame, ok := conv.Goodbye("bye")
	if !ok || string(frame) != "DISCONNECT\nreceipt:bye\n\n\x00" {
		t.Fatalf("Goodbye = %q, %v", frame, ok)
	}
	conv.GoodbyeSent()
	if _, ok := conv.Goodbye("again"); ok {
		t.Error("after GoodbyeSent: want no second DISCONNECT")
	}
	conv.End()
	if !conv.AwaitsReceipt() || !conv.UpstreamToClient.Scanning() {
		t.Fatal("after the goodbye the broker's frames are scanned for the receipt")
	}
	if got, _ := feed(conv, u("RECEIPT\nreceipt-id:bye\n\n\x00")); got != nil {
		t.Errorf("the goodbye's RECEIPT was forwarded: %q", got)
	}
	if last := rec.events[len(rec.events)-1]; last != "own receipt" {
		t.Errorf("last event %q, want own receipt", last)
	}
}

// ErrorFrame escapes its message header for the version and keeps the
// body as it is.
func TestErrorFrame(t *testing.T) {
	got := string(ErrorFrame(inspect.V12, "a:b\nc"))
	want := "ERROR\ncontent-type:text/plain\nmessage:a\\cb\\nc\ncontent-length:5\n\na:b\nc\x00"
	if got != want {
		t.Errorf("ErrorFrame = %q, want %q", got, want)
	}
}

// Feeding allocates nothing for frames that pass through.
func TestFeedAllocatesNothing(t *testing.T) {
	conv := New(config(keepalive.Terminate, false), "s1", "v12.stomp", &recorder{})
	feed(conv, c(connect))
	feed(conv, u(connected))
	chunk := []byte(send + "\n" + send)
	var sink discardSink
	allocs := testing.AllocsPerRun(1000, func() {
		d := &conv.ClientToUpstream
		if err := d.Feed(chunk, &sink); err != nil {
			t.Fatal(err)
		}
		if _, err := d.EndMessage(text, false, &sink); err != nil {
			t.Fatal(err)
		}
		d.Publish()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
}

type discardSink struct{}

func (discardSink) Chunk([]byte)             {}
func (discardSink) Write([]byte)             {}
func (discardSink) WriteMessage(int, []byte) {}
