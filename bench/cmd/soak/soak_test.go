package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseProm(t *testing.T) {
	in := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 4011
stompgate_sessions_active 2000
stompgate_closes_total{code="1000",leg="client"} 51
stompgate_closes_total{code="1006",leg="upstream"} 2
weird{msg="a b"} 1.5e+03 1700000000000
`
	m := parseProm([]byte(in))
	if v, ok := m.get("go_goroutines"); !ok || v != 4011 {
		t.Errorf("go_goroutines = %v, %v", v, ok)
	}
	if v, _ := m.get("stompgate_sessions_active"); v != 2000 {
		t.Errorf("sessions = %v", v)
	}
	if got := m.sum("stompgate_closes_total"); got != 53 {
		t.Errorf("sum = %v", got)
	}
	if got := m.byLabels("stompgate_closes_total")[`code="1006",leg="upstream"`]; got != 2 {
		t.Errorf("byLabels = %v", got)
	}
	if got := m[`weird{msg="a b"}`]; got != 1500 {
		t.Errorf("label with a space, timestamp: %v", got)
	}
}

func TestParseProc(t *testing.T) {
	rss, threads := parseStatus([]byte("Name:\tstompgate\nVmRSS:\t  123456 kB\nThreads:\t12\n"))
	if rss != 123456 || threads != 12 {
		t.Errorf("parseStatus = %d, %d", rss, threads)
	}
	// Field 2 with spaces and parentheses; utime (14) = 700, stime (15) = 42.
	stat := "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 700 42 0 0 20 0 12 0 100"
	if got := parseStatCPU([]byte(stat)); got != 742 {
		t.Errorf("parseStatCPU = %d", got)
	}
	ps, err := readProc(os.Getpid())
	if err != nil || ps.RSSKB <= 0 || ps.FDs <= 0 || ps.Threads <= 0 {
		t.Errorf("readProc(self) = %+v, %v", ps, err)
	}
}

func TestFrames(t *testing.T) {
	for in, want := range map[string]string{
		"\n":                                     "",
		"\r\n\n":                                 "",
		"MESSAGE\ndestination:/t\n\nx\x00":       "MESSAGE",
		"\nCONNECTED\r\nversion:1.2\r\n\r\n\x00": "CONNECTED",
	} {
		if got := command([]byte(in)); got != want {
			t.Errorf("command(%q) = %q, want %q", in, got, want)
		}
	}
	cmd, hs := parseFrame([]byte("ERROR\nmessage:Session closed.\nmessage:second\ncontent-length:0\n\n\x00"))
	if cmd != "ERROR" || hs["message"] != "Session closed." || hs["content-length"] != "0" {
		t.Errorf("parseFrame = %q %v", cmd, hs)
	}
	cmd, hs = parseFrame([]byte("CONNECTED\r\nversion:1.2\r\nheart-beat:1000,1000\r\n\r\n\x00"))
	if cmd != "CONNECTED" || hs["heart-beat"] != "1000,1000" {
		t.Errorf("parseFrame CRLF = %q %v", cmd, hs)
	}
}

func TestJudgeFlat(t *testing.T) {
	ts := []float64{0, 10, 20, 30, 40}
	f := judgeFlat([]float64{1000, 1001, 999, 1000, 1000}, ts, 1, 1, 0)
	if !f.ok || f.first != 1000 || f.hi != 1001 || f.lo != 999 {
		t.Errorf("flat series judged %+v", f)
	}
	f = judgeFlat([]float64{1000, 1020, 1040, 1060, 1080}, ts, 10, 1, 0)
	if f.ok || math.Abs(f.trendPct-8/1.04) > 0.01 {
		t.Errorf("rising series judged %+v", f)
	}
	if f := judgeFlat([]float64{1}, ts[:1], 1, 1, 0); !f.absent {
		t.Errorf("one sample judged %+v", f)
	}
}

func TestSummarizeLog(t *testing.T) {
	from := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	to := from.Add(time.Minute)
	log := `{"level":"info","ts":"2026-11-22T04:59:59.000Z","msg":"session ended","end":"client closed","closed_by":"client","client_close_code":1000,"upstream_close_code":1000}
{"level":"info","ts":"2026-11-22T05:00:30.000Z","msg":"session ended","end":"client heart-beat timeout","closed_by":"proxy","client_close_code":1011,"upstream_close_code":1001}
{"level":"warn","ts":"2026-11-22T05:00:30.000Z","msg":"upstream dial failed"}
{"level":"info","ts":"2026-11-22T05:01:00.500Z","msg":"session ended","end":"client closed","closed_by":"client","client_close_code":1000,"upstream_close_code":1000}
not json
`
	path := filepath.Join(t.TempDir(), "sg.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	ls := summarizeLog(path, from, to)
	if ls.ended != 3 || ls.during != 1 || ls.warn != 2 || len(ls.duringLines) != 1 {
		t.Errorf("summary = %+v", ls)
	}
	if n := ls.byEnd[`end "client closed", closed_by client, client 1000, upstream 1000`]; n != 2 {
		t.Errorf("byEnd = %v", ls.byEnd)
	}
}

func TestOptions(t *testing.T) {
	t.Setenv("SOAK_QUICK", "1")
	o, err := parseOptions([]string{"-hold", "30s"})
	if err != nil {
		t.Fatal(err)
	}
	if o.sessions != 500 || o.hold != 30*time.Second || o.warmup != 15*time.Second || o.topics != 50 || o.out != "-" {
		t.Errorf("quick options = %+v", o)
	}
	if o.deadline <= o.hold {
		t.Errorf("deadline %v not after the hold", o.deadline)
	}
	t.Setenv("SOAK_QUICK", "")
	o, err = parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.sessions != 9900 || o.hold != 10*time.Minute || o.heartbeat != time.Second || o.warmup != time.Minute {
		t.Errorf("full options = %+v", o)
	}
	if _, err := parseOptions([]string{"-sessions", "0"}); err == nil {
		t.Error("-sessions 0 accepted")
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"-hold": "-hold", "10m": "10m", "a b": "'a b'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSentAt(t *testing.T) {
	frame := []byte("MESSAGE\ndestination:/topic/soak.1\ncontent-length:26\n\nsoak 12 1700000000123456789\x00")
	if got := sentAt(frame); got != 1700000000123456789 {
		t.Errorf("sentAt = %d", got)
	}
	if got := sentAt([]byte("MESSAGE\n\nhello\x00")); got != 0 {
		t.Errorf("sentAt(other body) = %d", got)
	}
}

func TestParseSNMP(t *testing.T) {
	in := "Tcp: RtoAlgorithm RetransSegs InErrs\nTcp: 1 158098 0\nTcpExt: TCPTimeouts TCPRcvQDrop\nTcpExt: 112 5\n"
	got := map[string]int64{}
	parseSNMP([]byte(in), got)
	want := map[string]int64{"Tcp:RtoAlgorithm": 1, "Tcp:RetransSegs": 158098, "Tcp:InErrs": 0, "TcpExt:TCPTimeouts": 112, "TcpExt:TCPRcvQDrop": 5}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if _, err := netCounters(); err != nil {
		t.Skipf("no /proc/net here: %v", err)
	}
}
