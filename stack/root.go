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
var ErrNoRoot = errors.New("not inside a jetsaga checkout (a folder holding go.mod and " + rootMarker + "): run from the checkout, run its bin/jetsaga, or pass --root")

// FindRoot returns the jetsaga checkout the local stack belongs to: the
// nearest folder at or above dir that holds go.mod and deploy/nats/dev.conf,
// or else the checkout whose bin/ holds exe (the jetsaga binary running).
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

// IsRoot reports whether dir is a jetsaga checkout.
func IsRoot(dir string) bool {
	for _, f := range []string{"go.mod", rootMarker} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}
