package pgcluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned (wrapped) by FindBin when the PostgreSQL server
// binaries are not installed. Its message tells how to install them.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin: install them with `apt-get update && apt-get install -y postgresql`")

// serverBinaries are the programs a Cluster runs; a bin directory must hold all of them.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// debianLibRoot is where Debian and Ubuntu install one directory per major version.
const debianLibRoot = "/usr/lib/postgresql"

// FindBin returns the directory holding initdb, pg_ctl and postgres: the one
// of initdb found in PATH first, then the newest /usr/lib/postgresql/<version>/bin.
// When none is found the error is ErrNoBinaries, which says how to install them.
func FindBin() (string, error) {
	return findBin(debianLibRoot)
}

func findBin(libRoot string) (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		// A PATH entry is often a symlink into the versioned directory
		// (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb); the
		// real directory is the one that surely holds the whole set.
		if real, err := filepath.EvalSymlinks(p); err == nil && hasBinaries(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if abs, err := filepath.Abs(filepath.Dir(p)); err == nil && hasBinaries(abs) {
			return abs, nil
		}
	}

	entries, err := os.ReadDir(libRoot)
	if err != nil {
		return "", ErrNoBinaries
	}
	type candidate struct {
		version []int
		dir     string
	}
	var found []candidate
	for _, e := range entries {
		v, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		dir := filepath.Join(libRoot, e.Name(), "bin")
		if hasBinaries(dir) {
			found = append(found, candidate{version: v, dir: dir})
		}
	}
	if len(found) == 0 {
		return "", ErrNoBinaries
	}
	newest := slices.MaxFunc(found, func(a, b candidate) int { return slices.Compare(a.version, b.version) })
	return newest.dir, nil
}

// parseVersion reads a directory name like "15" or "9.6" as numbers.
func parseVersion(name string) ([]int, bool) {
	var v []int
	for _, part := range strings.Split(name, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func hasBinaries(dir string) bool {
	for _, name := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}
