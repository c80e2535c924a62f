package stack

import (
	"errors"
	"os"
	"path/filepath"
)

// rootMarker is a file only a jetsaga checkout has.
const rootMarker = "deploy/nats/dev.conf"

// ErrNoRoot is returned by FindRoot when neither the folder nor the binary is
// inside a jetsaga checkout.
var ErrNoRoot = errors.New("not inside a jetsaga checkout (a folder holding " + rootMarker + "): run from the checkout, run its bin/jetsaga, or pass --root")

// FindRoot returns the jetsaga checkout the local stack belongs to: the
// nearest folder at or above dir that holds deploy/nats/dev.conf (the stack's
// NATS configuration), or else the one whose bin/ holds exe (the jetsaga
// binary running).
func FindRoot(dir, exe string) (string, error) {
	for d := dir; d != ""; {
		if IsRoot(d) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if exe != "" {
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		if d := filepath.Dir(filepath.Dir(exe)); IsRoot(d) {
			return d, nil
		}
	}
	return "", ErrNoRoot
}

// IsRoot reports whether dir is a jetsaga checkout, or a copy of one that
// holds what the stack runs (bin/ and deploy/).
func IsRoot(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, rootMarker))
	return err == nil
}
