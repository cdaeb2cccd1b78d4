package inspect

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// restResult is what a proxy sees of a stream: the bytes the events
// cover, where frames end, their content-length, and the error.
type restResult struct {
	out       []byte
	frameEnds []int
	cls       []int
	err       error
}

// scanEvents scans chunks with Next, or, with rest, with Rest after every
// FrameStart (as the proxy does for frames it forwards untouched).
func scanEvents(chunks [][]byte, rest bool) restResult {
	var r restResult
	s := NewScanner(Limits{})
	base := 0
	for _, c := range chunks {
		s.Feed(c)
		inFrame := false
		for {
			var ev Event
			var err error
			if rest && inFrame {
				ev, err = s.Rest()
			} else {
				ev, err = s.Next()
			}
			if err != nil {
				r.err = err
				return r
			}
			if ev.Kind == NeedMore {
				break
			}
			r.out = append(r.out, c[ev.Start:ev.End]...)
			switch ev.Kind {
			case FrameStart:
				inFrame = true
			case FrameEnd:
				inFrame = false
				r.frameEnds = append(r.frameEnds, base+ev.End)
				n, ok := s.ContentLength()
				if !ok {
					n = -1
				}
				r.cls = append(r.cls, n)
			}
		}
		base += len(c)
	}
	return r
}

func (r restResult) String() string {
	return fmt.Sprintf("frames end at %v, content-length %v, err %v", r.frameEnds, r.cls, r.err)
}

func checkRestMatchesNext(t testing.TB, in []byte, chunks [][]byte) {
	t.Helper()
	a, b := scanEvents(chunks, false), scanEvents(chunks, true)
	// On an error Rest drops the merged event it was building: the bytes
	// of the failing frame since its last event are not reported (a proxy
	// abandons that message anyway).
	sameOut := bytes.Equal(a.out, b.out) || (a.err != nil && bytes.HasPrefix(a.out, b.out))
	if !sameOut || a.String() != b.String() {
		t.Fatalf("input %.80q\nNext: %d bytes, %v\nRest: %d bytes, %v", in, len(a.out), a, len(b.out), b)
	}
}

// TestRestMatchesNext: a proxy that uses Rest forwards the same bytes (up
// to the failing frame), sees the same frame ends and content-lengths, and
// fails at the same point with the same error as one that uses Next, for generated streams,
// corrupted ones and random chunkings.
func TestRestMatchesNext(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 2000
	if testing.Short() {
		n = 200
	}
	for range n {
		in := genStream(r, genOpts{})
		bad := bytes.Clone(in)
		for range 1 + r.IntN(3) {
			bad[r.IntN(len(bad))] = "\x00\r\n:\\0aZ"[r.IntN(8)]
		}
		for _, x := range [][]byte{in, bad, in[:r.IntN(len(in)+1)]} {
			checkRestMatchesNext(t, x, [][]byte{x})
			checkRestMatchesNext(t, x, randomChunks(r, x))
		}
	}
	for _, tc := range scanCases {
		checkRestMatchesNext(t, []byte(tc.in), [][]byte{[]byte(tc.in)})
		checkRestMatchesNext(t, []byte(tc.in), bytewise([]byte(tc.in)))
	}
}
