// Package repo finds the stompgate repository that the bench commands
// build and measure. The commands run inside the bench module, so `go env
// GOMOD` names bench/go.mod, not the product's.
package repo

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
)

// productModule is the module line of the repository's root go.mod.
var productModule = []byte("module github.com/stompgate/stompgate\n")

// Root returns the repository's root directory: the nearest directory at or
// above the working directory whose go.mod declares the product module.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, productModule) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the stompgate repository")
		}
		dir = parent
	}
}

// Bench returns the bench module's directory under root.
func Bench(root string) string {
	return filepath.Join(root, "bench")
}
