package stack_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/stack"
)

// The cluster stack runs two instances of every service, each on its own
// port, under its own identity's seed, leaving the streams to jetsaga
// provision; its ports move with JETSAGA_CLUSTER_*.
func TestClusterProcs(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(stack.EnvClusterHTTPPort, "29181")
	t.Setenv(stack.EnvClusterNATSPort, "24433")
	c, err := stack.ClusterFromEnv(root, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, ".run", "cluster"); c.RunDir != want {
		t.Errorf("run folder %s, want %s", c.RunDir, want)
	}
	if want := "nats://127.0.0.1:24433,nats://127.0.0.1:24434,nats://127.0.0.1:24435"; c.NATSURL() != want {
		t.Errorf("NATS URL %s, want %s", c.NATSURL(), want)
	}
	procs := c.Procs()
	if len(procs) != len(stack.Services)*stack.ClusterInstances {
		t.Fatalf("%d processes, want %d", len(procs), len(stack.Services)*stack.ClusterInstances)
	}
	addrs := map[string]string{}
	for _, p := range procs {
		service, _, _ := strings.Cut(p.Name, "-")
		env := map[string]string{}
		for _, kv := range p.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		if other, ok := addrs[env["JETSAGA_HTTP_ADDR"]]; ok {
			t.Errorf("%s and %s share %s", p.Name, other, env["JETSAGA_HTTP_ADDR"])
		}
		addrs[env["JETSAGA_HTTP_ADDR"]] = p.Name
		if env["NATS_URL"] != c.NATSURL() {
			t.Errorf("%s: NATS_URL %s, want the three nodes", p.Name, env["NATS_URL"])
		}
		if seed := env["JETSAGA_NATS_NKEY_SEED"]; filepath.Base(seed) != service+".nk" {
			t.Errorf("%s: seed %s, want its own identity's", p.Name, seed)
		} else if _, err := os.Stat(seed); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		for _, want := range []string{"--provision-streams=false", "--replicas=3"} {
			if !slices.Contains(p.Args, want) {
				t.Errorf("%s: args %q lack %s", p.Name, p.Args, want)
			}
		}
		if !strings.HasSuffix(p.PidFile, p.Name+".pid") {
			t.Errorf("%s: pid file %s", p.Name, p.PidFile)
		}
	}
	if addrs["127.0.0.1:29181"] != "order-1" || addrs["127.0.0.1:29188"] != "readmodel-2" {
		t.Errorf("addresses %v: want order-1 on 29181 … readmodel-2 on 29188", addrs)
	}
	// The CLI's defaults for the cluster point at the first instances.
	if c.URL("order") != "http://127.0.0.1:29181" {
		t.Errorf("order URL %s", c.URL("order"))
	}
}
