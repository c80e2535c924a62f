package stack_test

import (
	"slices"
	"testing"

	"github.com/jetsaga/jetsaga/stack"
)

// The stack reads JETSAGA_* variables, never the bare names (NATS_PORT,
// ORDER_FLAGS…) that other tools use, and hands the services their
// configuration under the names their flags read.
func TestFromEnvReadsPrefixedVariables(t *testing.T) {
	t.Setenv("NATS_PORT", "1111")
	t.Setenv("ORDER_ADDR", "127.0.0.1:1")
	t.Setenv("ORDER_FLAGS", "--bare")
	t.Setenv("JETSAGA_PG_PORT", "55732")
	t.Setenv("JETSAGA_INVENTORY_ADDR", "127.0.0.1:38082")
	t.Setenv("JETSAGA_PAYMENT_FLAGS", "--decline-rate 0.5")
	c, err := stack.FromEnv("/root", "")
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSPort != 4222 || c.Addrs["order"] != "127.0.0.1:8081" || c.Flags["order"] != "" {
		t.Errorf("bare variables were read: %+v", c)
	}
	if c.PGPort != 55732 || c.Addrs["inventory"] != "127.0.0.1:38082" || c.Flags["payment"] != "--decline-rate 0.5" {
		t.Errorf("JETSAGA_ variables not read: %+v", c)
	}
	if !slices.Contains(c.Env(), "JETSAGA_PG_PORT=55732") || !slices.Contains(c.Env(), "JETSAGA_PAYMENT_FLAGS=--decline-rate 0.5") {
		t.Errorf("Env() = %q", c.Env())
	}
	for _, p := range c.Procs() {
		if p.Name == "inventory" && !slices.Contains(p.Env, "JETSAGA_HTTP_ADDR=127.0.0.1:38082") {
			t.Errorf("inventory's environment = %q, want JETSAGA_HTTP_ADDR", p.Env)
		}
	}
	if c.NATSProfPort != 0 {
		t.Errorf("nats-server profiling on without %s: port %d", stack.EnvNATSProfPort, c.NATSProfPort)
	}
	t.Setenv(stack.EnvNATSProfPort, "65001")
	if c, err = stack.FromEnv("/root", ""); err != nil || c.NATSProfPort != 65001 {
		t.Errorf("%s=65001: port %d, %v", stack.EnvNATSProfPort, c.NATSProfPort, err)
	}
	t.Setenv("JETSAGA_NATS_PORT", "nope")
	if _, err := stack.FromEnv("/root", ""); err == nil {
		t.Error("JETSAGA_NATS_PORT=nope read without an error")
	}
}
