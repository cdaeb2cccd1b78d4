package wsconn

import "time"

// The connections' timestamps (ReadStamp, WriteStamp, LastReadAt, FlushAt's
// now) are int64 nanoseconds in Unix form, taken with Now.
//
// Now reads only the monotonic clock: time.Now reads the wall clock too,
// two vDSO calls where one does, and the reading side stamps every read
// system call. A stamp is the wall time at process start plus the
// monotonic time since, so it stays within the wall clock's drift of
// time.Now().UnixNano(); Time turns it back into a time.Time that carries
// a monotonic reading, so comparisons and deadlines made from stamps are
// immune to wall clock steps.
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
