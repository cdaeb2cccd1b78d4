package inspect

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPassThroughProperty: for generated streams under random chunking, the
// event ranges concatenate to the input, every chunking yields the same
// normalized events, and the reassembled frames are identical.
func TestPassThroughProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	n := 2000
	if testing.Short() {
		n = 200
	}
	for i := range n {
		in := genStream(r, genOpts{})
		whole := scanFresh(t, Limits{}, [][]byte{in})
		if whole.err != nil {
			t.Fatalf("stream %d %q: %v", i, in, whole.err)
		}
		if string(whole.out) != string(in) {
			t.Fatalf("stream %d: whole scan does not reproduce the input", i)
		}
		if i%10 == 0 {
			for _, f := range whole.frames {
				checkRewrites(t, f)
			}
		}
		wantEv := fmtEvents(normalize(whole.events))
		wantFr := fmt.Sprint(whole.frames)
		chunkings := [][][]byte{randomChunks(r, in), randomChunks(r, in), randomChunks(r, in)}
		if len(in) < 400 {
			chunkings = append(chunkings, bytewise(in))
		}
		for _, chunks := range chunkings {
			got := scanFresh(t, Limits{}, chunks)
			if got.err != nil {
				t.Fatalf("stream %d chunked: %v", i, got.err)
			}
			if string(got.out) != string(in) {
				t.Fatalf("stream %d: chunked scan does not reproduce the input", i)
			}
			if ev := fmtEvents(normalize(got.events)); ev != wantEv {
				t.Fatalf("stream %d: events differ\n got %s\nwant %s", i, ev, wantEv)
			}
			if fr := fmt.Sprint(got.frames); fr != wantFr {
				t.Fatalf("stream %d: frames differ", i)
			}
		}
	}
}

// TestOneScannerManyStreams reuses one scanner across chunk boundaries of
// concatenated streams, as a long-lived session does.
func TestOneScannerManyStreams(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := new(Scanner)
	var all []byte
	var chunks [][]byte
	for range 200 {
		in := genStream(r, genOpts{})
		all = append(all, in...)
		chunks = append(chunks, randomChunks(r, in)...)
	}
	got := scanChunks(t, s, copyChunks(chunks), true)
	if got.err != nil || string(got.out) != string(all) {
		t.Fatalf("err %v, reproduced %v", got.err, string(got.out) == string(all))
	}
	compareWithOracle(t, all, got)
}
