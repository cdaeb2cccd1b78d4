package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// oracleFrame is a frame as the reference parser sees it.
type oracleFrame struct {
	command string
	headers [][2]string
	body    string
	size    int
}

// Outcomes of naiveParse.
const (
	oracleOK      = "ok"      // input ends between frames
	oraclePartial = "partial" // input ends inside a frame (or after a CR)
	oracleError   = "error"   // malformed
)

// naiveParse is the reference parser. It is deliberately simple and shaped
// differently from the scanner: whole input at once, strings, no limits,
// no offsets, no state carried between calls. It implements the rules of
// the package documentation directly from the grammar.
func naiveParse(input string) (frames []oracleFrame, lfs int, outcome string) {
	in := input
	for {
		// Between frames only EOLs may appear.
		switch {
		case in == "":
			return frames, lfs, oracleOK
		case strings.HasPrefix(in, "\n"):
			lfs++
			in = in[1:]
			continue
		case strings.HasPrefix(in, "\r\n"):
			lfs++
			in = in[2:]
			continue
		case in == "\r":
			return frames, lfs, oraclePartial
		case in[0] == '\r' || in[0] == 0:
			return frames, lfs, oracleError
		}

		start := len(input) - len(in)
		var lines []string
		clText, haveCL := "", false
		for {
			line, after, complete := strings.Cut(in, "\n")
			if strings.ContainsRune(line, 0) {
				return frames, lfs, oracleError
			}
			if !complete {
				return frames, lfs, oraclePartial
			}
			in = after
			line = strings.TrimSuffix(line, "\r")
			if len(lines) > 0 && line == "" {
				break
			}
			lines = append(lines, line)
			if len(lines) == 1 {
				continue // command line
			}
			name, value, found := strings.Cut(line, ":")
			if !found || name == "" {
				return frames, lfs, oracleError
			}
			if name == "content-length" && !haveCL {
				haveCL, clText = true, value
				if clText == "" || strings.Trim(clText, "0123456789") != "" {
					return frames, lfs, oracleError
				}
			}
		}

		f := oracleFrame{command: lines[0]}
		for _, l := range lines[1:] {
			name, value, _ := strings.Cut(l, ":")
			f.headers = append(f.headers, [2]string{name, value})
		}
		if haveCL {
			n, err := strconv.Atoi(clText)
			if err != nil || n > len(in)-1 {
				// Too big to be complete here (the scanner would hit its
				// frame limit first for absurd values; callers allow that).
				return frames, lfs, oraclePartial
			}
			if in[n] != 0 {
				return frames, lfs, oracleError
			}
			f.body, in = in[:n], in[n+1:]
		} else {
			nul := strings.IndexByte(in, 0)
			if nul < 0 {
				return frames, lfs, oraclePartial
			}
			f.body, in = in[:nul], in[nul+1:]
		}
		f.size = len(input) - len(in) - start
		frames = append(frames, f)
	}
}

// compareWithOracle checks a scan of in against naiveParse. Limit errors
// (which the oracle does not model) only require the frames before them to
// agree.
func compareWithOracle(t testing.TB, in []byte, r scanResult) {
	t.Helper()
	want, lfs, outcome := naiveParse(string(in))
	limitErr := r.err != nil && !errors.Is(r.err, ErrSyntax)
	if limitErr {
		if len(r.frames) > len(want) {
			t.Fatalf("scanner found %d frames before %v, oracle only %d", len(r.frames), r.err, len(want))
		}
		want = want[:len(r.frames)]
	}
	if len(r.frames) != len(want) {
		t.Fatalf("input %q: scanner %d frames (err %v), oracle %d (%s)", in, len(r.frames), r.err, len(want), outcome)
	}
	for i, f := range r.frames {
		w := want[i]
		cmdLine, _, _ := bytes.Cut(f.raw, []byte("\n"))
		cmdLine = bytes.TrimSuffix(cmdLine, []byte("\r"))
		if string(cmdLine) != w.command || f.cmd != ParseCommand([]byte(w.command)) {
			t.Fatalf("frame %d: command %q/%v, oracle %q", i, cmdLine, f.cmd, w.command)
		}
		if fmt.Sprint(f.headers) != fmt.Sprint(w.headers) {
			t.Fatalf("frame %d: headers %q, oracle %q", i, f.headers, w.headers)
		}
		if string(f.body) != w.body {
			t.Fatalf("frame %d: body %q, oracle %q", i, f.body, w.body)
		}
		if len(f.raw) != w.size {
			t.Fatalf("frame %d: size %d, oracle %d", i, len(f.raw), w.size)
		}
	}
	if limitErr {
		return
	}
	got := oracleOK
	switch {
	case r.err != nil:
		got = oracleError
	case r.s.InFrame() || r.s.flags&fPendingCR != 0:
		got = oraclePartial
	}
	if got != outcome {
		t.Fatalf("input %q: scanner %s (%v), oracle %s", in, got, r.err, outcome)
	}
	if outcome == oracleOK && r.eolLF != lfs {
		t.Fatalf("EOL LFs: scanner %d, oracle %d", r.eolLF, lfs)
	}
}

func TestOracleKnownCases(t *testing.T) {
	for _, tc := range scanCases {
		if tc.lim != (Limits{}) {
			continue
		}
		r := scanFresh(t, Limits{}, [][]byte{[]byte(tc.in)})
		compareWithOracle(t, []byte(tc.in), r)
	}
}

// TestOracleGenerated compares the scanner with the reference parser on
// generated streams, whole and randomly chunked, and on corrupted copies
// of them (truncated, bytes flipped) so that error handling is compared
// too.
func TestOracleGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	outcomes := map[string]int{}
	for i := range n {
		in := genStream(r, genOpts{})
		inputs := [][]byte{in}
		for range 3 {
			bad := bytes.Clone(in)
			switch r.IntN(3) {
			case 0:
				bad = bad[:r.IntN(len(bad)+1)]
			default:
				for range 1 + r.IntN(3) {
					bad[r.IntN(len(bad))] = "\x00\r\n:\\0aZ"[r.IntN(8)]
				}
			}
			inputs = append(inputs, bad)
		}
		for j, x := range inputs {
			whole := scanFresh(t, Limits{}, [][]byte{x})
			compareWithOracle(t, x, whole)
			_, _, o := naiveParse(string(x))
			outcomes[o]++
			if j == 0 && (whole.err != nil || string(whole.out) != string(x)) {
				t.Fatalf("stream %d: valid stream failed: %v", i, whole.err)
			}
			chunked := scanFresh(t, Limits{}, randomChunks(r, x))
			compareWithOracle(t, x, chunked)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}
