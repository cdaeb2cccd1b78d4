package repo

import (
	"os"
	"path/filepath"
	"testing"
)

// The test runs in bench/internal/repo: Root must skip bench/go.mod.
func TestRootIsAboveTheBenchModule(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Join(Bench(root), "internal", "repo"); got != wd {
		t.Fatalf("Root() = %s: bench/internal/repo would be %s, the test runs in %s", root, got, wd)
	}
}
