package readmodel

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// viewRow returns the order's order_views row as JSON text, every column
// included, or "" if there is none.
func viewRow(t *testing.T, pool *pgxpool.Pool, orderID string) string {
	t.Helper()
	var row string
	err := pool.QueryRow(t.Context(), `SELECT to_jsonb(v)::text FROM order_views v WHERE order_id = $1`, orderID).Scan(&row)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatalf("read order_views row: %v", err)
	}
	return row
}

func countEvents(t *testing.T, pool *pgxpool.Pool, orderID string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE order_id = $1`, orderID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHandleConverges feeds each saga in causal order to one schema, and in
// shuffled orders, every event twice, to others: every order_views row is the
// same, to the byte.
func TestHandleConverges(t *testing.T) {
	t.Parallel()

	url := testenv.DatabaseURL(t)
	for pi, p := range paths {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()

			events := saga(t, "order-conv", p)
			ref := newTestReadModel(t, testenv.PoolOn(t, url, fmt.Sprintf("rm_ref_%d", pi), Migrations()), nil, newClock())
			feed(t, ref, events...)
			want := viewRow(t, ref.store.pool, "order-conv")
			if want == "" {
				t.Fatal("no view after the causal feed")
			}

			r := rand.New(rand.NewPCG(uint64(pi), 42))
			orders := [][]event.Event{shuffled(r, events), shuffled(r, events), shuffled(r, events), reversed(events)}
			for i, order := range orders {
				pool := testenv.PoolOn(t, url, fmt.Sprintf("rm_shuffle_%d_%d", pi, i), Migrations())
				rm := newTestReadModel(t, pool, nil, newClock())
				feed(t, rm, order...)
				feed(t, rm, shuffled(r, events)...) // every event again: no-ops
				if got := viewRow(t, pool, "order-conv"); got != want {
					t.Errorf("order %s gives\n%s\nwant (causal order)\n%s", typesOfEvents(order), got, want)
				}
				if n := countEvents(t, pool, "order-conv"); n != len(events) {
					t.Errorf("events table holds %d rows, want %d", n, len(events))
				}
				if got := rm.duplicates.Load(); got != int64(len(events)) {
					t.Errorf("duplicates = %d, want %d", got, len(events))
				}
				if got := rm.lags.summary().Samples; got != len(events) {
					t.Errorf("lag samples = %d, want %d", got, len(events))
				}
			}
		})
	}
}

// TestHandleSteps checks the view after each event of out-of-order feeds.
func TestHandleSteps(t *testing.T) {
	t.Parallel()

	type step struct {
		typ          event.Type
		wantStatus   Status
		wantReason   string
		wantCustomer string
		wantVersion  int
	}
	tests := []struct {
		name  string
		path  path
		steps []step
	}{
		{name: "confirmed, causal", path: pathConfirmed, steps: []step{
			{event.OrderCreated, Pending, "", "cust-7", 1},
			{event.InventoryReserved, Reserved, "", "cust-7", 2},
			{event.PaymentCompleted, Reserved, "", "cust-7", 3},
			{event.OrderConfirmed, Confirmed, "", "cust-7", 4},
		}},
		{name: "confirmed first, created last", path: pathConfirmed, steps: []step{
			{event.OrderConfirmed, Confirmed, "", "", 1},
			{event.InventoryReserved, Confirmed, "", "", 2},
			{event.PaymentCompleted, Confirmed, "", "", 3},
			{event.OrderCreated, Confirmed, "", "cust-7", 4},
		}},
		{name: "payment failed, cancelled early", path: pathPaymentFailed, steps: []step{
			{event.InventoryReserved, Reserved, "", "", 1},
			{event.OrderCancelled, Cancelled, event.ReasonPaymentFailed, "", 2},
			{event.PaymentFailed, Cancelled, event.ReasonPaymentFailed, "", 3},
			{event.OrderCreated, Cancelled, event.ReasonPaymentFailed, "cust-7", 4},
			{event.InventoryReleased, Cancelled, event.ReasonPaymentFailed, "cust-7", 5},
		}},
		{name: "out of stock", path: pathOutOfStock, steps: []step{
			{event.InventoryRejected, Pending, "", "", 1},
			{event.OrderCreated, Pending, "", "cust-7", 2},
			{event.OrderCancelled, Cancelled, event.ReasonOutOfStock, "cust-7", 3},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			pool := testenv.Pool(t, Schema, Migrations())
			rm := newTestReadModel(t, pool, nil, newClock())
			byType := map[event.Type]event.Event{}
			for _, e := range saga(t, "order-steps", tt.path) {
				byType[e.Type] = e
			}
			for _, s := range tt.steps {
				feed(t, rm, byType[s.typ])
				v, err := rm.store.view(t.Context(), "order-steps")
				if err != nil {
					t.Fatalf("after %s: %v", s.typ, err)
				}
				if v.Status != s.wantStatus || v.Reason != s.wantReason || v.CustomerID != s.wantCustomer || v.Version != s.wantVersion {
					t.Fatalf("after %s: status %s, reason %q, customer %q, version %d; want %s, %q, %q, %d",
						s.typ, v.Status, v.Reason, v.CustomerID, v.Version, s.wantStatus, s.wantReason, s.wantCustomer, s.wantVersion)
				}
			}
		})
	}
}

// TestHandleReemitted: an event re-emitted with a new id for the same order
// and type is recorded but changes nothing, not even updated_at.
func TestHandleReemitted(t *testing.T) {
	t.Parallel()

	pool := testenv.Pool(t, Schema, Migrations())
	c := newClock()
	rm := newTestReadModel(t, pool, nil, c)
	events := saga(t, "order-re", pathPaymentFailed)
	feed(t, rm, events...)
	before := viewRow(t, pool, "order-re")

	for _, e := range events {
		c.Advance(time.Minute)
		feed(t, rm, reemit(t, e, e.OccurredAt.Add(time.Second)))
	}
	if after := viewRow(t, pool, "order-re"); after != before {
		t.Errorf("re-emitted events changed the view:\n%s\nwas\n%s", after, before)
	}
	if n := countEvents(t, pool, "order-re"); n != 2*len(events) {
		t.Errorf("events table holds %d rows, want %d", n, 2*len(events))
	}
}

// TestHandleConcurrent: the events of one order handled at once, each in its
// own transaction, still give the causal view: the per-order lock keeps a
// transaction from saving a view that misses another's event.
func TestHandleConcurrent(t *testing.T) {
	t.Parallel()

	url := testenv.DatabaseURL(t)
	events := saga(t, "order-conc", pathPaymentFailed)
	ref := newTestReadModel(t, testenv.PoolOn(t, url, "rm_ref", Migrations()), nil, newClock())
	feed(t, ref, events...)
	want := viewRow(t, ref.store.pool, "order-conc")

	for round := range 5 {
		pool := testenv.PoolOn(t, url, fmt.Sprintf("rm_conc_%d", round), Migrations())
		rm := newTestReadModel(t, pool, nil, newClock())
		var wg sync.WaitGroup
		errs := make(chan error, 2*len(events))
		for _, e := range append(slices.Clone(events), events...) {
			wg.Go(func() { errs <- handleOne(t.Context(), rm, e) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if got := viewRow(t, pool, "order-conc"); got != want {
			t.Fatalf("round %d: concurrent feed gives\n%s\nwant\n%s", round, got, want)
		}
	}
}

// TestHandleContractViolation: an event that breaks the contract is a
// permanent error (dead-lettered, never retried) and leaves no trace.
func TestHandleContractViolation(t *testing.T) {
	t.Parallel()

	pool := testenv.Pool(t, Schema, Migrations())
	rm := newTestReadModel(t, pool, nil, newClock())
	good := saga(t, "order-bad", pathConfirmed)[0]

	tests := []struct {
		name  string
		event func() event.Event
	}{
		{"body not JSON", func() event.Event { e := good; e.Body = []byte("{"); return e }},
		{"body for another order", func() event.Event {
			e := good
			e.Body = []byte(`{"order_id":"other","customer_id":"c","items":[{"sku":"s","qty":1,"unit_price_cents":1}],"total_cents":1}`)
			return e
		}},
		{"unknown type", func() event.Event { e := good; e.Type = "order.shipped"; return e }},
		{"bad id", func() event.Event { e := good; e.ID = "not-a-uuid"; return e }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handleOne(t.Context(), rm, tt.event())
			if !consume.IsPermanent(err) {
				t.Fatalf("error = %v, want a permanent one", err)
			}
		})
	}
	if n := countEvents(t, pool, "order-bad"); n != 0 {
		t.Errorf("events table holds %d rows, want 0", n)
	}
	if row := viewRow(t, pool, "order-bad"); row != "" {
		t.Errorf("a view was written: %s", row)
	}
}

// TestHandleLag: projected_at is the runtime's clock, lag its distance from
// occurred_at, recorded in the view, the ring and the histogram.
func TestHandleLag(t *testing.T) {
	t.Parallel()

	pool := testenv.Pool(t, Schema, Migrations())
	c := newClock()
	rm := newTestReadModel(t, pool, nil, c)
	events := saga(t, "order-lag", pathConfirmed)
	for _, e := range events {
		c.Advance(250 * time.Millisecond)
		feed(t, rm, e)
	}
	v, err := rm.store.view(t.Context(), "order-lag")
	if err != nil {
		t.Fatal(err)
	}
	// The clock starts at t0+1s and moves 250ms before each event; event i
	// occurred at t0+10ms*i.
	for i, s := range v.Timeline {
		wantProjected := t0.Add(time.Second + time.Duration(i+1)*250*time.Millisecond)
		wantLag := float64(wantProjected.Sub(events[i].OccurredAt)) / float64(time.Millisecond)
		if !s.ProjectedAt.Equal(wantProjected) || s.LagMS != wantLag {
			t.Errorf("step %d: projected %v lag %v, want %v %v", i, s.ProjectedAt, s.LagMS, wantProjected, wantLag)
		}
	}
	if last := v.Timeline[len(v.Timeline)-1]; v.LagMS != last.LagMS || !v.UpdatedAt.Equal(last.ProjectedAt) {
		t.Errorf("view lag %v updated %v, want the last event's %v %v", v.LagMS, v.UpdatedAt, last.LagMS, last.ProjectedAt)
	}
	if got := rm.lags.summary(); got.Samples != 4 || got.P50 != 1490 || got.P99 != 1970 {
		t.Errorf("lag summary = %+v, want 4 samples, p50 1490, p99 1970", got)
	}
}

func reversed(events []event.Event) []event.Event {
	out := slices.Clone(events)
	slices.Reverse(out)
	return out
}

func typesOfEvents(events []event.Event) string {
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = string(e.Type)
	}
	return fmt.Sprint(s)
}

// TestHandleBatchMatchesOneByOne projects sagas set-based, whole or split in
// two batches, in shuffled orders and with every event twice, and gets the
// view the one-by-one path gives: same status, reason, version, items and
// timeline, to the byte (the test clock stands still).
func TestHandleBatchMatchesOneByOne(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	for pi, p := range paths {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(pi), 7))
			id := fmt.Sprintf("order-batch-%d", pi)
			events := saga(t, id, p)
			ref := newTestReadModel(t, testenv.PoolOn(t, url, fmt.Sprintf("rm_batch_ref_%d", pi), Migrations()), nil, newClock())
			feed(t, ref, events...)
			want := viewRow(t, ref.store.pool, id)
			if want == "" {
				t.Fatal("no view after the one-by-one feed")
			}

			for i, batches := range [][][]event.Event{
				{events},
				{shuffled(r, events)},
				{events[:len(events)/2], events[len(events)/2:]},
				{shuffled(r, events), shuffled(r, events)}, // the second batch: all duplicates
			} {
				rm := newTestReadModel(t, testenv.PoolOn(t, url, fmt.Sprintf("rm_batch_%d_%d", pi, i), Migrations()), nil, newClock())
				for _, b := range batches {
					tx, err := rm.store.pool.Begin(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					if err := rm.handleBatch(t.Context(), tx, b); err != nil {
						t.Fatalf("batches %d: %v", i, err)
					}
					if err := tx.Commit(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
				if got := viewRow(t, rm.store.pool, id); got != want {
					t.Errorf("batches %d give\n%s\nwant (one by one)\n%s", i, got, want)
				}
				if n := countEvents(t, rm.store.pool, id); n != len(events) {
					t.Errorf("batches %d: events table holds %d rows, want %d", i, n, len(events))
				}
				if got := rm.projected.Load(); got != int64(len(events)) {
					t.Errorf("batches %d: projected %d, want %d", i, got, len(events))
				}
			}
		})
	}
}
