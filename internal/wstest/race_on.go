//go:build race

package wstest

// RaceEnabled reports whether the race detector is on. Allocation tests
// skip their assertion then: with it, sync.Pool drops a share of the
// buffers put back, so pooled buffers are allocated again.
const RaceEnabled = true
