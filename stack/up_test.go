package stack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/pgcluster"
	"github.com/jetsaga/jetsaga/stack"
)

// fakeCheckout is a checkout whose bin/ holds placeholder binaries: enough
// for Up to get past its "is it built" check.
func fakeCheckout(t *testing.T) stack.Config {
	t.Helper()
	root := checkout(t)
	for _, name := range append([]string{"nats-server", "jetsaga"}, stack.Services...) {
		if err := os.WriteFile(filepath.Join(root, "bin", name), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, err := stack.FromEnv(root, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stack.Services {
		c.Addrs[s] = "127.0.0.1:" + strconv.Itoa(freePort(t))
	}
	return c
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A failed Up (here: the NATS port is taken) stops the Postgres it started,
// so that nothing of the half-started stack keeps running.
func TestUpRollsBackWhatItStarted(t *testing.T) {
	c := fakeCheckout(t)
	c.PGPort = freePort(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	c.NATSPort = taken.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = stack.Down(context.Background(), c, zaptest.NewLogger(t)) })

	err = stack.Up(ctx, c, zaptest.NewLogger(t))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d is in use", c.NATSPort)) {
		t.Fatalf("Up = %v, want the NATS port in use", err)
	}
	pc, err := pgcluster.Init(ctx, filepath.Join(c.RunDir, "pg"), pgcluster.Options{Port: c.PGPort})
	if err != nil {
		t.Fatal(err)
	}
	if running, err := pc.Running(ctx); err != nil || running {
		t.Fatalf("Postgres running = %v (%v) after the failed Up, want stopped", running, err)
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(c.PGPort), time.Second); err == nil {
		conn.Close()
		t.Fatalf("port %d still answers after the failed Up", c.PGPort)
	}
}

// Up on a running stack with other *_FLAGS changes nothing and says so,
// instead of claiming that the stack is up as asked.
func TestUpOnARunningStackWithOtherFlags(t *testing.T) {
	c := fakeCheckout(t)
	pids := filepath.Join(c.RunDir, "pids")
	if err := os.MkdirAll(pids, 0o755); err != nil {
		t.Fatal(err)
	}
	// The stack runs: its supervisor's pid file names a live process (this
	// one), and stack.env says how it was started.
	if err := os.WriteFile(c.PidFile("supervisor"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.RunDir, "stack.env"), []byte(strings.Join(c.Env(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !stack.Running(c) {
		t.Fatal("Running = false with a live supervisor")
	}
	c.Flags["payment"] = "--decline-rate 0.5"
	err := stack.Up(t.Context(), c, zaptest.NewLogger(t))
	if !errors.Is(err, stack.ErrAlreadyRunning) || !strings.Contains(err.Error(), `JETSAGA_PAYMENT_FLAGS: running "", asked "--decline-rate 0.5"`) {
		t.Fatalf("Up = %v, want ErrAlreadyRunning naming JETSAGA_PAYMENT_FLAGS", err)
	}
}
