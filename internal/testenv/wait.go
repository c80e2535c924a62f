package testenv

import (
	"testing"
	"time"
)

// WaitFor calls cond until it returns true, first every 20ms, backing off to
// every 200ms, and fails the test with msg if it is still false after timeout.
// Tests wait on a condition with it instead of sleeping. cond is called from
// the test's goroutine, one call at a time, and once more at the deadline.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	const (
		first = 20 * time.Millisecond
		most  = 200 * time.Millisecond
	)
	began := time.Now()
	deadline := began.Add(timeout)
	interval := first
	for {
		if cond() {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out after %v waiting for %s", time.Since(began).Round(time.Millisecond), msg)
			return
		}
		time.Sleep(min(interval, left))
		interval = min(interval*3/2, most)
	}
}
