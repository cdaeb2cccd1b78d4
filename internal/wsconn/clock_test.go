package wsconn

import (
	"strings"
	"testing"
	"time"
)

// TestClock: a stamp converts back to the same Unix nanoseconds, carries a
// monotonic reading (so time.Now().Sub ignores wall clock steps), and is
// close to the wall clock; 0 stays "never".
func TestClock(t *testing.T) {
	if !Time(0).IsZero() {
		t.Errorf("Time(0) = %v, want the zero Time", Time(0))
	}
	n := Now()
	tm := Time(n)
	if tm.UnixNano() != n {
		t.Errorf("Time(%d).UnixNano() = %d", n, tm.UnixNano())
	}
	if !strings.Contains(tm.String(), " m=") {
		t.Errorf("Time(n) = %v has no monotonic reading", tm)
	}
	if d := time.Since(tm); d < 0 || d > time.Second {
		t.Errorf("time.Since(Time(Now())) = %v", d)
	}
	if d := time.Duration(Now() - time.Now().UnixNano()); d < -time.Second || d > time.Second {
		t.Errorf("a stamp is %v away from the wall clock", d)
	}
	if later := Now(); later < n {
		t.Errorf("Now went back: %d then %d", n, later)
	}
}
