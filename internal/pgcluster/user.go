package pgcluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// serverUser is the system account the server runs as when this process is
// root: PostgreSQL refuses to run as root.
const serverUser = "postgres"

// ErrNoServerUser is returned (wrapped) by Init when this process runs as root
// and there is no "postgres" system user to run the server as.
var ErrNoServerUser = errors.New(`running as root, but no "postgres" system user exists to run the server as (PostgreSQL refuses to run as root): create it with ` +
	"`useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres`" +
	" (installing Debian's server with `apt-get install -y postgresql` also creates it), or run as an ordinary user")

// account is the user the cluster's commands run as; nil means this process's own user.
type account struct {
	name   string
	home   string
	uid    uint32
	gid    uint32
	groups []uint32
}

// serverAccount returns the account to run the server as: nil when this
// process is not root, else the "postgres" system user.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, ErrNoServerUser
		}
		return nil, fmt.Errorf("look up user %q: %w", serverUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q has uid %q: %w", serverUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q has gid %q: %w", serverUser, u.Gid, err)
	}
	a := &account{name: u.Username, home: u.HomeDir, uid: uint32(uid), gid: uint32(gid)}
	gids, err := u.GroupIds()
	if err != nil {
		gids = nil // supplementary groups are a nicety; the primary group is enough
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			a.groups = append(a.groups, uint32(n))
		}
	}
	return a, nil
}

func (a *account) sysProcAttr() *syscall.SysProcAttr {
	if a == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}}
}

// chown gives path to the account; a no-op for this process's own user.
func (a *account) chown(path string) error {
	if a == nil {
		return nil
	}
	if err := os.Chown(path, int(a.uid), int(a.gid)); err != nil {
		return fmt.Errorf("give %s to user %s: %w", path, a.name, err)
	}
	return nil
}

// canTraverse reports whether the account may search (pass through) the directory fi.
func (a *account) canTraverse(fi fs.FileInfo) bool {
	if a == nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let the server report it
	}
	mode := fi.Mode().Perm()
	switch {
	case st.Uid == a.uid:
		return mode&0o100 != 0
	case st.Gid == a.gid || slices.Contains(a.groups, st.Gid):
		return mode&0o010 != 0
	default:
		return mode&0o001 != 0
	}
}

// prepareDir makes dir ready to be a data directory of a cluster run by a:
// it creates dir and any missing parents (owned by a), gives an existing empty
// dir to a, and checks that a can reach dir through the parents that existed.
func prepareDir(dir string, a *account) error {
	// Walk up to the deepest existing ancestor, remembering what to create.
	var missing []string
	existing := dir
	for {
		fi, err := os.Stat(existing)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", existing)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat %s: %w", existing, err)
		}
		missing = append(missing, existing)
		parent := filepath.Dir(existing)
		if parent == existing {
			return fmt.Errorf("stat %s: %w", existing, err)
		}
		existing = parent
	}

	// Every existing directory on the way, from the root down, must let the
	// server's user through: a 0700 directory of root (such as t.TempDir())
	// does not, and the server would fail with a less helpful message.
	if a != nil {
		for p := existing; ; p = filepath.Dir(p) {
			// The existing dir itself, if it is the data dir, will be given to a below.
			if p != dir {
				fi, err := os.Stat(p)
				if err != nil {
					return fmt.Errorf("stat %s: %w", p, err)
				}
				if !a.canTraverse(fi) {
					return fmt.Errorf("directory %s (mode %04o, owner uid %d) is not accessible to the %q user that runs the server: put the cluster elsewhere, for example in a directory made with os.MkdirTemp under %s",
						p, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, a.name, os.TempDir())
				}
			}
			if filepath.Dir(p) == p {
				break
			}
		}
	}

	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", missing[i], err)
		}
		if err := a.chown(missing[i]); err != nil {
			return err
		}
	}
	if len(missing) > 0 || a == nil {
		return nil
	}

	// dir existed: give it to a if it is empty, so that initdb can use it.
	// A non-empty dir is either a cluster already or an error initdb reports.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return a.chown(dir)
	}
	return nil
}
