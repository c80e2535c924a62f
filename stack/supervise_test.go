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

// A crash ends the process that counted it: the supervisor reads the faults
// each process logged and hands the sum to the next one (as
// JETSAGA_INJECT_PREVIOUS), so that the restarted service's
// jetsaga_faults_injected_total still shows them.
func TestSuperviseCarriesFaultCountsAcrossCrashes(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	script := `echo "prev=$JETSAGA_INJECT_PREVIOUS" >> ` + seen + `
echo '{"level":"warn","msg":"fault injected","fault":"redeliver","order_id":"o"}'
echo '{"level":"warn","msg":"fault injected","fault":"crash_after_commit","order_id":"o"}'
echo 'not json: "fault injected"'
exit 3`
	procs := []stack.Proc{{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", script},
		LogFile: filepath.Join(dir, "crasher.log")}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stack.Supervise(ctx, zaptest.NewLogger(t), procs, 5*time.Second) }()
	testenv.WaitFor(t, 20*time.Second, "three lives of the crasher", func() bool { return lines(seen) >= 3 })
	cancel()
	<-done
	b, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(b)), "\n")[:3]
	want := []string{"prev=", "prev=crash_after_commit=1,redeliver=1", "prev=crash_after_commit=2,redeliver=2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("each life saw %q, want %q", got, want)
	}
}
