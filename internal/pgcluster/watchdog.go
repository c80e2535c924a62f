package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// watchdogScript waits for EOF on its stdin, which comes when the process
// holding the other end of the pipe exits, then stops the cluster and removes
// its directory. $0 is pg_ctl, $1 the data directory, $2 the directory to remove.
const watchdogScript = `cat >/dev/null; "$0" stop -D "$1" -m immediate -w >/dev/null 2>&1; rm -rf -- "$2"`

// DestroyOnExit makes the cluster a throwaway one: a watchdog process stops
// it (mode immediate) and removes root, the data directory or a directory
// holding it, as soon as this process exits, however it exits: a return from
// main, os.Exit, a panic, a test binary's timeout, or SIGKILL. Without it, a
// killed test binary would leave a server running for good.
//
// The returned destroy does the same now and waits until it is done; call it
// at most once. The watchdog runs in its own process group, so a Ctrl-C meant
// for the tests does not kill it before it has cleaned up.
func (c *Cluster) DestroyOnExit(root string) (destroy func(context.Context) error, err error) {
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("cluster root: %w", err)
	}
	if root == "/" || (root != c.Dir && !strings.HasPrefix(c.Dir, root+string(filepath.Separator))) {
		return nil, fmt.Errorf("destroy on exit: %s does not hold the cluster %s", root, c.Dir)
	}

	// A raw pipe: an *os.File for the write end could be closed by its
	// finalizer if the caller dropped destroy, which would destroy the
	// cluster early. This fd stays open until destroy or the process exits.
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("destroy on exit: pipe: %w", err)
	}
	r := os.NewFile(uintptr(fds[0]), "watchdog-stdin")
	defer r.Close()
	writeFD := fds[1]

	cmd := exec.Command("/bin/sh", "-c", watchdogScript, filepath.Join(c.bin, "pg_ctl"), c.Dir, root)
	cmd.Stdin = r // Stdout and Stderr stay /dev/null: go test waits for its pipes to close
	cmd.Dir = "/"
	cmd.Env = c.env()
	attr := c.as.sysProcAttr()
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Setpgid = true
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		syscall.Close(writeFD)
		return nil, fmt.Errorf("destroy on exit: start watchdog: %w", err)
	}

	var once sync.Once
	destroy = func(ctx context.Context) error {
		var errs []error
		once.Do(func() {
			// Stop here rather than in the watchdog, to see any error.
			if running, err := c.Running(ctx); err != nil {
				errs = append(errs, err)
			} else if running {
				errs = append(errs, c.Stop(ctx, "immediate"))
			}
			syscall.Close(writeFD)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					errs = append(errs, fmt.Errorf("watchdog: %w", err))
				}
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("wait for watchdog: %w", ctx.Err()))
			case <-time.After(defaultTimeout):
				errs = append(errs, errors.New("wait for watchdog: timed out"))
			}
			// The watchdog ran as the server's user; finish with ours, to be sure.
			if err := os.RemoveAll(root); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", root, err))
			}
		})
		return errors.Join(errs...)
	}
	return destroy, nil
}
