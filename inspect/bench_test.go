package inspect

import (
	"strconv"
	"strings"
	"testing"
)

// makeSend builds a SEND frame of exactly total bytes (command through NUL)
// with typical headers, with or without content-length.
func makeSend(total int, withCL bool) []byte {
	const head = "SEND\ndestination:/queue/a\n"
	for body := total; body >= 0; body-- {
		h := head
		if withCL {
			h += "content-length:" + strconv.Itoa(body) + "\n"
		}
		h += "\n"
		if len(h)+body+1 == total {
			return []byte(h + strings.Repeat("x", body) + "\x00")
		}
	}
	panic("frame size too small")
}

// splitN cuts in into n nearly equal chunks.
func splitN(in []byte, n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, in[len(in)*i/n:len(in)*(i+1)/n])
	}
	return out
}

// splitEvery cuts in into chunks of size bytes, like a reader with a fixed
// buffer.
func splitEvery(in []byte, size int) [][]byte {
	var out [][]byte
	for len(in) > size {
		out = append(out, in[:size])
		in = in[size:]
	}
	return append(out, in)
}

// drain scans chunks the way the proxy does in pass-through mode: it looks
// at every event and nothing else.
func drain(b *testing.B, s *Scanner, chunks [][]byte) int {
	frames := 0
	for _, c := range chunks {
		s.Feed(c)
		for {
			ev, err := s.Next()
			if err != nil {
				b.Fatal(err)
			}
			if ev.Kind == FrameEnd {
				frames++
			}
			if ev.Kind == NeedMore {
				break
			}
		}
	}
	return frames
}

func benchChunks(b *testing.B, chunks [][]byte) {
	total := 0
	for _, c := range chunks {
		total += len(c)
	}
	s := new(Scanner)
	drain(b, s, chunks) // warm the header buffer for split heads
	b.SetBytes(int64(total))
	b.ReportAllocs()
	frames := 0
	for b.Loop() {
		frames += drain(b, s, chunks)
	}
	if frames > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
	}
}

func BenchmarkScan(b *testing.B) {
	sizes := []struct {
		name string
		n    int
	}{{"64B", 64}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}}
	for _, sz := range sizes {
		for _, cl := range []bool{true, false} {
			frame := makeSend(sz.n, cl)
			kind := "cl"
			if !cl {
				kind = "nocl"
			}
			b.Run(sz.name+"/"+kind+"/whole", func(b *testing.B) { benchChunks(b, [][]byte{frame}) })
			b.Run(sz.name+"/"+kind+"/split3", func(b *testing.B) { benchChunks(b, splitN(frame, 3)) })
			if sz.n > 4<<10 {
				b.Run(sz.name+"/"+kind+"/split4KiB", func(b *testing.B) { benchChunks(b, splitEvery(frame, 4<<10)) })
			}
		}
	}
	// The MESSAGE stompbench's echo sends back for a 64 B SEND: five
	// headers, as brokers send them.
	msg := []byte("MESSAGE\nsubscription:0\nmessage-id:0\ndestination:/queue/bench\ncontent-type:text/plain\ncontent-length:64\n\n" + strings.Repeat("x", 64) + "\x00")
	b.Run("64B/MESSAGE-5-headers/whole", func(b *testing.B) { benchChunks(b, [][]byte{msg}) })
	b.Run("EOL/lone", func(b *testing.B) { benchChunks(b, [][]byte{[]byte("\n")}) })
	b.Run("EOL/loneCRLF", func(b *testing.B) { benchChunks(b, [][]byte{[]byte("\r\n")}) })
	// Many small frames in one message: the per-frame cost without the
	// per-chunk overhead.
	stream := []byte(strings.Repeat(string(makeSend(64, true)), 64))
	b.Run("64B/cl/x64-in-one-chunk", func(b *testing.B) { benchChunks(b, [][]byte{stream}) })
}

func BenchmarkHeaderLookup(b *testing.B) {
	frame := []byte("CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:10000,10000\n\n\x00")
	var s Scanner
	s.Feed(frame)
	for {
		if ev, _ := s.Next(); ev.Kind == HeadersEnd {
			break
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		v, ok := s.Header("heart-beat")
		if !ok || len(v) == 0 {
			b.Fatal("missing")
		}
	}
}

func BenchmarkRewriteHeartBeat(b *testing.B) {
	frame := []byte("CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:10000, 10000\n\n\x00")
	dst := make([]byte, 0, 256)
	hb := HeartBeat{Send: 10000 * ms, Receive: 10000 * ms}
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = RewriteHeartBeat(dst[:0], frame, hb); err != nil {
			b.Fatal(err)
		}
	}
}
