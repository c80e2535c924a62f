package consume_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// twoSources is a bundle with a second consumer, on INVENTORY, beside the
// bundle's own on ORDERS.
func twoSources(t *testing.T, o options) (bundle, jetstream.Consumer) {
	t.Helper()
	b := setup(t, o)
	inv, err := stream.EnsureConsumer(t.Context(), b.js, stream.ConsumerConfig{
		Stream: stream.Inventory, Durable: "test-inventory", FilterSubjects: []string{"inventory.>"},
		AckWait: o.ackWait, MaxDeliver: o.maxDeliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, inv
}

// runSources starts a loop over sources and stops it (waiting for it) at
// cleanup.
func runSources(t *testing.T, b bundle, sources []consume.Source, cfg consume.Config) (stop func()) {
	t.Helper()
	cfg.Service = "test"
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	cfg.FetchWait = 500 * time.Millisecond
	cfg.RetryBase = 20 * time.Millisecond
	cfg.RetryMax = 100 * time.Millisecond
	l, err := consume.NewSources(t.Context(), b.pool, b.js, sources, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func reserved(t *testing.T, orderID string) event.Event {
	t.Helper()
	e, err := event.New(event.InventoryReserved, orderID, uuid.NewString(), &event.InventoryReservedPayload{
		OrderID: orderID, Items: []event.Item{{SKU: "sku-1", Qty: 1, UnitPriceCents: 100}}, TotalCents: 100,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func waitConsumerSettled(t *testing.T, c jetstream.Consumer) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, "consumer settled", func() bool {
		info, err := c.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
}

// noOneByOne is the Handler of sources whose test expects every batch to
// go set-based.
func noOneByOne(context.Context, pgx.Tx, event.Event) error {
	return errors.New("the one-by-one path is not expected here")
}

// afterItsOrder is a batch handler of inventory events that each need
// their order's effect there already: it bumps that effect, and hands back
// as too early (counted in early) those whose order has none.
func afterItsOrder(early *atomic.Int32) consume.BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		var later consume.Later
		for _, e := range es {
			tag, err := tx.Exec(ctx, `UPDATE effects SET n = n + 1 WHERE order_id = $1`, e.OrderID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				early.Add(1)
				later.IDs, later.Err = append(later.IDs, e.ID), errors.New("order not seen yet")
			}
		}
		if len(later.IDs) > 0 {
			return &later
		}
		return nil
	}
}

// gate holds a loop's batch in its handler (hold) until the test opens it,
// so that what the test publishes meanwhile arrives together in the next.
type gate struct {
	entered, release chan struct{}
	enter, open      sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

// hold, called by a handler, blocks the first time until the gate opens.
func (g *gate) hold() { g.enter.Do(func() { close(g.entered); <-g.release }) }

// waitHeld waits until a handler is held. The gate opens at cleanup at the
// latest: registered now, after the loop's, it runs before the loop's
// cleanup waits for the held batch.
func (g *gate) waitHeld(t *testing.T) {
	t.Helper()
	t.Cleanup(g.unblock)
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch never came")
	}
}

func (g *gate) unblock() { g.open.Do(func() { close(g.release) }) }

// waitDelivered waits until each consumer has delivered everything.
func waitDelivered(t *testing.T, consumers ...jetstream.Consumer) {
	t.Helper()
	for _, c := range consumers {
		testenv.WaitFor(t, 10*time.Second, "every event delivered", func() bool {
			info, err := c.Info(t.Context())
			return err == nil && info.NumPending == 0
		})
	}
}

func inboxRows(t *testing.T, b bundle, consumer string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM inbox WHERE consumer = $1`, consumer).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Two consumers on two streams share one loop: what waits on both is
// applied in one transaction, each source's events by its own batch
// handler, in the order of the sources (the second finds the first's
// effects of the same batch), and recorded in the inbox under its own
// consumer's name. The loop's first batch is held until every event of the
// test has been delivered, so the next batch holds them all.
func TestSourcesShareBatches(t *testing.T) {
	t.Parallel()
	b, inv := twoSources(t, options{maxDeliver: 5})
	const n = 10
	publish(t, b.js, created(t, "o-src-first"))
	var mu sync.Mutex
	txOf := map[string]map[int64]bool{} // source -> transactions it ran in
	record := func(ctx context.Context, tx pgx.Tx, source string) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&id); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if txOf[source] == nil {
			txOf[source] = map[int64]bool{}
		}
		txOf[source][id] = true
		return nil
	}
	g := newGate()
	var early atomic.Int32
	orders := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		g.hold()
		for _, e := range es {
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
		}
		return record(ctx, tx, "orders")
	}
	// The inventory source's events follow the orders': each needs its
	// order's effect to be there already.
	afterOrder := afterItsOrder(&early)
	inventory := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		if err := afterOrder(ctx, tx, es); err != nil {
			return err
		}
		return record(ctx, tx, "inventory")
	}
	runSources(t, b, []consume.Source{
		{Consumer: b.cons, Handler: noOneByOne, BatchHandler: orders},
		{Consumer: inv, Handler: noOneByOne, BatchHandler: inventory},
	}, consume.Config{Batch: 64})
	g.waitHeld(t)
	for i := range n {
		publish(t, b.js, created(t, fmt.Sprintf("o-src-%02d", i)))
		publish(t, b.js, reserved(t, fmt.Sprintf("o-src-%02d", i)))
	}
	waitDelivered(t, b.cons, inv)
	g.unblock()
	for i := range n {
		id := fmt.Sprintf("o-src-%02d", i)
		testenv.WaitFor(t, 10*time.Second, "both effects of "+id, func() bool { return effects(t, b.pool, id) == 2 })
	}
	waitSettled(t, b)
	waitConsumerSettled(t, inv)
	if got := inboxRows(t, b, "test-orders"); got != n+1 {
		t.Errorf("inbox rows of test-orders = %d, want %d", got, n+1)
	}
	if got := inboxRows(t, b, "test-inventory"); got != n {
		t.Errorf("inbox rows of test-inventory = %d, want %d", got, n)
	}
	mu.Lock()
	shared := 0
	for id := range txOf["inventory"] {
		if txOf["orders"][id] {
			shared++
		}
	}
	mu.Unlock()
	if shared == 0 {
		t.Errorf("no transaction applied both sources (orders in %v, inventory in %v)", txOf["orders"], txOf["inventory"])
	}
	if got := early.Load(); got != 0 {
		t.Errorf("%d inventory events came before their order's in a batch, want 0", got)
	}
	for i := range n {
		if got := effects(t, b.pool, fmt.Sprintf("o-src-%02d", i)); got != 2 {
			t.Errorf("o-src-%02d: %d effects, want 2", i, got)
		}
	}
	if got := len(dlq(t, b.js)); got != 0 {
		t.Errorf("DLQ holds %d, want 0", got)
	}
}

// A source's failures are counted per stream message: the first message of
// ORDERS and the first of INVENTORY have the same sequence, 1, and each
// fails twice before it works. With MaxDeliver 3 neither may be
// dead-lettered; counted together they would be.
func TestSourcesCountFailuresPerStream(t *testing.T) {
	t.Parallel()
	b, inv := twoSources(t, options{maxDeliver: 3})
	publish(t, b.js, created(t, "o-fail-1"))
	publish(t, b.js, reserved(t, "o-fail-2"))
	var tries sync.Map // order id -> *atomic.Int32
	flaky := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		v, _ := tries.LoadOrStore(e.OrderID, new(atomic.Int32))
		if v.(*atomic.Int32).Add(1) <= 2 {
			return errors.New("injected failure")
		}
		return countEffect(ctx, tx, e)
	}
	runSources(t, b, []consume.Source{
		{Consumer: b.cons, Handler: flaky},
		{Consumer: inv, Handler: flaky},
	}, consume.Config{MaxDeliver: 3})
	for _, id := range []string{"o-fail-1", "o-fail-2"} {
		testenv.WaitFor(t, 10*time.Second, "effect of "+id, func() bool { return effects(t, b.pool, id) == 1 })
	}
	waitSettled(t, b)
	waitConsumerSettled(t, inv)
	if got := len(dlq(t, b.js)); got != 0 {
		t.Errorf("DLQ holds %d, want 0", got)
	}
}

// A message a source's handler refuses is dead-lettered under that
// source's consumer and stream, while the other source's messages go on.
func TestSourcesDeadLetterUnderTheirOwnConsumer(t *testing.T) {
	t.Parallel()
	b, inv := twoSources(t, options{maxDeliver: 5})
	bad := reserved(t, "o-bad")
	publish(t, b.js, bad)
	publish(t, b.js, created(t, "o-good"))
	refuse := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		return consume.Permanent(errors.New("refused"))
	}
	runSources(t, b, []consume.Source{
		{Consumer: b.cons, Handler: countEffect},
		{Consumer: inv, Handler: refuse},
	}, consume.Config{})
	testenv.WaitFor(t, 10*time.Second, "effect of o-good", func() bool { return effects(t, b.pool, "o-good") == 1 })
	var letters []*jetstream.RawStreamMsg
	testenv.WaitFor(t, 10*time.Second, "a dead letter", func() bool { letters = dlq(t, b.js); return len(letters) > 0 })
	if len(letters) != 1 {
		t.Fatalf("DLQ holds %d, want 1", len(letters))
	}
	h := letters[0].Header
	if got := h.Get(consume.HeaderDLQConsumer); got != "test-inventory" {
		t.Errorf("dead letter's consumer = %q, want test-inventory", got)
	}
	if got := h.Get(consume.HeaderDLQStream); got != stream.Inventory {
		t.Errorf("dead letter's stream = %q, want %s", got, stream.Inventory)
	}
	if got := h.Get(consume.HeaderOriginalMsgID); got != bad.ID {
		t.Errorf("dead letter's original id = %q, want %s", got, bad.ID)
	}
	waitSettled(t, b)
	waitConsumerSettled(t, inv)
}

// Prepare runs before the sources' batch handlers when a batch holds new
// events of both sources (each handler sees only its own), with all of
// them; never before a loop-level BatchHandler, which sees the whole batch
// itself. A first event's batch is held until both events of the test have
// been delivered, so that the next batch holds them both.
func TestSourcesPrepareOnlyForPerSourceHandlers(t *testing.T) {
	t.Parallel()
	for _, loopLevel := range []bool{false, true} {
		t.Run(fmt.Sprintf("loop-level %v", loopLevel), func(t *testing.T) {
			t.Parallel()
			b, inv := twoSources(t, options{maxDeliver: 5})
			first, a, r := created(t, "o-prep-0"), created(t, "o-prep-1"), reserved(t, "o-prep-1")
			var mu sync.Mutex
			prepared := map[string]bool{}
			prepare := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range es {
					prepared[e.ID] = true
				}
				return nil
			}
			g := newGate()
			each := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
				for _, e := range es {
					if e.ID == first.ID {
						g.hold()
					}
					if err := countEffect(ctx, tx, e); err != nil {
						return err
					}
				}
				return nil
			}
			cfg := consume.Config{Prepare: prepare}
			sources := []consume.Source{{Consumer: b.cons, Handler: noOneByOne}, {Consumer: inv, Handler: noOneByOne}}
			if loopLevel {
				cfg.BatchHandler = each
			} else {
				sources[0].BatchHandler, sources[1].BatchHandler = each, each
			}
			publish(t, b.js, first)
			runSources(t, b, sources, cfg)
			g.waitHeld(t)
			publish(t, b.js, a)
			publish(t, b.js, r)
			waitDelivered(t, b.cons, inv)
			g.unblock()
			testenv.WaitFor(t, 10*time.Second, "both events applied", func() bool { return effects(t, b.pool, "o-prep-1") == 2 })
			waitSettled(t, b)
			waitConsumerSettled(t, inv)
			mu.Lock()
			defer mu.Unlock()
			if loopLevel && len(prepared) != 0 {
				t.Errorf("Prepare ran before a loop-level batch handler, for %v", prepared)
			}
			if !loopLevel && (!prepared[a.ID] || !prepared[r.ID] || prepared[first.ID]) {
				t.Errorf("Prepare saw %v, want both sources' events of the shared batch (%s, %s) and not the lone first (%s)", prepared, a.ID, r.ID, first.ID)
			}
		})
	}
}

// A source whose handler hands back an early event (consume.Later) keeps
// nothing of its pass; the sources after it must not run on that state,
// or what follows its other events in the same batch looks early too. The
// loop's first batch is held until the three events below have been
// delivered, so the next batch holds them all: o-early's order.created,
// which the orders source finds early once, and o-dep's order.created and
// inventory.reserved, which the inventory source applies only after the
// orders source did o-dep's.
func TestEarlyEventOfOneSourceDoesNotHoldBackTheNext(t *testing.T) {
	t.Parallel()
	b, inv := twoSources(t, options{maxDeliver: 10})
	publish(t, b.js, created(t, "o-dep-first"))
	g := newGate()
	var wasEarly atomic.Bool
	var heldBack atomic.Int32 // inventory events found without their order's effect
	orders := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		g.hold()
		// Like the order service's handler: it decides on every event
		// first and writes nothing when one of them is early.
		var later consume.Later
		for _, e := range es {
			if e.OrderID == "o-early" && wasEarly.CompareAndSwap(false, true) {
				later.IDs, later.Err = append(later.IDs, e.ID), errors.New("its step is not seen yet")
			}
		}
		if len(later.IDs) > 0 {
			return &later
		}
		for _, e := range es {
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	runSources(t, b, []consume.Source{
		{Consumer: b.cons, Handler: noOneByOne, BatchHandler: orders},
		{Consumer: inv, Handler: noOneByOne, BatchHandler: afterItsOrder(&heldBack)},
	}, consume.Config{Batch: 64})
	g.waitHeld(t)
	publish(t, b.js, created(t, "o-early"))
	publish(t, b.js, created(t, "o-dep"))
	publish(t, b.js, reserved(t, "o-dep"))
	waitDelivered(t, b.cons, inv)
	g.unblock()
	testenv.WaitFor(t, 10*time.Second, "both effects of o-dep", func() bool { return effects(t, b.pool, "o-dep") == 2 })
	testenv.WaitFor(t, 10*time.Second, "o-early, once retried", func() bool { return effects(t, b.pool, "o-early") == 1 })
	waitSettled(t, b)
	waitConsumerSettled(t, inv)
	if !wasEarly.Load() {
		t.Fatal("o-early was never early: the test did not test")
	}
	if got := heldBack.Load(); got != 0 {
		t.Errorf("o-dep's inventory.reserved was found early %d time(s): the orders source's early event held it back", got)
	}
	if got := len(dlq(t, b.js)); got != 0 {
		t.Errorf("DLQ holds %d, want 0", got)
	}
}

// An event found too early whose step is in the same batch, from a source
// handled after its own, is applied in the same round once the rest has
// committed: it is not sent back to wait for a redelivery. Here the orders
// source goes first and its o-x needs o-x's inventory.reserved, which the
// inventory source applies after it.
func TestEarlyEventAppliedOnceItsStepInTheBatchCommitted(t *testing.T) {
	t.Parallel()
	b, inv := twoSources(t, options{maxDeliver: 10})
	publish(t, b.js, created(t, "o-x-first"))
	g := newGate()
	var early atomic.Int32
	orders := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		g.hold()
		var later consume.Later
		for _, e := range es {
			if e.OrderID != "o-x" {
				continue
			}
			var n int
			err := tx.QueryRow(ctx, `SELECT n FROM effects WHERE order_id = $1`, e.OrderID).Scan(&n)
			if errors.Is(err, pgx.ErrNoRows) {
				early.Add(1)
				later.IDs, later.Err = append(later.IDs, e.ID), errors.New("its reservation is not seen yet")
				continue
			}
			if err != nil {
				return err
			}
		}
		if len(later.IDs) > 0 {
			return &later
		}
		for _, e := range es {
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	inventory := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		for _, e := range es {
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	core, logs := observer.New(zapcore.InfoLevel)
	runSources(t, b, []consume.Source{
		{Consumer: b.cons, Handler: noOneByOne, BatchHandler: orders},
		{Consumer: inv, Handler: noOneByOne, BatchHandler: inventory},
	}, consume.Config{Batch: 64, Logger: zap.New(core)})
	g.waitHeld(t)
	publish(t, b.js, created(t, "o-x"))
	publish(t, b.js, reserved(t, "o-x"))
	waitDelivered(t, b.cons, inv)
	g.unblock()
	testenv.WaitFor(t, 10*time.Second, "both effects of o-x", func() bool { return effects(t, b.pool, "o-x") == 2 })
	waitSettled(t, b)
	waitConsumerSettled(t, inv)
	if early.Load() == 0 {
		t.Fatal("o-x was never early: the test did not test")
	}
	if n := logs.FilterMessageSnippet("comes before the step").Len(); n != 0 {
		t.Errorf("o-x was sent back for a redelivery %d time(s); want it applied in its own batch's round", n)
	}
}

// An event too early whose step comes in a later batch is held by the
// loop and applied once the step has committed: it is not sent back to
// JetStream. Here o-held's inventory.reserved is published first and
// needs o-held's order.created, published once the loop has found it
// early.
func TestEarlyEventHeldUntilItsStepCame(t *testing.T) {
	t.Parallel()
	b, inv := twoSources(t, options{maxDeliver: 10})
	var early atomic.Int32
	orders := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		for _, e := range es {
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	core, logs := observer.New(zapcore.InfoLevel)
	runSources(t, b, []consume.Source{
		{Consumer: b.cons, Handler: noOneByOne, BatchHandler: orders},
		{Consumer: inv, Handler: noOneByOne, BatchHandler: afterItsOrder(&early)},
	}, consume.Config{Batch: 64, Logger: zap.New(core)})
	publish(t, b.js, reserved(t, "o-held"))
	testenv.WaitFor(t, 10*time.Second, "o-held's inventory.reserved found early", func() bool { return early.Load() > 0 })
	publish(t, b.js, created(t, "o-held"))
	testenv.WaitFor(t, 10*time.Second, "both effects of o-held", func() bool { return effects(t, b.pool, "o-held") == 2 })
	waitSettled(t, b)
	waitConsumerSettled(t, inv)
	if n := logs.FilterMessageSnippet("comes before the step").Len(); n != 0 {
		t.Errorf("o-held's inventory.reserved was sent back for a redelivery %d time(s); want it held until its step came", n)
	}
	if got := len(dlq(t, b.js)); got != 0 {
		t.Errorf("DLQ holds %d, want 0", got)
	}
}
