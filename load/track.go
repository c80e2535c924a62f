package load

import (
	"slices"
	"sync"
	"time"
)

// outcome is how a saga ended.
type outcome struct {
	confirmed bool
	reason    string // for a cancelled order
	at        time.Time
}

// expected reports whether the outcome is the one the order's class aims at.
func (o outcome) expected(c Class) bool {
	switch c {
	case Confirm:
		return o.confirmed
	case Decline:
		return !o.confirmed && o.reason == "payment_failed"
	case OOS:
		return !o.confirmed && o.reason == "out_of_stock"
	}
	return false
}

// saga is an order of the load, placed and not yet seen terminal.
type saga struct {
	class     Class
	scheduled time.Time // open loop: when it was due to be sent; else the send
	accepted  time.Time // the 202
	done      chan struct{}
}

// finished is a saga that ended, handed to the recorder.
type finished struct {
	saga
	outcome
}

// tracker matches the orders the load placed with the terminal events it
// sees. A terminal event may come before the 202 that names its order (the
// saga is quick and the HTTP answer slow): it is kept in early and matched
// when the order is placed. Terminal events of orders the load did not place
// (other clients of the stack) stay in early and are counted as foreign.
type tracker struct {
	mu      sync.Mutex
	pending map[string]*saga
	early   map[string]outcome
	done    map[string]struct{}
	ids     []string       // every order placed, in the order of the 202s
	record  func(finished) // called with mu held, once per saga
}

func newTracker(record func(finished)) *tracker {
	return &tracker{pending: map[string]*saga{}, early: map[string]outcome{}, done: map[string]struct{}{}, record: record}
}

// placed registers an accepted order. Its done channel is closed when the
// saga is seen terminal (perhaps already).
func (t *tracker) placed(id string, s *saga) {
	s.done = make(chan struct{})
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.done[id]; dup {
		close(s.done)
		return
	}
	t.ids = append(t.ids, id)
	if o, ok := t.early[id]; ok {
		delete(t.early, id)
		t.finish(id, s, o)
		return
	}
	t.pending[id] = s
}

// terminal records a terminal event; repeats (a republished event) are
// ignored.
func (t *tracker) terminal(id string, o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.done[id]; dup {
		return
	}
	if s, ok := t.pending[id]; ok {
		delete(t.pending, id)
		t.finish(id, s, o)
		return
	}
	if _, ok := t.early[id]; !ok {
		t.early[id] = o
	}
}

func (t *tracker) finish(id string, s *saga, o outcome) {
	t.done[id] = struct{}{}
	close(s.done)
	t.record(finished{saga: *s, outcome: o})
}

// notTerminal counts the placed sagas not seen terminal.
func (t *tracker) notTerminal() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// placedIDs returns up to n of the placed orders, spread evenly over the
// run.
func (t *tracker) placedIDs(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.ids) <= n {
		return slices.Clone(t.ids)
	}
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, t.ids[i*len(t.ids)/n])
	}
	return out
}

// foreign counts terminal events of orders the load did not place.
func (t *tracker) foreign() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.early)
}
