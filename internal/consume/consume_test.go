package consume_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// effects counts how often the handler ran its effect per order: a handler
// that is not idempotent on its own, so only the inbox keeps it at one.
var effectsMigrations = fstest.MapFS{
	"001_effects.up.sql": {Data: []byte(`CREATE TABLE effects (order_id text PRIMARY KEY, n int NOT NULL);`)},
}

func countEffect(ctx context.Context, tx pgx.Tx, e event.Event) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO effects (order_id, n) VALUES ($1, 1)
		ON CONFLICT (order_id) DO UPDATE SET n = effects.n + 1`, e.OrderID)
	return err
}

type bundle struct {
	nats *testenv.NATS
	nc   *nats.Conn
	js   jetstream.JetStream
	pool *pgxpool.Pool
	cons jetstream.Consumer
}

type options struct {
	streams    stream.Config
	ackWait    time.Duration
	maxDeliver int
}

func setup(t *testing.T, o options) bundle {
	t.Helper()
	ctx := t.Context()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	js := testenv.JetStream(t, nc)
	if err := stream.Ensure(ctx, js, o.streams); err != nil {
		t.Fatal(err)
	}
	cons, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{
		Stream: stream.Orders, Durable: "test-orders", FilterSubjects: []string{"order.>"},
		AckWait: o.ackWait, MaxDeliver: o.maxDeliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	return bundle{nats: n, nc: nc, js: js, pool: testenv.Pool(t, "svc", effectsMigrations), cons: cons}
}

// run starts a loop over the bundle's consumer and stops it (waiting for
// it) at cleanup.
func run(t *testing.T, b bundle, h consume.Handler, cfg consume.Config) (stop func()) {
	t.Helper()
	return runSources(t, b, []consume.Source{{Consumer: b.cons, Handler: h}}, cfg)
}

func created(t *testing.T, orderID string) event.Event {
	t.Helper()
	e, err := event.New(event.OrderCreated, orderID, "", &event.OrderCreatedPayload{
		OrderID: orderID, CustomerID: "c1",
		Items:      []event.Item{{SKU: "sku-1", Qty: 1, UnitPriceCents: 100}},
		TotalCents: 100,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func publish(t *testing.T, js jetstream.JetStream, e event.Event) *jetstream.PubAck {
	t.Helper()
	ack, err := js.PublishMsg(t.Context(), e.Msg())
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// publishCreated publishes n order.created events of orders prefix-00,
// prefix-01, … and returns them in that order.
func publishCreated(t *testing.T, js jetstream.JetStream, prefix string, n int) []event.Event {
	t.Helper()
	events := make([]event.Event, n)
	for i := range events {
		events[i] = created(t, fmt.Sprintf("%s-%02d", prefix, i))
		publish(t, js, events[i])
	}
	return events
}

func effects(t *testing.T, pool *pgxpool.Pool, orderID string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), `SELECT n FROM effects WHERE order_id = $1`, orderID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func dlq(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// ackPending waits until the consumer holds no unacknowledged message and
// nothing is left to deliver.
func waitSettled(t *testing.T, b bundle) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, "consumer settled", func() bool {
		info, err := b.cons.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
}

func TestHandlesEachEventOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	run(t, b, countEffect, consume.Config{Workers: 2})
	for i := range 50 {
		publish(t, b.js, created(t, fmt.Sprintf("o-%d", i)))
	}
	testenv.WaitFor(t, 20*time.Second, "all 50 handled", func() bool {
		var n int
		_ = b.pool.QueryRow(t.Context(), `SELECT count(*) FROM effects WHERE n = 1`).Scan(&n)
		return n == 50
	})
	waitSettled(t, b)
	var inbox int
	_ = b.pool.QueryRow(t.Context(), `SELECT count(*) FROM inbox WHERE consumer = 'test-orders'`).Scan(&inbox)
	if inbox != 50 {
		t.Fatalf("inbox rows = %d, want 50", inbox)
	}
}

// The handler commits but the ack never reaches the server: after AckWait the
// message comes again and the inbox turns it into a no-op.
func TestRedeliveryAfterAckWaitHasOneEffect(t *testing.T) {
	t.Parallel()
	b := setup(t, options{ackWait: 500 * time.Millisecond})
	var (
		calls  atomic.Int32
		lostAk atomic.Bool
	)
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		calls.Add(1)
		return countEffect(ctx, tx, e)
	}
	run(t, b, h, consume.Config{Faults: consume.Faults{
		AfterCommit: func(context.Context, event.Event) consume.AckAction {
			if lostAk.CompareAndSwap(false, true) {
				return consume.NoAck
			}
			return consume.Ack
		},
	}})
	e := created(t, "o-lost-ack")
	publish(t, b.js, e)
	// The redelivery is seen by the inbox: the consumer settles only when
	// the second delivery was acked.
	testenv.WaitFor(t, 20*time.Second, "redelivered and acked", func() bool {
		info, err := b.cons.Info(t.Context())
		return err == nil && info.NumRedelivered == 0 && info.NumAckPending == 0 && info.Delivered.Consumer >= 2
	})
	if got := effects(t, b.pool, e.OrderID); got != 1 {
		t.Fatalf("effects = %d after a redelivery, want 1", got)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("handler ran %d times, want 1 (the second delivery must stop at the inbox)", got)
	}
}

// The same event id published again after the stream's duplicate window is a
// new stream message; only the inbox stops the second effect.
func TestRepublishAfterDuplicateWindowHasOneEffect(t *testing.T) {
	t.Parallel()
	b := setup(t, options{streams: stream.Config{Duplicates: 200 * time.Millisecond}})
	run(t, b, countEffect, consume.Config{})
	e := created(t, "o-replay")
	first := publish(t, b.js, e)
	testenv.WaitFor(t, 10*time.Second, "first copy handled", func() bool { return effects(t, b.pool, e.OrderID) == 1 })

	var second *jetstream.PubAck
	testenv.WaitFor(t, 10*time.Second, "a republish past the duplicate window", func() bool {
		second = publish(t, b.js, e)
		return !second.Duplicate
	})
	if second.Sequence == first.Sequence {
		t.Fatalf("republish got sequence %d again, want a new one", second.Sequence)
	}
	waitSettled(t, b)
	if got := effects(t, b.pool, e.OrderID); got != 1 {
		t.Fatalf("effects = %d, want 1", got)
	}
}

func TestPoisonMessagesGoToDLQAndDoNotBlock(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	run(t, b, countEffect, consume.Config{})

	// Garbage: no headers, not JSON.
	if _, err := b.js.Publish(t.Context(), "order.created.junk", []byte("\x00not json")); err != nil {
		t.Fatal(err)
	}
	// Valid headers, body that breaks the contract (no items).
	bad := created(t, "o-bad")
	bad.Body = []byte(`{"order_id":"o-bad","customer_id":"c1","items":[],"total_cents":0}`)
	// As the relay publishes: with an expected stream, a header that must
	// not follow the message into DLQ.
	if _, err := b.js.PublishMsg(t.Context(), bad.Msg(), jetstream.WithExpectStream(stream.Orders)); err != nil {
		t.Fatal(err)
	}
	good := created(t, "o-good")
	publish(t, b.js, good)

	testenv.WaitFor(t, 10*time.Second, "the valid message handled", func() bool { return effects(t, b.pool, good.OrderID) == 1 })
	testenv.WaitFor(t, 10*time.Second, "two dead letters", func() bool { return len(dlq(t, b.js)) == 2 })
	waitSettled(t, b)

	letters := dlq(t, b.js)
	wantSubjects := map[string]bool{"order.created.junk": true, bad.Subject(): true}
	for _, m := range letters {
		orig := m.Header.Get(consume.HeaderDLQSubject)
		if !wantSubjects[orig] {
			t.Errorf("unexpected dead letter of %q", orig)
		}
		if want := consume.DLQSubject("test", stream.Orders, mustSeq(t, m)); m.Subject != want {
			t.Errorf("dead letter subject %q, want %q", m.Subject, want)
		}
		if m.Header.Get(consume.HeaderDLQError) == "" {
			t.Errorf("dead letter %s has no error header", m.Subject)
		}
		if m.Header.Get(consume.HeaderDLQConsumer) != "test-orders" {
			t.Errorf("dead letter %s consumer = %q", m.Subject, m.Header.Get(consume.HeaderDLQConsumer))
		}
	}
	for _, m := range letters {
		if m.Header.Get(consume.HeaderDLQSubject) == bad.Subject() {
			if m.Header.Get(event.HeaderType) != string(event.OrderCreated) || m.Header.Get(consume.HeaderOriginalMsgID) != bad.ID {
				t.Errorf("dead letter lost the original headers: %v", m.Header)
			}
			if string(m.Data) != string(bad.Body) {
				t.Errorf("dead letter body = %q, want the original", m.Data)
			}
		}
	}
	if got := effects(t, b.pool, bad.OrderID); got != 0 {
		t.Fatalf("poison message had %d effects, want 0", got)
	}
}

// An event's subject names its order's shard: a well-formed event on
// another shard's subject breaks the contract and is dead-lettered without
// effect, while one on the legacy subject <type>.<order id> (history written
// before subjects were sharded) is handled.
func TestSubjectMustNameTheOrdersShard(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	run(t, b, countEffect, consume.Config{})

	wrong := created(t, "o-wrong-shard")
	m := wrong.Msg()
	wrongSubject := "order.created.000"
	if event.Shard(wrong.OrderID) == "000" {
		wrongSubject = "order.created.001"
	}
	m.Subject = wrongSubject
	if _, err := b.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	legacy := created(t, "o-legacy")
	m = legacy.Msg()
	m.Subject = event.LegacySubject(legacy.Type, legacy.OrderID)
	if _, err := b.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	good := created(t, "o-sharded")
	publish(t, b.js, good)

	testenv.WaitFor(t, 10*time.Second, "the valid messages handled", func() bool {
		return effects(t, b.pool, good.OrderID) == 1 && effects(t, b.pool, legacy.OrderID) == 1
	})
	testenv.WaitFor(t, 10*time.Second, "a dead letter", func() bool { return len(dlq(t, b.js)) == 1 })
	waitSettled(t, b)
	letter := dlq(t, b.js)[0]
	if got := letter.Header.Get(consume.HeaderDLQSubject); got != wrongSubject {
		t.Errorf("dead letter of %q, want the wrong shard's message", got)
	}
	if e := letter.Header.Get(consume.HeaderDLQError); !strings.Contains(e, "subject:") {
		t.Errorf("dead letter error %q, want a subject violation", e)
	}
	if got := effects(t, b.pool, wrong.OrderID); got != 0 {
		t.Errorf("the event on the wrong shard had %d effects, want 0", got)
	}
}

func TestTransientFailureIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: 5})
	var calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		if calls.Add(1) <= 2 {
			return errors.New("database hiccup")
		}
		return countEffect(ctx, tx, e)
	}
	run(t, b, h, consume.Config{})
	e := created(t, "o-flaky")
	publish(t, b.js, e)
	testenv.WaitFor(t, 10*time.Second, "handled on the third delivery", func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	waitSettled(t, b)
	if got := calls.Load(); got != 3 {
		t.Fatalf("handler ran %d times, want 3", got)
	}
	if n := len(dlq(t, b.js)); n != 0 {
		t.Fatalf("DLQ holds %d, want 0", n)
	}
}

func TestPermanentFailureIsDeadLettered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		err           error
		wantCalls     int32
		wantDelivered string
	}{
		{name: "transient until MaxDeliver", err: errors.New("always down"), wantCalls: 3, wantDelivered: "3"},
		{name: "marked permanent", err: consume.Permanent(errors.New("cannot ever work")), wantCalls: 1, wantDelivered: "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{maxDeliver: 3})
			var calls atomic.Int32
			run(t, b, func(context.Context, pgx.Tx, event.Event) error { calls.Add(1); return tc.err }, consume.Config{})
			e := created(t, "o-doomed")
			publish(t, b.js, e)
			next := created(t, "o-next")
			testenv.WaitFor(t, 20*time.Second, "dead-lettered", func() bool { return len(dlq(t, b.js)) == 1 })
			letter := dlq(t, b.js)[0]
			if letter.Header.Get(consume.HeaderDLQDeliveries) != tc.wantDelivered {
				t.Fatalf("dead-lettered after %s deliveries, want %s", letter.Header.Get(consume.HeaderDLQDeliveries), tc.wantDelivered)
			}
			if letter.Header.Get(consume.HeaderOriginalMsgID) != e.ID {
				t.Fatalf("dead letter is not the failing event: %v", letter.Header)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Fatalf("handler ran %d times, want %d", got, tc.wantCalls)
			}
			// The consumer goes on with the next message.
			publish(t, b.js, next)
			testenv.WaitFor(t, 20*time.Second, "next message reached the handler", func() bool { return calls.Load() > tc.wantCalls })
		})
	}
}

// While the database cannot be reached, a message is retried past
// MaxDeliver instead of being dead-lettered, and handled once it is back.
func TestDatabaseDownIsNotDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: -1}) // as the services run: JetStream never gives up, the loop does
	pool, down := downablePool(t, b)
	down.Store(true)
	b.pool = pool
	run(t, b, countEffect, consume.Config{MaxDeliver: 2})
	e := created(t, "o-db-down")
	publish(t, b.js, e)
	testenv.WaitFor(t, 20*time.Second, "delivered twice MaxDeliver times", func() bool {
		info, err := b.cons.Info(t.Context())
		return err == nil && info.Delivered.Consumer >= 4
	})
	if n := len(dlq(t, b.js)); n != 0 {
		t.Fatalf("DLQ holds %d while the database was down, want 0", n)
	}
	down.Store(false)
	testenv.WaitFor(t, 20*time.Second, "handled once the database is back", func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	waitSettled(t, b)
	if n := len(dlq(t, b.js)); n != 0 {
		t.Fatalf("DLQ holds %d, want 0", n)
	}
}

// A handler slower than AckWait keeps its message with InProgress: one call.
func TestSlowHandlerKeepsItsMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, options{ackWait: 300 * time.Millisecond})
	var calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		calls.Add(1)
		time.Sleep(time.Second) // the slow work under test, not synchronisation
		return countEffect(ctx, tx, e)
	}
	run(t, b, h, consume.Config{Workers: 2})
	e := created(t, "o-slow")
	publish(t, b.js, e)
	testenv.WaitFor(t, 10*time.Second, "handled", func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	waitSettled(t, b)
	if got := calls.Load(); got != 1 {
		t.Fatalf("handler ran %d times, want 1 (the message was redelivered while in progress)", got)
	}
}

// Cancelling Run while a message is being handled finishes that message.
func TestStopFinishesInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	started := make(chan struct{})
	release := make(chan struct{})
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		close(started)
		<-release
		return countEffect(ctx, tx, e)
	}
	stop := run(t, b, h, consume.Config{})
	e := created(t, "o-inflight")
	publish(t, b.js, e)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never started")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	close(release)
	<-stopped
	if got := effects(t, b.pool, e.OrderID); got != 1 {
		t.Fatalf("effects = %d after stop, want 1", got)
	}
	waitSettled(t, b)
}

// The whole path, outbox → JetStream → inbox, with the NATS server stopped
// and started again on the same store in the middle: nothing lost, nothing
// doubled.
func TestServerRestartLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, options{ackWait: 2 * time.Second})
	relay, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{PollInterval: 100 * time.Millisecond, AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-relayDone })
	run(t, b, countEffect, consume.Config{})

	add := func(prefix string, n int) {
		for i := range n {
			tx, err := b.pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Add(t.Context(), tx, created(t, fmt.Sprintf("%s-%d", prefix, i))); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			relay.Notify()
		}
	}
	add("before", 30)
	testenv.WaitFor(t, 20*time.Second, "some handled before the restart", func() bool {
		var n int
		_ = b.pool.QueryRow(t.Context(), `SELECT count(*) FROM effects`).Scan(&n)
		return n > 0
	})
	b.nats.Stop()
	add("during", 30)
	b.nats.Restart(t)
	add("after", 30)

	testenv.WaitFor(t, 60*time.Second, "all 90 handled", func() bool {
		var n int
		_ = b.pool.QueryRow(t.Context(), `SELECT count(*) FROM effects`).Scan(&n)
		return n == 90
	})
	var doubled int
	_ = b.pool.QueryRow(t.Context(), `SELECT count(*) FROM effects WHERE n <> 1`).Scan(&doubled)
	if doubled != 0 {
		t.Fatalf("%d orders had more than one effect", doubled)
	}
	s, err := b.js.Stream(t.Context(), stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 90 {
		t.Fatalf("ORDERS holds %d messages, want 90 (one per event)", info.State.Msgs)
	}
}

// Messages waiting together are handled in one transaction, a savepoint
// each: one that fails is rolled back alone (its partial write too) and
// retried, while the others commit once.
func TestBatchRollsBackAFailingMessageAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: 5})
	// All waiting before the loop starts: they arrive together.
	events := publishCreated(t, b.js, "o-batch", 20)
	bad := events[7].OrderID
	var badCalls, calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		calls.Add(1)
		if err := countEffect(ctx, tx, e); err != nil {
			return err
		}
		if e.OrderID == bad && badCalls.Add(1) == 1 {
			return errors.New("refused once, after writing")
		}
		return nil
	}
	metrics := consume.NewMetrics(prometheus.NewRegistry())
	run(t, b, h, consume.Config{Batch: 64, Metrics: metrics})
	for _, e := range events {
		testenv.WaitFor(t, 10*time.Second, "effect of "+e.OrderID, func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	}
	waitSettled(t, b)
	for _, e := range events {
		if n := effects(t, b.pool, e.OrderID); n != 1 {
			t.Errorf("%s has %d effects, want 1", e.OrderID, n)
		}
	}
	if got := calls.Load(); got != 21 {
		t.Fatalf("handler ran %d times, want 21 (each once, the failing one twice)", got)
	}
	if got := badCalls.Load(); got != 2 {
		t.Fatalf("failing message handled %d times, want 2", got)
	}
	if n := len(dlq(t, b.js)); n != 0 {
		t.Fatalf("DLQ holds %d, want 0", n)
	}
	if n := batchesOver(t, metrics, 1); n == 0 {
		t.Fatal("no batch held more than one message")
	}
}

// batchesOver counts the batches that held more than n messages.
func batchesOver(t *testing.T, m *consume.Metrics, n int) uint64 {
	t.Helper()
	families := gather(t, m)
	for _, f := range families {
		if f.GetName() != "jetsaga_batch_messages" {
			continue
		}
		var total uint64
		for _, metric := range f.GetMetric() {
			h := metric.GetHistogram()
			var upToN uint64
			for _, bk := range h.GetBucket() {
				if bk.GetUpperBound() <= float64(n) {
					upToN = bk.GetCumulativeCount()
				}
			}
			total += h.GetSampleCount() - upToN
		}
		return total
	}
	return 0
}

// The connection dies under a transaction that was already open (the
// backend is killed mid-handler, and the database stays unreachable a
// while): far more failed deliveries than MaxDeliver, yet nothing is
// dead-lettered, because none of them was the message's fault; once the
// database is back the message is handled once.
func TestConnectionLostMidTransactionIsNotCounted(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: -1})
	pool, down := downablePool(t, b)
	b.pool = pool
	var kills atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		if kills.Load() < 6 {
			kills.Add(1)
			// Other connections of the pool stay unusable too, as in an
			// outage: the next Begin fails until the test lets it.
			down.Store(true)
			_, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
			return err
		}
		return countEffect(ctx, tx, e)
	}
	run(t, b, h, consume.Config{MaxDeliver: 2})
	e := created(t, "o-conn-lost")
	publish(t, b.js, e)
	for k := int32(1); k <= 6; k++ {
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("backend killed %d times", k), func() bool {
			if kills.Load() >= k {
				down.Store(false) // back up: the next delivery gets a connection again
				return true
			}
			return false
		})
	}
	testenv.WaitFor(t, 20*time.Second, "handled once the database is back", func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	waitSettled(t, b)
	if n := len(dlq(t, b.js)); n != 0 {
		t.Fatalf("DLQ holds %d after an outage mid-transaction, want 0", n)
	}
}

// A BatchHandler applies a batch set-based; a batch it refuses is rolled
// back whole and handled message by message, so only the bad message is
// retried; duplicates never reach either handler.
func TestBatchHandlerAndItsFallback(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: 5})
	events := publishCreated(t, b.js, "o-set", 12)
	publish(t, b.js, events[3]) // the same event again, with its id: a duplicate for the inbox
	bad := events[5].OrderID
	var setCalls, setEvents, oneCalls atomic.Int32
	var badFailed atomic.Bool
	batch := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		setCalls.Add(1)
		for _, e := range es {
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
			if e.OrderID == bad && !badFailed.Load() {
				return errors.New("one of these is bad") // after writing: all of it must roll back
			}
		}
		setEvents.Add(int32(len(es)))
		return nil
	}
	one := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		oneCalls.Add(1)
		if err := countEffect(ctx, tx, e); err != nil {
			return err
		}
		if e.OrderID == bad && badFailed.CompareAndSwap(false, true) {
			return errors.New("bad, once")
		}
		return nil
	}
	run(t, b, one, consume.Config{Batch: 64, BatchHandler: batch})
	for _, e := range events {
		testenv.WaitFor(t, 10*time.Second, "effect of "+e.OrderID, func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	}
	waitSettled(t, b)
	for _, e := range events {
		if n := effects(t, b.pool, e.OrderID); n != 1 {
			t.Errorf("%s has %d effects, want 1", e.OrderID, n)
		}
	}
	if setCalls.Load() == 0 {
		t.Fatal("the batch handler never ran")
	}
	if !badFailed.Load() {
		t.Fatal("the bad message never went through the one-by-one path")
	}
	if n := len(dlq(t, b.js)); n != 0 {
		t.Fatalf("DLQ holds %d, want 0", n)
	}

	// Good messages that arrive together go set-based, once each.
	stop := run(t, b, one, consume.Config{Batch: 64, BatchHandler: batch})
	stop() // a fresh loop for the next messages, started after they wait in the stream
	before, beforeOne := setEvents.Load(), oneCalls.Load()
	good := publishCreated(t, b.js, "o-set-good", 10)
	run(t, b, one, consume.Config{Batch: 64, BatchHandler: batch})
	for _, e := range good {
		testenv.WaitFor(t, 10*time.Second, "effect of "+e.OrderID, func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	}
	waitSettled(t, b)
	if got := setEvents.Load() - before; got != 10 {
		t.Fatalf("set-based path applied %d of 10 events", got)
	}
	if got := oneCalls.Load() - beforeOne; got != 0 {
		t.Fatalf("one-by-one path ran %d times for good messages, want 0", got)
	}
}

// Only committed outbox rows are handed to the relay: a message whose
// handler wrote an event and then failed is rolled back to its savepoint,
// and the event it wrote never reaches the stream; the retry's does, once.
func TestHandoffOnlyCommittedRows(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: 5})
	relay, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	inputs := publishCreated(t, b.js, "o-hand", 6)
	bad := inputs[2].OrderID
	var failed atomic.Bool
	var written sync.Map // order id -> the id of the event its committed attempt wrote
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		if e.Type != event.OrderCreated {
			return nil // the consumer sees the events it makes too
		}
		out, err := event.New(event.OrderConfirmed, e.OrderID, e.ID, &event.OrderConfirmedPayload{OrderID: e.OrderID, TotalCents: 100}, time.Now())
		if err != nil {
			return err
		}
		if err := outbox.Add(ctx, tx, out); err != nil {
			return err
		}
		if e.OrderID == bad && failed.CompareAndSwap(false, true) {
			return errors.New("refused after writing its event")
		}
		written.Store(e.OrderID, out.ID)
		return nil
	}
	run(t, b, h, consume.Config{Batch: 64, Handoff: relay.Hand})
	testenv.WaitFor(t, 20*time.Second, "one order.confirmed per order in the stream, outbox empty", func() bool {
		return confirmedInStream(t, b.js) == len(inputs) && countOutbox(t, b.pool) == 0
	})
	waitSettled(t, b)
	s, err := b.js.Stream(t.Context(), stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(event.HeaderType) != string(event.OrderConfirmed) {
			continue
		}
		want, _ := written.Load(m.Header.Get(event.HeaderOrderID))
		if got := m.Header.Get(event.HeaderMsgID); got != want {
			t.Errorf("stream holds %s for %s, want only the committed attempt's %v", got, m.Header.Get(event.HeaderOrderID), want)
		}
	}
	if !failed.Load() {
		t.Fatal("the bad message never failed")
	}
}

func confirmedInStream(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("order.confirmed.>"))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}

func countOutbox(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// downablePool is a second pool on the bundle's schema whose new
// connections fail while down is true: the database as an outage shows it.
func downablePool(t *testing.T, b bundle) (*pgxpool.Pool, *atomic.Bool) {
	t.Helper()
	down := &atomic.Bool{}
	cfg := b.pool.Config()
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if down.Load() {
			return errors.New("connection refused (the test's database is down)")
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, down
}

// The pruner deletes inbox rows handled before the retention, in batches,
// and keeps the younger ones.
func TestInboxPrunerKeepsTheRetention(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	ctx := t.Context()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if _, err := b.pool.Exec(ctx, `
		INSERT INTO inbox (consumer, event_id, event_type, order_id, handled_at)
		SELECT 'c', gen_random_uuid(), 'order.created', 'o-' || i,
		       CASE WHEN i <= 2500 THEN $1::timestamptz - interval '8 days' ELSE $1::timestamptz - interval '6 days' END
		FROM generate_series(1, 3000) AS i`, now); err != nil {
		t.Fatal(err)
	}
	p, err := consume.NewInboxPruner(b.pool, consume.PrunerConfig{
		Retention: 7 * 24 * time.Hour, Batch: 1000, Pause: time.Millisecond, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Prune(ctx)
	if err != nil || n != 2500 {
		t.Fatalf("Prune = %d, %v; want 2500, nil", n, err)
	}
	var left, old int
	if err := b.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE handled_at < $1::timestamptz - interval '7 days') FROM inbox`, now).Scan(&left, &old); err != nil {
		t.Fatal(err)
	}
	if left != 500 || old != 0 {
		t.Fatalf("inbox holds %d rows (%d older than the retention), want the 500 younger ones", left, old)
	}
	if n, err := p.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("a second Prune = %d, %v; want 0, nil", n, err)
	}
}

// Events a BatchHandler hands back as too early (consume.Later) are taken
// out of the batch and retried; the rest is applied set-based at once, and
// the one-by-one path never runs.
func TestBatchHandlerLaterTakesOutOnlyTheEarlyOnes(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: 10})
	var events []event.Event
	for i := range 12 {
		e := created(t, fmt.Sprintf("o-later-%02d", i))
		events = append(events, e)
	}
	early := map[string]bool{events[2].ID: true, events[7].ID: true}
	var ready atomic.Bool // the step the early ones wait for
	var oneCalls atomic.Int32
	var setSizes sync.Map // batch size -> seen
	var mu sync.Mutex
	var rest []int // per batch that held early ones, how many of it were ready
	batch := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		var later consume.Later
		for _, e := range es {
			if early[e.ID] && !ready.Load() {
				later.IDs = append(later.IDs, e.ID)
				later.Err = errors.New("comes before its step")
				continue
			}
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
		}
		if len(later.IDs) > 0 {
			mu.Lock()
			rest = append(rest, len(es)-len(later.IDs))
			mu.Unlock()
			return &later
		}
		setSizes.Store(len(es), true)
		return nil
	}
	one := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		oneCalls.Add(1)
		return countEffect(ctx, tx, e)
	}
	for _, e := range events { // all 12 wait in the stream when the loop starts
		publish(t, b.js, e)
	}
	run(t, b, one, consume.Config{Batch: 64, BatchHandler: batch})
	for _, e := range events {
		if early[e.ID] {
			continue
		}
		testenv.WaitFor(t, 10*time.Second, "effect of "+e.OrderID, func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	}
	for _, e := range events {
		if early[e.ID] && effects(t, b.pool, e.OrderID) != 0 {
			t.Fatalf("early %s applied before its step", e.OrderID)
		}
	}
	ready.Store(true)
	for id := range early {
		for _, e := range events {
			if e.ID == id {
				testenv.WaitFor(t, 10*time.Second, "the early "+e.OrderID+" once its step came", func() bool { return effects(t, b.pool, e.OrderID) == 1 })
			}
		}
	}
	waitSettled(t, b)
	// How the 12 arrive in batches is JetStream's and the scheduler's
	// choice; whatever they were, each batch that held early events was
	// applied again without them, set-based, in one pass.
	mu.Lock()
	defer mu.Unlock()
	for _, n := range rest {
		if _, ok := setSizes.Load(n); n > 0 && !ok {
			var sizes []any
			setSizes.Range(func(k, _ any) bool { sizes = append(sizes, k); return true })
			t.Errorf("no set-based pass of the %d ready events of a batch with early ones (passes of %v)", n, sizes)
		}
	}
	if n := oneCalls.Load(); n != 0 {
		t.Errorf("the one-by-one path ran %d times, want 0", n)
	}
	if n := len(dlq(t, b.js)); n != 0 {
		t.Fatalf("DLQ holds %d, want 0", n)
	}
}

// A batch's handlers run in a transaction that uses generic plans
// (pg.GenericPlans): a statement they run is not planned again for its
// parameters.
func TestBatchTransactionUsesGenericPlans(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	const q = `SELECT count(*) FROM effects WHERE order_id = ANY($1)`
	type plans struct{ generic, custom int64 }
	seen := make(chan plans, 16)
	batch := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		ids := make([]string, len(es))
		for i, e := range es {
			ids[i] = e.OrderID
		}
		var n int
		if err := tx.QueryRow(ctx, q, ids).Scan(&n); err != nil {
			return err
		}
		var p plans
		if err := tx.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`, q).
			Scan(&p.generic, &p.custom); err != nil {
			return err
		}
		seen <- p
		for _, e := range es {
			if err := countEffect(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	run(t, b, countEffect, consume.Config{BatchHandler: batch})
	e := created(t, "o-generic")
	publish(t, b.js, e)
	testenv.WaitFor(t, 10*time.Second, "effect of "+e.OrderID, func() bool { return effects(t, b.pool, e.OrderID) == 1 })
	p := <-seen
	if p.generic < 1 || p.custom != 0 {
		t.Fatalf("the handler's statement ran %d generic and %d custom plans on its connection; want generic only", p.generic, p.custom)
	}
}

// In a set-based batch the handlers' outbox inserts go with the commit
// (outbox.Defer). One that fails there (an event id the outbox holds
// already) refuses the batch as a failing handler would: the messages are
// handled one by one, the good ones commit with their events, and the bad
// one fails alone until it is dead-lettered, its effect never committed.
func TestBatchWhoseOutboxInsertFailsFallsBackOneByOne(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: 2})
	ctx := t.Context()
	taken := created(t, "o-taken")
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Add(ctx, tx, taken); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// All waiting before the loop starts: they arrive together.
	events := publishCreated(t, b.js, "o-deferred", 10)
	bad := events[4].OrderID
	h := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		if e.Type != event.OrderCreated {
			return nil
		}
		if err := countEffect(ctx, tx, e); err != nil {
			return err
		}
		out, err := event.New(event.OrderConfirmed, e.OrderID, e.ID, &event.OrderConfirmedPayload{OrderID: e.OrderID, TotalCents: 100}, time.Now())
		if err != nil {
			return err
		}
		if e.OrderID == bad {
			out.ID = taken.ID
		}
		return outbox.Add(ctx, tx, out)
	}
	set := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		for _, e := range es {
			if err := h(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	metrics := consume.NewMetrics(prometheus.NewRegistry())
	run(t, b, h, consume.Config{Batch: 64, BatchHandler: set, Metrics: metrics})
	testenv.WaitFor(t, 20*time.Second, "the bad message dead-lettered", func() bool { return len(dlq(t, b.js)) == 1 })
	waitSettled(t, b)
	for _, e := range events {
		want := 1
		if e.OrderID == bad {
			want = 0
		}
		if n := effects(t, b.pool, e.OrderID); n != want {
			t.Errorf("%s has %d effects, want %d", e.OrderID, n, want)
		}
	}
	// Every good message committed on its first delivery: the only retry
	// is the bad one's, before it was dead-lettered.
	if n := outcomes(t, metrics, "retried"); n != 1 {
		t.Errorf("%v deliveries retried, want 1 (the bad message's first)", n)
	}
	if n := countOutbox(t, b.pool); n != len(events) {
		t.Errorf("outbox holds %d rows, want %d: the taken one and one per good message", n, len(events))
	}
	if n := batchesOver(t, metrics, 1); n == 0 {
		t.Fatal("no batch held more than one message: the set-based pass never ran")
	}
}

// outcomes sums jetsaga_messages_total over the messages of outcome.
func outcomes(t *testing.T, m *consume.Metrics, outcome string) float64 {
	t.Helper()
	families := gather(t, m)
	var n float64
	for _, f := range families {
		if f.GetName() != "jetsaga_messages_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					n += metric.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// gather collects m's metric families.
func gather(t *testing.T, m *consume.Metrics) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}
