package main

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stompgate/stompgate/internal/memtrim"
)

// Each trim is logged once, after it ran, with the figures that called for it.
func TestLoggedTrim(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	freed := 0
	trim := loggedTrim(zap.New(core), func() { freed++ })
	trim(memtrim.Stats{Free: 32 << 20, InUse: 64 << 20})
	if freed != 1 {
		t.Fatalf("free called %d times", freed)
	}
	entries := logs.FilterMessage("memory trimmed").All()
	if len(entries) != 1 {
		t.Fatalf("%d 'memory trimmed' lines, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["free_before_bytes"] != uint64(32<<20) || f["in_use_bytes"] != uint64(64<<20) {
		t.Errorf("fields %v", f)
	}
	if _, ok := f["took"]; !ok {
		t.Errorf("no took field: %v", f)
	}
}
