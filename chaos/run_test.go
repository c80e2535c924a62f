package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/pgcluster"
	"github.com/jetsaga/jetsaga/stack"
)

// TestRun runs the real thing, small: the binaries built from this checkout
// into a root of their own, a stack on free ports, 200 orders in 8 seconds
// with the default fault probabilities, a kill every second, one NATS and
// one Postgres crash, and six poison messages. It must pass, account for
// every poison, and leave nothing running.
func TestRun(t *testing.T) {
	root := buildRoot(t)
	// The supervisor (jetsaga supervise, started by stack.Up) finds the
	// binaries from its working directory, which it inherits.
	t.Chdir(root)
	o := Defaults()
	o.Stack = stack.Config{
		Root:     root,
		RunDir:   filepath.Join(root, ".run", "chaos"),
		NATSPort: freePort(t),
		PGPort:   freePort(t),
		Addrs:    map[string]string{},
		Flags:    map[string]string{},
	}
	for _, s := range stack.Services {
		o.Stack.Addrs[s] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	o.Orders, o.Rate, o.Workers = 200, 25, 4
	o.KillEvery = time.Second
	o.Timeout = time.Minute
	o.Seed = 3
	o.Poison = 6

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := Run(ctx, o, &out)
	t.Logf("chaos output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("the chaos run failed:%s", rep.failures())
	}
	if rep.Placed != o.Orders || rep.OrderRows != o.Orders {
		t.Errorf("placed %d, %d in the order service; want %d", rep.Placed, rep.OrderRows, o.Orders)
	}
	if rep.Kills[targetNATS] != 1 || rep.Kills[targetPostgres] != 1 {
		t.Errorf("kills %v: want nats-server and postgres once each", rep.Kills)
	}
	faults := rep.FaultTotals()
	if faults["crash_after_commit"] == 0 || faults["duplicate_publish"] == 0 || faults["redeliver"] == 0 {
		t.Errorf("faults %v: want crashes, duplicates and redeliveries", faults)
	}
	crashed, killed := 0, 0
	for _, r := range rep.Restarts {
		crashed += r.Crashed
		killed += r.Killed
	}
	if crashed == 0 || killed == 0 {
		t.Errorf("restarts %v: want restarts after crashes and after kills", rep.Restarts)
	}
	// Every poison accounted for: the near-max_payload ones refused by the
	// stream, the others dead-lettered by every consumer that takes them.
	if len(rep.Poison) != o.Poison || rep.unaccounted() != 0 {
		t.Errorf("poison %+v: want %d, each accounted for", rep.Poison, o.Poison)
	}
	for _, p := range rep.Poison {
		switch {
		case p.Kind == poisonHuge && p.Refused == "":
			t.Errorf("a message near max_payload was stored: %+v", p)
		case p.Kind != poisonHuge && (p.Stream == "" || len(p.Letters) < 2):
			t.Errorf("poison %s not dead-lettered by its consumers: %+v", p.Kind, p)
		}
	}
	if !strings.Contains(out.String(), "PASS: 200 orders placed once and terminal") {
		t.Errorf("the report does not say PASS")
	}

	// Torn down: nothing listens any more.
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", o.Stack.NATSPort), fmt.Sprintf("127.0.0.1:%d", o.Stack.PGPort), o.Stack.Addrs["order"]} {
		if conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after the run", addr)
		}
	}
}

// buildRoot builds the binaries the stack runs into root/bin and copies the
// NATS config to root/deploy/nats, in a new directory under the system's
// temporary directory that the postgres user may enter (the cluster runs as
// that user when the tests run as root).
func buildRoot(t *testing.T) string {
	t.Helper()
	if _, err := pgcluster.FindBin(); err != nil {
		t.Fatal(err)
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	module := filepath.Dir(strings.TrimSpace(string(gomod)))
	root, err := os.MkdirTemp("", "jetsaga-chaos-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"build", "-o", filepath.Join(root, "bin") + "/", "./cmd/..."},
		{"build", "-o", filepath.Join(root, "bin", "nats-server"), "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = module
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	conf, err := os.ReadFile(filepath.Join(module, "deploy", "nats", "dev.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "deploy", "nats"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "deploy", "nats", "dev.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
