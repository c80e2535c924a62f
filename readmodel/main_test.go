package readmodel

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is a settable clock for the runtime.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newClock returns a clock standing one second after t0.
func newClock() *clock { return &clock{t: t0.Add(time.Second)} }

// newTestReadModel builds the participant on pool, as the runtime would.
func newTestReadModel(t *testing.T, pool *pgxpool.Pool, js jetstream.JetStream, c *clock) *readModel {
	t.Helper()
	rm, err := newReadModel(&service.Runtime{
		Pool: pool, JS: js, Log: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: c.Now,
	}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return rm
}

// feed handles each event in a transaction of its own, as the consumer loop
// would, and fails the test on any error.
func feed(t *testing.T, rm *readModel, events ...event.Event) {
	t.Helper()
	for _, e := range events {
		if err := handleOne(t.Context(), rm, e); err != nil {
			t.Fatalf("handle %s %s: %v", e.Type, e.ID, err)
		}
	}
}

func handleOne(ctx context.Context, rm *readModel, e event.Event) error {
	tx, err := rm.store.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := rm.handle(ctx, tx, e); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// shuffled returns a shuffled copy of events.
func shuffled(r *rand.Rand, events []event.Event) []event.Event {
	out := append([]event.Event(nil), events...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
