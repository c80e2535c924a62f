package stack_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/stack"
)

func lines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// A process that keeps exiting is restarted each time; a long-running one
// gets SIGTERM when the supervisor stops, and the supervisor waits for it.
func TestSuperviseRestartsAndStops(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	terms := filepath.Join(dir, "terms")
	procs := []stack.Proc{
		{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", "echo start >> " + starts + "; exit 3"},
			LogFile: filepath.Join(dir, "crasher.log"), PidFile: filepath.Join(dir, "crasher.pid")},
		{Name: "server", Path: "/bin/sh", Args: []string{"-c", "trap 'echo term >> " + terms + "; exit 0' TERM; while :; do sleep 0.05; done"},
			LogFile: filepath.Join(dir, "server.log"), PidFile: filepath.Join(dir, "server.pid")},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stack.Supervise(ctx, zaptest.NewLogger(t), procs, 5*time.Second) }()

	testenv.WaitFor(t, 20*time.Second, "the crasher restarted at least twice", func() bool { return lines(starts) >= 3 })
	if stack.Pid(filepath.Join(dir, "server.pid")) == 0 {
		t.Fatal("no pid file for the running process")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Supervise did not return after cancel")
	}
	if lines(terms) != 1 {
		t.Fatalf("the server got %d SIGTERMs, want 1", lines(terms))
	}
}
