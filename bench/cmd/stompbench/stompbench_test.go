package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newEchoServer(heartBeat{send: 10 * time.Second, recv: 10 * time.Second})
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() { e.heartBeats(stop); done <- struct{}{} }()
	go func() { e.acceptLoop(ln); done <- struct{}{} }()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		<-done
		<-done
	})
	return ln.Addr().String()
}

// The load generator against the echo alone: every reply is checked, so
// a framing or ordering bug shows up as errors.
func TestLoadAgainstEcho(t *testing.T) {
	addr := startEcho(t)
	for _, size := range []int{16, 1 << 10, 70 << 10} {
		res, err := runLoad(loadFlags{url: "ws://" + addr + "/ws", conns: 3, inflight: 3, size: size,
			warmup: 20 * time.Millisecond, duration: 100 * time.Millisecond, dialConc: 2, hb: "10000,10000",
			pids: []int{os.Getpid()}, clientCPU: 0})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 || res.Trips == 0 {
			t.Fatalf("size %d: %d round trips, %d errors (%s)", size, res.Trips, res.Errors, res.FirstErr)
		}
		if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
			t.Fatalf("size %d: percentiles %v %v %v", size, res.P50, res.P99, res.Max)
		}
	}
}

func TestIdleAgainstEcho(t *testing.T) {
	addr := startEcho(t)
	res, err := runIdle(loadFlags{url: "ws://" + addr + "/ws", idle: 20, hold: 10 * time.Millisecond, dialConc: 4,
		hb: "10000,10000", pids: []int{os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || res.Sessions != 20 || res.BaseRSS <= 0 || res.EndRSS <= 0 {
		t.Fatalf("%+v", res)
	}
}

func TestMaskBytes(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for n := range 40 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		maskBytes(key, b)
		for i := range b {
			if b[i] != byte(i*7)^key[i&3] {
				t.Fatalf("n=%d i=%d", n, i)
			}
		}
	}
}

func TestWriteReportCreatesItsDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results", "bench.md")
	for _, md := range []string{"TABLE ONE", "TABLE TWO"} {
		if err := writeReport(path, md); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "TABLE TWO" {
		t.Fatalf("%s holds %q (%v), want the last report alone", path, b, err)
	}
}

func TestMedianAndThousands(t *testing.T) {
	if median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Fatal("median")
	}
	if thousands(1234567) != "1,234,567" || thousands(999) != "999" {
		t.Fatal(thousands(1234567))
	}
}

func TestRatioCell(t *testing.T) {
	for _, c := range []struct {
		v         []float64
		threshold float64
		want      string
	}{
		{[]float64{1.28, 1.029, 1.204}, 1.2, "1.204× (1.28, 1.03, 1.20)"}, // would print as 1.20× beside "missed"
		{[]float64{1.10, 1.26, 1.26}, 1.2, "1.26× (1.10, 1.26, 1.26)"},
		{[]float64{1.2, 1.2, 1.2}, 1.2, "1.20× (1.20, 1.20, 1.20)"},
		{[]float64{0.998, 1.01, 0.99}, 1.0, "0.998× (1.00, 1.01, 0.99)"},
	} {
		if got := ratioCell(c.v, c.threshold); got != c.want {
			t.Errorf("ratioCell(%v, %v) = %q, want %q", c.v, c.threshold, got, c.want)
		}
	}
}
