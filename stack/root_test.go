package stack_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jetsaga/jetsaga/stack"
)

func checkout(t *testing.T) string {
	t.Helper()
	// Not t.TempDir (mode 0700): the postgres user that runs a cluster as
	// root must reach the run folder.
	root, err := os.MkdirTemp("", "jetsaga-checkout-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"go.mod", "deploy/nats/dev.conf", "bin/jetsaga", "internal/x/y.go"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// The stack is found from a folder inside the checkout or from the binary,
// so that jetsaga up and down work from any folder.
func TestFindRoot(t *testing.T) {
	root := checkout(t)
	elsewhere := t.TempDir()
	tests := []struct {
		name, dir, exe string
		want           string
		wantErr        error
	}{
		{"at the root", root, "", root, nil},
		{"in a subfolder", filepath.Join(root, "internal", "x"), "", root, nil},
		{"elsewhere, by the binary", elsewhere, filepath.Join(root, "bin", "jetsaga"), root, nil},
		{"elsewhere, a binary outside a checkout", elsewhere, filepath.Join(elsewhere, "jetsaga"), "", stack.ErrNoRoot},
		{"elsewhere, no binary", elsewhere, "", "", stack.ErrNoRoot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := stack.FindRoot(tt.dir, tt.exe)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("FindRoot(%s, %s) = %q, %v; want %q, %v", tt.dir, tt.exe, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
