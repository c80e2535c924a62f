package outbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var stateMigrations = fstest.MapFS{
	"001_state.up.sql": {Data: []byte(`CREATE TABLE state (order_id text PRIMARY KEY, note text NOT NULL);`)},
}

type bundle struct {
	nats *testenv.NATS
	js   jetstream.JetStream
	pool *pgxpool.Pool
}

func setup(t *testing.T) bundle {
	t.Helper()
	ctx := t.Context()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	pool := testenv.Pool(t, "svc", stateMigrations)
	return bundle{nats: n, js: js, pool: pool}
}

func created(t *testing.T, orderID string) event.Event {
	t.Helper()
	e, err := event.New(event.OrderCreated, orderID, "", &event.OrderCreatedPayload{
		OrderID: orderID, CustomerID: "c1",
		Items:      []event.Item{{SKU: "sku-1", Qty: 2, UnitPriceCents: 150}},
		TotalCents: 300,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// write commits (or rolls back) a state row and its event in one transaction.
func write(t *testing.T, pool *pgxpool.Pool, e event.Event, commit bool) {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO state (order_id, note) VALUES ($1, 'created')`, e.OrderID); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Add(ctx, tx, e); err != nil {
		t.Fatal(err)
	}
	if commit {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCommitPublishesStateAndEventTogether(t *testing.T) {
	t.Parallel()
	b := setup(t)
	relay, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}

	committed := created(t, "o-commit")
	write(t, b.pool, committed, true)
	rolledBack := created(t, "o-rollback")
	write(t, b.pool, rolledBack, false)

	n, err := relay.Flush(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("published %d events, want 1", n)
	}
	if got := count(t, b.pool, `SELECT count(*) FROM state`); got != 1 {
		t.Fatalf("state rows = %d, want 1 (the rolled-back one must not exist)", got)
	}
	if got := count(t, b.pool, `SELECT count(*) FROM outbox`); got != 0 {
		t.Fatalf("outbox rows after flush = %d, want 0", got)
	}
	if got := streamMsgs(t, b.js, stream.Orders); got != 1 {
		t.Fatalf("ORDERS holds %d messages, want 1", got)
	}

	s, _ := b.js.Stream(t.Context(), stream.Orders)
	raw, err := s.GetLastMsgForSubject(t.Context(), committed.Subject())
	if err != nil {
		t.Fatalf("committed event not in stream: %v", err)
	}
	got, err := event.FromMsg(raw.Subject, raw.Header, raw.Data)
	if err != nil {
		t.Fatalf("published message breaks the contract: %v", err)
	}
	if got.ID != committed.ID || got.Type != committed.Type || got.OrderID != committed.OrderID {
		t.Fatalf("published %+v, want the committed event %+v", got, committed)
	}
	if raw.Header.Get(event.HeaderMsgID) != committed.ID {
		t.Fatalf("Nats-Msg-Id = %q, want event id %q", raw.Header.Get(event.HeaderMsgID), committed.ID)
	}
	if _, err := s.GetLastMsgForSubject(t.Context(), rolledBack.Subject()); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("rolled-back event: got %v, want ErrMsgNotFound", err)
	}
}

// The process dies after JetStream acked the publish and before the rows
// were deleted: the next relay publishes again and the stream keeps one copy.
func TestRelayCrashBetweenAckAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := created(t, "o-crash")
	write(t, b.pool, e, true)

	crashed := errors.New("crash")
	dying, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{
		BeforeDelete: func(context.Context, []event.Event) error { return crashed },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dying.Flush(t.Context()); !errors.Is(err, crashed) {
		t.Fatalf("flush: %v, want the injected crash", err)
	}
	if got := streamMsgs(t, b.js, stream.Orders); got != 1 {
		t.Fatalf("after the crash ORDERS holds %d, want 1", got)
	}
	if got := count(t, b.pool, `SELECT count(*) FROM outbox`); got != 1 {
		t.Fatalf("after the crash outbox holds %d rows, want 1", got)
	}

	var acks []*jetstream.PubAck
	restarted, err := outbox.NewRelay(b.pool, ackRecorder{b.js, &acks, &sync.Mutex{}}, outbox.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := restarted.Flush(t.Context()); err != nil || n != 1 {
		t.Fatalf("flush after restart = %d, %v; want 1, nil", n, err)
	}
	if len(acks) != 1 || !acks[0].Duplicate {
		t.Fatalf("republish ack = %+v, want one duplicate ack", acks)
	}
	if got := streamMsgs(t, b.js, stream.Orders); got != 1 {
		t.Fatalf("after republish ORDERS holds %d, want 1", got)
	}
	if got := count(t, b.pool, `SELECT count(*) FROM outbox`); got != 0 {
		t.Fatalf("outbox rows = %d, want 0", got)
	}
}

// ackRecorder publishes through the real JetStream and keeps every ack.
type ackRecorder struct {
	js   jetstream.JetStream
	acks *[]*jetstream.PubAck
	mu   *sync.Mutex
}

func (r ackRecorder) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := r.js.PublishMsgAsync(m, opts...)
	if err != nil {
		return nil, err
	}
	return recordedFuture{f, r}, nil
}

type recordedFuture struct {
	jetstream.PubAckFuture
	r ackRecorder
}

func (f recordedFuture) Ok() <-chan *jetstream.PubAck {
	out := make(chan *jetstream.PubAck, 1)
	go func() {
		select {
		case a := <-f.PubAckFuture.Ok():
			f.r.mu.Lock()
			*f.r.acks = append(*f.r.acks, a)
			f.r.mu.Unlock()
			out <- a
		case <-time.After(10 * time.Second):
		}
	}()
	return out
}

// Several relays on one schema: every event is published exactly once (not
// merely stored once thanks to dedup) and the outbox ends empty.
func TestConcurrentRelaysPublishEachRowOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const events = 600
	ctx := t.Context()
	for i := range events / 100 {
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 100 {
			if err := outbox.Add(ctx, tx, created(t, "o-"+itoa(i*100+j))); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	counting := countingPublisher{js: b.js, mu: &mu, seen: seen}
	var wg sync.WaitGroup
	for range 4 {
		r, err := outbox.NewRelay(b.pool, counting, outbox.RelayConfig{Batch: 25})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if _, err := r.Flush(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	if len(seen) != events {
		t.Fatalf("published %d distinct events, want %d", len(seen), events)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s published %d times by concurrent relays, want 1", id, n)
		}
	}
	if got := streamMsgs(t, b.js, stream.Orders); got != events {
		t.Fatalf("ORDERS holds %d, want %d", got, events)
	}
	if got := count(t, b.pool, `SELECT count(*) FROM outbox`); got != 0 {
		t.Fatalf("outbox rows = %d, want 0", got)
	}
}

type countingPublisher struct {
	js   jetstream.JetStream
	mu   *sync.Mutex
	seen map[string]int
}

func (c countingPublisher) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	c.mu.Lock()
	c.seen[m.Header.Get(event.HeaderMsgID)]++
	c.mu.Unlock()
	return c.js.PublishMsgAsync(m, opts...)
}

func itoa(i int) string {
	return string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26))
}

// Run wakes on Notify (no poll in sight: the poll interval is an hour) and
// also picks up rows nobody notified it about through its poll.
func TestRelayWakesOnNotifyAndPolls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		poll   time.Duration
		notify bool
	}{
		{name: "notify", poll: time.Hour, notify: true},
		{name: "poll", poll: 50 * time.Millisecond, notify: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			r, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{PollInterval: tc.poll})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			// Twice: the second commit comes while Run waits, past its
			// first round.
			for i, id := range []string{"o-wake-1", "o-wake-2"} {
				write(t, b.pool, created(t, id), true)
				if tc.notify {
					r.Notify()
				}
				testenv.WaitFor(t, 5*time.Second, "event published", func() bool {
					return streamMsgs(t, b.js, stream.Orders) == uint64(i+1)
				})
			}
			testenv.WaitFor(t, 5*time.Second, "outbox emptied", func() bool {
				return count(t, b.pool, `SELECT count(*) FROM outbox`) == 0
			})
		})
	}
}

// NATS is down while events are committed: the relay keeps them and publishes
// once the server is back on the same store; nothing is lost or doubled.
func TestRelaySurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{PollInterval: 50 * time.Millisecond, AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for i := range 10 {
		write(t, b.pool, created(t, "before-"+itoa(i)), true)
	}
	r.Notify()
	testenv.WaitFor(t, 10*time.Second, "first ten published", func() bool { return streamMsgs(t, b.js, stream.Orders) == 10 })

	b.nats.Stop()
	for i := range 10 {
		write(t, b.pool, created(t, "during-"+itoa(i)), true)
	}
	r.Notify()
	b.nats.Restart(t)

	testenv.WaitFor(t, 30*time.Second, "all twenty published after the restart", func() bool {
		return count(t, b.pool, `SELECT count(*) FROM outbox`) == 0
	})
	if got := streamMsgs(t, b.js, stream.Orders); got != 20 {
		t.Fatalf("ORDERS holds %d, want 20", got)
	}
}

// Add with several events writes them in one statement, in the given order,
// and the relay publishes each as written.
func TestAddSeveralKeepsTheirOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	var events []event.Event
	for i := range 5 {
		events = append(events, created(t, "o-several-"+itoa(i)))
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Add(ctx, tx, events...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := b.pool.Query(ctx, `SELECT event_id::text FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if i >= len(ids) || ids[i] != e.ID {
			t.Fatalf("outbox holds %v, want the events' ids in order", ids)
		}
	}
	relay, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := relay.Flush(ctx); err != nil || n != len(events) {
		t.Fatalf("Flush = %d, %v; want %d, nil", n, err, len(events))
	}
	s, err := b.js.Stream(ctx, stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(event.HeaderMsgID); got != e.ID || string(m.Data) != string(e.Body) {
			t.Fatalf("stream message %d is %s %q, want %s %q", i+1, got, m.Data, e.ID, e.Body)
		}
	}
}

// Rows handed to a running relay are published at once, without a round
// reading them back (the relay polls once an hour and is never notified),
// and deleted once acked.
func TestHandPublishesWithoutARound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	r, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var events []event.Event
	for i := range 3 {
		events = append(events, created(t, "o-hand-"+itoa(i)))
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cctx, col := outbox.Collect(ctx)
	if err := outbox.Add(cctx, tx, events...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows := col.Rows()
	if len(rows) != len(events) {
		t.Fatalf("collected %d rows, want %d", len(rows), len(events))
	}
	for i, row := range rows {
		if row.Event.ID != events[i].ID || row.Seq == 0 {
			t.Fatalf("row %d = seq %d %s, want the event %s with its seq", i, row.Seq, row.Event.ID, events[i].ID)
		}
	}
	r.Hand(rows)
	testenv.WaitFor(t, 10*time.Second, "handed events published and their rows deleted", func() bool {
		return streamMsgs(t, b.js, stream.Orders) == uint64(len(events)) && count(t, b.pool, `SELECT count(*) FROM outbox`) == 0
	})
}

// gatedPublisher publishes through JetStream but holds every ack back until
// open is closed, as a slow stream would.
type gatedPublisher struct {
	js    jetstream.JetStream
	open  chan struct{}
	calls *atomic.Int32
}

func (g gatedPublisher) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	g.calls.Add(1)
	f, err := g.js.PublishMsgAsync(m, opts...)
	if err != nil {
		return nil, err
	}
	return gatedFuture{f, g.open}, nil
}

type gatedFuture struct {
	jetstream.PubAckFuture
	open chan struct{}
}

func (f gatedFuture) Ok() <-chan *jetstream.PubAck {
	out := make(chan *jetstream.PubAck, 1)
	go func() {
		<-f.open
		select {
		case a := <-f.PubAckFuture.Ok():
			out <- a
		case <-time.After(10 * time.Second):
		}
	}()
	return out
}

// handRows commits n events, each in a transaction of its own, and hands
// each one's row to r.
func handRows(t *testing.T, b bundle, r *outbox.Relay, prefix string, n int) {
	t.Helper()
	ctx := t.Context()
	for i := range n {
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cctx, col := outbox.Collect(ctx)
		if err := outbox.Add(cctx, tx, created(t, prefix+itoa(i))); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		r.Hand(col.Rows())
	}
}

// Rows handed while every publisher waits for its acks gather, and the
// publisher that comes free takes them all in one batch; past Batch×Window
// rows waiting, Hand takes no more, and the relay reads those back in a
// round. Every event is published once and every row deleted.
func TestHandGathersRowsWhileAPublisherWaits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	open := make(chan struct{})
	var calls atomic.Int32
	var mu sync.Mutex
	var groups []int
	r, err := outbox.NewRelay(b.pool, gatedPublisher{b.js, open, &calls}, outbox.RelayConfig{
		Batch: 4, Window: 1, PollInterval: time.Hour,
		OnPublished: func(es []event.Event) { mu.Lock(); groups = append(groups, len(es)); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	handRows(t, b, r, "o-first-", 1)
	testenv.WaitFor(t, 10*time.Second, "the first row sent", func() bool { return calls.Load() == 1 })
	// The one publisher waits for its ack: these four gather (Batch×Window
	// = 4 may wait), and the fifth is left to a round.
	handRows(t, b, r, "o-gathered-", 4)
	handRows(t, b, r, "o-over-", 1)
	if got := calls.Load(); got != 1 {
		t.Fatalf("%d publishes while the first waits for its ack, want 1", got)
	}
	close(open)
	testenv.WaitFor(t, 10*time.Second, "every event published and every row deleted", func() bool {
		return streamMsgs(t, b.js, stream.Orders) == 6 && count(t, b.pool, `SELECT count(*) FROM outbox`) == 0
	})
	if got := calls.Load(); got != 6 {
		t.Errorf("%d publishes, want 6 (each event once)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(groups) != 3 || groups[0] != 1 || groups[1] != 4 || groups[2] != 1 {
		t.Errorf("published in groups %v, want [1 4 1]: the first, the four gathered, the one read back", groups)
	}
}

// Under Defer, Add writes nothing until Commit, which inserts the events
// (in Add's order) with the commit and hands their rows to the Collector
// as Add would; a deferred insert that fails (an event id the outbox has)
// commits nothing, and says so with ErrDeferred.
func TestDeferredAddGoesWithTheCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	begin := func(orderID string) pgx.Tx {
		t.Helper()
		q := &pgx.Batch{}
		q.Queue(`INSERT INTO state (order_id, note) VALUES ($1, 'deferred')`, orderID)
		return beginWith(t, b.pool, q)
	}
	first, second := created(t, "o-deferred-1"), created(t, "o-deferred-2")

	cctx, col := outbox.Collect(ctx)
	dctx, d := outbox.Defer(cctx)
	tx := begin(first.OrderID)
	if err := outbox.Add(dctx, tx, first); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Add(dctx, tx, second); err != nil {
		t.Fatal(err)
	}
	var inTx int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&inTx); err != nil || inTx != 0 {
		t.Fatalf("outbox rows before the commit = %d, %v; want 0: Add under Defer inserts nothing", inTx, err)
	}
	if len(col.Rows()) != 0 {
		t.Fatalf("rows collected before the commit: %v", col.Rows())
	}
	if err := outbox.Commit(dctx, tx, d); err != nil {
		t.Fatal(err)
	}
	rows, err := b.pool.Query(ctx, `SELECT seq, event_id::text FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Seq int64
		ID  string
	}])
	if err != nil {
		t.Fatal(err)
	}
	got := col.Rows()
	if len(stored) != 2 || len(got) != 2 || stored[0].ID != first.ID || stored[1].ID != second.ID {
		t.Fatalf("outbox holds %v, collected %d rows; want the two events in Add's order", stored, len(got))
	}
	for i, row := range got {
		if row.Seq != stored[i].Seq || row.Event.ID != stored[i].ID {
			t.Fatalf("collected row %d = seq %d %s, want seq %d %s", i, row.Seq, row.Event.ID, stored[i].Seq, stored[i].ID)
		}
	}
	if n := count(t, b.pool, `SELECT count(*) FROM state WHERE order_id = $1`, first.OrderID); n != 1 {
		t.Fatalf("%d state rows, want the transaction's one", n)
	}

	dctx, d = outbox.Defer(ctx)
	tx = begin("o-deferred-again")
	if err := outbox.Add(dctx, tx, first); err != nil {
		t.Fatal(err)
	}
	commitRefused(t, dctx, tx, d, "an event id the outbox has")
	if n := count(t, b.pool, `SELECT count(*) FROM state WHERE order_id = 'o-deferred-again'`); n != 0 {
		t.Fatal("the state of a transaction whose deferred events failed was committed")
	}
	if n := count(t, b.pool, `SELECT count(*) FROM outbox`); n != 2 {
		t.Fatalf("%d outbox rows, want 2", n)
	}
}

// beginWith begins a transaction on pool with b's statements in the round
// trip of its BEGIN (pg.BeginWith), rolled back at the test's end if still
// open.
func beginWith(t *testing.T, pool *pgxpool.Pool, b *pgx.Batch) pgx.Tx {
	t.Helper()
	tx, br, err := pg.BeginWith(t.Context(), pool, b)
	if err != nil {
		t.Fatal(err)
	}
	// A test that fails while tx is open gives its connection back, so
	// that closing the pool does not wait for it (after a commit or a
	// rollback this finds nothing to do).
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	return tx
}

// commitRefused commits tx with what d deferred, which must fail with
// ErrDeferred (what says what was deferred), and rolls tx back.
func commitRefused(t *testing.T, ctx context.Context, tx pgx.Tx, d *outbox.Deferred, what string) {
	t.Helper()
	if err := outbox.Commit(ctx, tx, d); !errors.Is(err, outbox.ErrDeferred) {
		t.Fatalf("Commit of %s = %v, want ErrDeferred", what, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}

// Under Defer, pg.ExecOrHold keeps a handler's last writes for Commit,
// which runs them before the outbox insert and the COMMIT: none is visible
// before, all are after; a held statement that fails commits nothing and
// says so with ErrDeferred. Without Defer, ExecOrHold runs them at once.
func TestHeldWritesGoWithTheCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	hold := func(ctx context.Context, tx pgx.Tx, orderIDs ...string) {
		t.Helper()
		w := &pgx.Batch{}
		for _, id := range orderIDs {
			w.Queue(`INSERT INTO state (order_id, note) VALUES ($1, 'held')`, id)
		}
		if err := pg.ExecOrHold(ctx, tx, w); err != nil {
			t.Fatal(err)
		}
	}
	inTx := func(tx pgx.Tx) int {
		t.Helper()
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM state`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	begin := func() pgx.Tx { return beginWith(t, b.pool, &pgx.Batch{}) }

	ev := created(t, "o-held-1")
	dctx, d := outbox.Defer(ctx)
	tx := begin()
	hold(dctx, tx, "o-held-1", "o-held-2")
	if err := outbox.Add(dctx, tx, ev); err != nil {
		t.Fatal(err)
	}
	if n := inTx(tx); n != 0 {
		t.Fatalf("%d state rows in the transaction before the commit; want 0: held writes wait for it", n)
	}
	if err := outbox.Commit(dctx, tx, d); err != nil {
		t.Fatal(err)
	}
	if n := count(t, b.pool, `SELECT count(*) FROM state WHERE note = 'held'`); n != 2 {
		t.Fatalf("%d state rows after the commit, want the 2 held", n)
	}
	if n := count(t, b.pool, `SELECT count(*) FROM outbox WHERE event_id = $1`, ev.ID); n != 1 {
		t.Fatalf("%d outbox rows of the deferred event, want 1", n)
	}

	// Held writes alone (no event) commit too.
	dctx, d = outbox.Defer(ctx)
	tx = begin()
	hold(dctx, tx, "o-held-3")
	if err := outbox.Commit(dctx, tx, d); err != nil {
		t.Fatal(err)
	}
	if n := count(t, b.pool, `SELECT count(*) FROM state WHERE order_id = 'o-held-3'`); n != 1 {
		t.Fatalf("%d rows of o-held-3 after a commit of held writes alone, want 1", n)
	}

	// A held write that fails (a key the table has) commits nothing, not
	// even the held writes before it.
	dctx, d = outbox.Defer(ctx)
	tx = begin()
	hold(dctx, tx, "o-held-4", "o-held-1")
	commitRefused(t, dctx, tx, d, "a failing held write")
	if n := count(t, b.pool, `SELECT count(*) FROM state WHERE order_id = 'o-held-4'`); n != 0 {
		t.Fatal("a held write before a failing one was committed")
	}

	// Without Defer the writes run at once.
	tx = begin()
	hold(ctx, tx, "o-held-5")
	if n := inTx(tx); n != 4 {
		t.Fatalf("%d state rows in a transaction that wrote without Defer, want 4 (3 committed, 1 its own)", n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}

// The rows of handed events the stream acked wait for the deleter (here
// longer than the test) and no round publishes them again meanwhile; the
// relay deletes them when it stops.
func TestAckedRowsWaitForTheDeleterAndAreNotPublishedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	open := make(chan struct{})
	close(open)
	var calls atomic.Int32
	r, err := outbox.NewRelay(b.pool, gatedPublisher{b.js, open, &calls}, outbox.RelayConfig{
		PollInterval: time.Hour, DeleteEvery: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() { cancel() })

	handRows(t, b, r, "o-acked-", 3)
	testenv.WaitFor(t, 10*time.Second, "the handed events published", func() bool {
		return streamMsgs(t, b.js, stream.Orders) == 3
	})
	if n := count(t, b.pool, `SELECT count(*) FROM outbox`); n != 3 {
		t.Fatalf("%d outbox rows, want the 3 acked ones waiting for the deleter", n)
	}
	if n, err := r.Flush(t.Context()); err != nil || n != 0 {
		t.Fatalf("Flush = %d, %v; want 0, nil: acked rows are not published again", n, err)
	}
	if got := calls.Load(); got != 3 {
		t.Fatalf("%d publishes, want 3", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(t, b.pool, `SELECT count(*) FROM outbox`); n != 0 {
		t.Fatalf("%d outbox rows after the relay stopped, want 0", n)
	}
	if got := calls.Load(); got != 3 {
		t.Fatalf("%d publishes after the relay stopped, want 3", got)
	}
}
