package wsconn

import "time"

// The connections' timestamps (ReadStamp, WriteStamp, LastReadAt, FlushAt's
// now) are int64 nanoseconds in Unix form, taken with Now.
//
// A stamp is the wall time at process start plus the monotonic time
// since, so it stays within the wall clock's drift of
// time.Now().UnixNano(), while Time turns it back into a time.Time that
// carries a monotonic reading: the liveness deadlines compared from stamps
// are immune to wall clock steps, which a stamp taken as UnixNano would
// not be. Now reads only the monotonic clock, which also makes it cheaper
// than time.Now, though not measurably per message
// (docs/internals/hot-path.md#monotonic-stamp).
var (
	clockBase     = time.Now()
	clockBaseUnix = clockBase.UnixNano()
)

// Now returns the current time as a stamp.
func Now() int64 { return clockBaseUnix + int64(time.Since(clockBase)) }

// Time returns the time of stamp n; the zero Time for 0 (never).
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return clockBase.Add(time.Duration(n - clockBaseUnix))
}
