package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestShouldTrim(t *testing.T) {
	p := Policy{MinFree: 16 << 20, FreeFraction: 0.25}
	for _, tc := range []struct {
		s    Stats
		want bool
	}{
		{Stats{Free: 8 << 20, InUse: 8 << 20}, false},    // too little to bother
		{Stats{Free: 20 << 20, InUse: 200 << 20}, false}, // small beside the heap in use
		{Stats{Free: 60 << 20, InUse: 200 << 20}, true},
		{Stats{Free: 16 << 20, InUse: 0}, true},
	} {
		if got := p.ShouldTrim(tc.s); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.s, got, tc.want)
		}
	}
}

// TestReadSeesFreedHeap frees a large allocation and checks that Read
// reports it as free, and that a trim returns it to the OS.
func TestReadSeesFreedHeap(t *testing.T) {
	debug.FreeOSMemory()
	before := Read()
	keep := make([][]byte, 64)
	for i := range keep {
		keep[i] = make([]byte, 1<<20)
	}
	runtime.KeepAlive(keep)
	keep = nil
	runtime.GC()
	after := Read()
	if after.Free < before.Free+32<<20 {
		t.Fatalf("free heap %d -> %d after freeing 64 MiB", before.Free, after.Free)
	}
	debug.FreeOSMemory()
	if trimmed := Read(); trimmed.Free >= after.Free {
		t.Fatalf("free heap %d after FreeOSMemory, was %d", trimmed.Free, after.Free)
	}
}

func TestRunTrimsWhenTold(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reads := 0
	read := func() Stats {
		reads++
		if reads == 3 {
			cancel()
		}
		return Stats{Free: 64 << 20, InUse: 64 << 20}
	}
	trims := 0
	n := Run(ctx, Policy{Interval: time.Millisecond, MinFree: 1, FreeFraction: 0.5}, read, func(s Stats) {
		trims++
		if s != (Stats{Free: 64 << 20, InUse: 64 << 20}) {
			t.Errorf("trim got %+v, not the figures read", s)
		}
	})
	if n != trims || trims < 2 {
		t.Fatalf("Run returned %d, trim called %d times", n, trims)
	}
}
