package testenv

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/service"
)

// serviceReadyTimeout bounds how long RunService waits for a service to be
// ready (migrations, streams and consumers included).
const serviceReadyTimeout = 60 * time.Second

// RunService runs spec in the service runtime with cfg, as its binary would,
// until the test ends, and returns the base URL of its HTTP API once it is
// ready. HTTPAddr defaults to a free port on 127.0.0.1, Logger to zaptest's;
// OnReady is RunService's. At cleanup the service is stopped (drained) and a
// Run that failed fails the test.
func RunService(t testing.TB, cfg service.Config, spec service.Spec) string {
	t.Helper()
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	addr := make(chan string, 1)
	cfg.OnReady = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, cfg, spec) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("testenv: %s: service.Run: %v", spec.Name, err)
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case err := <-done:
		t.Fatalf("testenv: %s ended before it was ready: %v", spec.Name, err)
	case <-time.After(serviceReadyTimeout):
		t.Fatalf("testenv: %s not ready within %s", spec.Name, serviceReadyTimeout)
	}
	return ""
}
