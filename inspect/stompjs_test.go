package inspect

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestStompJSParser cross-checks the scanner against the Parser of
// @stomp/stompjs (installed for the end-to-end tests under e2e/js) on
// generated streams restricted to what both must read the same way.
func TestStompJSParser(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found in PATH; skipping the stomp.js cross-check")
	}
	parser, err := filepath.Abs(filepath.Join("..", "e2e", "js", "node_modules", "@stomp", "stompjs", "esm6", "parser.js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(parser); err != nil {
		t.Skipf("%s not found (run npm ci in e2e/js); skipping the stomp.js cross-check", parser)
	}

	r := rand.New(rand.NewPCG(5, 6))
	n := 500
	if testing.Short() {
		n = 50
	}
	var inputs [][]byte
	var chunked [][][]byte
	for range n {
		in := genStream(r, genOpts{plain: true})
		inputs = append(inputs, in)
		chunked = append(chunked, randomChunks(r, in))
	}
	req := make([][]string, n)
	for i, chunks := range chunked {
		for _, c := range chunks {
			req[i] = append(req[i], base64.StdEncoding.EncodeToString(c))
		}
	}
	reqJSON, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join("testdata", "stompjs_parse.mjs"), parser)
	cmd.Stdin = bytes.NewReader(reqJSON)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var results []struct {
		Frames []struct {
			Command string      `json:"command"`
			Headers [][2]string `json:"headers"`
			Body    []byte      `json:"body"` // base64 in JSON
		} `json:"frames"`
		Pings int `json:"pings"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatal(err)
	}
	if len(results) != n {
		t.Fatalf("stomp.js returned %d results for %d streams", len(results), n)
	}
	frames := 0
	for i, want := range results {
		got := scanFresh(t, Limits{}, chunked[i])
		if got.err != nil {
			t.Fatalf("stream %d: %v", i, got.err)
		}
		if len(got.frames) != len(want.Frames) {
			t.Fatalf("stream %d %q: scanner %d frames, stomp.js %d", i, inputs[i], len(got.frames), len(want.Frames))
		}
		for j, f := range got.frames {
			w := want.Frames[j]
			cmdLine, _, _ := bytes.Cut(f.raw, []byte("\n"))
			cmdLine = bytes.TrimSuffix(cmdLine, []byte("\r"))
			if string(cmdLine) != w.Command {
				t.Fatalf("stream %d frame %d: command %q, stomp.js %q", i, j, cmdLine, w.Command)
			}
			if len(f.headers) != len(w.Headers) {
				t.Fatalf("stream %d frame %d: headers %q, stomp.js %q", i, j, f.headers, w.Headers)
			}
			for k := range f.headers {
				if f.headers[k] != w.Headers[k] {
					t.Fatalf("stream %d frame %d: header %q, stomp.js %q", i, j, f.headers[k], w.Headers[k])
				}
			}
			if !bytes.Equal(f.body, w.Body) {
				t.Fatalf("stream %d frame %d: body %q, stomp.js %q", i, j, f.body, w.Body)
			}
		}
		if got.eolLF != want.Pings {
			t.Fatalf("stream %d: %d heart-beat LFs, stomp.js %d pings", i, got.eolLF, want.Pings)
		}
		frames += len(got.frames)
	}
	t.Logf("%d streams, %d frames agree with stomp.js", n, frames)
}
