// Package memtrim gives the operating system back the memory a Go process
// keeps after a burst, such as a storm of reconnecting clients.
//
// Go returns freed heap memory to the OS slowly (its background scavenger
// keeps about the next GC goal plus 10%), so after thousands of handshakes
// — each with a grown goroutine stack, HTTP buffers and garbage — a
// sidecar's RSS stays at its peak for minutes even when the sessions left
// cost much less. A pod's memory is accounted by RSS, so stompgate checks
// every few seconds and, when the free but resident heap is large both in
// bytes and compared with the heap in use, runs debug.FreeOSMemory (a
// forced collection, then every free page released). With steady traffic
// the free heap stays small and nothing is done: stompgate's forwarding
// path allocates nothing per message.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Policy says when to trim.
type Policy struct {
	// Interval between checks.
	Interval time.Duration
	// MinFree is the least free-but-resident heap worth a trim.
	MinFree uint64
	// FreeFraction: trim only when the free heap is also at least this
	// share of the heap in use.
	FreeFraction float64
}

// DefaultPolicy checks every 5 s and trims 16 MiB or more of free heap when
// that is at least a quarter of the heap in use.
var DefaultPolicy = Policy{Interval: 5 * time.Second, MinFree: 16 << 20, FreeFraction: 0.25}

// Stats is what a check reads.
type Stats struct{ Free, InUse uint64 }

// ShouldTrim reports whether s calls for a trim under p.
func (p Policy) ShouldTrim(s Stats) bool {
	return s.Free >= p.MinFree && float64(s.Free) >= p.FreeFraction*float64(s.InUse)
}

// Read returns the current heap figures from runtime/metrics: free means
// free and not yet returned to the OS.
func Read() Stats {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	metrics.Read(samples)
	var s Stats
	if samples[0].Value.Kind() == metrics.KindUint64 {
		s.Free = samples[0].Value.Uint64()
	}
	for _, x := range samples[1:] {
		if x.Value.Kind() == metrics.KindUint64 {
			s.InUse += x.Value.Uint64()
		}
	}
	return s
}

// Run checks every p.Interval until ctx ends, trimming with trim (nil:
// debug.FreeOSMemory) when p says so; trim gets the figures that called for
// it, so a caller that reports trims need not read them again. It returns
// the number of trims.
func Run(ctx context.Context, p Policy, read func() Stats, trim func(Stats)) int {
	if read == nil {
		read = Read
	}
	if trim == nil {
		trim = func(Stats) { debug.FreeOSMemory() }
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
			if s := read(); p.ShouldTrim(s) {
				trim(s)
				n++
			}
		}
	}
}
