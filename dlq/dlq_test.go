package dlq_test

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
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/dlq"
	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// effects counts each consumer's effects per order: only the inbox keeps a
// replayed event at one.
var effectsMigrations = fstest.MapFS{
	"001_effects.up.sql": {Data: []byte(`CREATE TABLE effects (consumer text, order_id text, n int NOT NULL, PRIMARY KEY (consumer, order_id));`)},
}

const (
	service   = "test"
	consumerA = "test-a" // fails until fixed
	consumerB = "test-b" // never fails
)

type bundle struct {
	js    jetstream.JetStream
	pool  *pgxpool.Pool
	fixed atomic.Bool
}

func effect(consumer string) consume.Handler {
	return func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO effects (consumer, order_id, n) VALUES ($1, $2, 1)
			ON CONFLICT (consumer, order_id) DO UPDATE SET n = effects.n + 1`, consumer, e.OrderID)
		return err
	}
}

// setup runs a service of two consumers of ORDERS, test-a (whose handler
// fails until b.fixed) and test-b, and its replay consumer, as
// internal/service wires them.
func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := t.Context()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	b := &bundle{js: js, pool: testenv.Pool(t, "svc", effectsMigrations)}
	handleA := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		if !b.fixed.Load() {
			return errors.New("card gateway misconfigured")
		}
		return effect(consumerA)(ctx, tx, e)
	}
	cfg := consume.Config{
		Service: service, MaxDeliver: 2, FetchWait: 500 * time.Millisecond,
		RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	}
	var loops []*consume.Loop
	for durable, h := range map[string]consume.Handler{consumerA: handleA, consumerB: effect(consumerB)} {
		cons, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{
			Stream: stream.Orders, Durable: durable, FilterSubjects: []string{"order.>"}, MaxDeliver: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		l, err := consume.New(ctx, b.pool, js, cons, h, cfg)
		if err != nil {
			t.Fatal(err)
		}
		loops = append(loops, l)
	}
	cons, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{
		Stream: stream.Replay, Durable: consume.ReplayDurable(service),
		FilterSubjects: []string{consume.ReplayFilter(service)}, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := consume.NewReplay(ctx, b.pool, js, cons,
		map[string]consume.Route{consumerA: {Handle: handleA}, consumerB: {Handle: effect(consumerB)}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	loops = append(loops, rl)
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(func() { _ = l.Run(runCtx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return b
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

func (b *bundle) effects(t *testing.T, consumer, orderID string) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(context.Background(), `SELECT n FROM effects WHERE consumer = $1 AND order_id = $2`, consumer, orderID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *bundle) msgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := b.js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (b *bundle) list(t *testing.T, service string) []dlq.Entry {
	t.Helper()
	es, err := dlq.List(t.Context(), b.js, service)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func (b *bundle) replay(t *testing.T, seqs []uint64, opt dlq.Options) []dlq.Outcome {
	t.Helper()
	var outs []dlq.Outcome
	if err := dlq.Replay(t.Context(), b.js, seqs, opt, func(o dlq.Outcome) { outs = append(outs, o) }); err != nil {
		t.Fatal(err)
	}
	return outs
}

// waitDeadLetters waits until DLQ holds n dead letters.
func (b *bundle) waitDeadLetters(t *testing.T, n int) []dlq.Entry {
	t.Helper()
	var es []dlq.Entry
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%d dead letters", n), func() bool {
		es = b.list(t, "")
		return len(es) == n
	})
	return es
}

// A handler fails until it is fixed: its message is dead-lettered, the
// other consumer of the subject applies it. After the fix, the replay
// reaches the failing consumer only, once, keeps the event id, never
// touches ORDERS, deletes the dead letter and its dead_letters row; a
// second replay finds nothing.
func TestReplayReachesOnlyTheConsumerThatDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := created(t, "o-1")
	if _, err := b.js.PublishMsg(t.Context(), e.Msg()); err != nil {
		t.Fatal(err)
	}
	es := b.waitDeadLetters(t, 1)
	got := es[0]
	if got.Service != service || got.Consumer != consumerA || got.Stream != stream.Orders || got.StreamSeq != 1 ||
		got.EventID != e.ID || got.EventType != string(event.OrderCreated) || got.OrderID != "o-1" ||
		got.Subject != e.Subject() || got.Deliveries != 2 || !strings.Contains(got.Error, "card gateway misconfigured") {
		t.Fatalf("entry = %+v", got)
	}
	testenv.WaitFor(t, 20*time.Second, "test-b applied the event", func() bool { return b.effects(t, consumerB, "o-1") == 1 })
	if n := b.count(t, `SELECT count(*) FROM dead_letters WHERE consumer = $1`, consumerA); n != 1 {
		t.Fatalf("dead_letters holds %d rows for %s, want 1", n, consumerA)
	}

	// A dry run and another service's filter change nothing.
	outs := b.replay(t, nil, dlq.Options{DryRun: true})
	if len(outs) != 1 || !outs[0].Replayed || outs[0].To != consume.ReplaySubject(service, consumerA, got.Seq) {
		t.Fatalf("dry run = %+v", outs)
	}
	if outs := b.replay(t, nil, dlq.Options{Service: "other"}); len(outs) != 0 {
		t.Fatalf("--service other replayed %+v", outs)
	}
	if outs := b.replay(t, []uint64{got.Seq}, dlq.Options{Service: "other"}); len(outs) != 1 || outs[0].Skipped == nil {
		t.Fatalf("#%d with --service other = %+v, want skipped", got.Seq, outs)
	}
	if len(b.list(t, "")) != 1 || b.msgs(t, stream.Replay) != 0 {
		t.Fatal("a dry run or a filtered replay changed DLQ or REPLAY")
	}

	b.fixed.Store(true)
	outs = b.replay(t, nil, dlq.Options{})
	if len(outs) != 1 || !outs[0].Replayed || outs[0].Skipped != nil {
		t.Fatalf("replay = %+v", outs)
	}
	testenv.WaitFor(t, 20*time.Second, "test-a applied the replay", func() bool { return b.effects(t, consumerA, "o-1") == 1 })
	testenv.WaitFor(t, 20*time.Second, "REPLAY emptied by the ack", func() bool { return b.msgs(t, stream.Replay) == 0 })
	if n := b.effects(t, consumerB, "o-1"); n != 1 {
		t.Errorf("test-b applied the event %d times, want 1 (the replay is not for it)", n)
	}
	if n := b.count(t, `SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2`, consumerA, e.ID); n != 1 {
		t.Errorf("inbox holds (%s, %s) %d times, want 1: the replay keeps the event id", consumerA, e.ID, n)
	}
	if n := b.count(t, `SELECT count(*) FROM dead_letters`); n != 0 {
		t.Errorf("dead_letters holds %d rows after the replay, want 0", n)
	}
	if n := b.msgs(t, stream.Orders); n != 1 {
		t.Errorf("ORDERS holds %d messages, want 1: a replay never goes back to the event stream", n)
	}
	if es := b.list(t, ""); len(es) != 0 {
		t.Errorf("DLQ holds %+v after the replay", es)
	}
	if outs := b.replay(t, nil, dlq.Options{}); len(outs) != 0 {
		t.Errorf("a second replay --all did %+v, want nothing", outs)
	}
	if outs := b.replay(t, []uint64{got.Seq}, dlq.Options{}); len(outs) != 1 || !errors.Is(outs[0].Skipped, dlq.ErrNotFound) {
		t.Errorf("replaying #%d again = %+v, want not found", got.Seq, outs)
	}
}

// A replay that fails again is dead-lettered again, as the original
// message: same consumer, stream and sequence, a new DLQ entry and id, and
// the dead_letters row points at it. Once fixed, that one replays.
func TestReplayThatFailsAgainIsDeadLetteredAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := created(t, "o-2")
	if _, err := b.js.PublishMsg(t.Context(), e.Msg()); err != nil {
		t.Fatal(err)
	}
	first := b.waitDeadLetters(t, 1)[0]
	if outs := b.replay(t, nil, dlq.Options{}); len(outs) != 1 || !outs[0].Replayed {
		t.Fatalf("replay = %+v", outs)
	}
	var again dlq.Entry
	testenv.WaitFor(t, 20*time.Second, "the replay dead-lettered again", func() bool {
		es := b.list(t, "")
		if len(es) == 1 && es[0].Seq != first.Seq {
			again = es[0]
			return true
		}
		return false
	})
	if again.Consumer != consumerA || again.Stream != stream.Orders || again.StreamSeq != first.StreamSeq ||
		again.Subject != e.Subject() || again.EventID != e.ID || again.Service != service || again.Replayable() != nil {
		t.Fatalf("dead letter of the replay = %+v, want the original's identity", again)
	}
	m, err := dlq.Get(t.Context(), b.js, again.Seq)
	if err != nil {
		t.Fatal(err)
	}
	var msgID string
	if err := b.pool.QueryRow(t.Context(), `SELECT dlq_msg_id FROM dead_letters WHERE consumer = $1`, consumerA).Scan(&msgID); err != nil {
		t.Fatal(err)
	}
	if msgID != m.Header.Get(event.HeaderMsgID) || msgID == consume.DLQMsgID(consumerA, stream.Orders, first.StreamSeq) {
		t.Errorf("dead_letters.dlq_msg_id = %q, DLQ #%d has %q: want the new dead letter's own id", msgID, again.Seq, m.Header.Get(event.HeaderMsgID))
	}
	for k := range m.Header {
		if strings.HasPrefix(k, "Jetsaga-Replay-") {
			t.Errorf("dead letter of a replay carries %s", k)
		}
	}

	b.fixed.Store(true)
	if outs := b.replay(t, []uint64{again.Seq}, dlq.Options{}); len(outs) != 1 || !outs[0].Replayed {
		t.Fatalf("replay = %+v", outs)
	}
	testenv.WaitFor(t, 20*time.Second, "test-a applied the replay", func() bool { return b.effects(t, consumerA, "o-2") == 1 })
	testenv.WaitFor(t, 20*time.Second, "dead_letters emptied", func() bool { return b.count(t, `SELECT count(*) FROM dead_letters`) == 0 })
	if n := b.effects(t, consumerB, "o-2"); n != 1 {
		t.Errorf("test-b applied the event %d times, want 1", n)
	}
}

// deadLetter publishes a dead letter of service as a consumer loop would.
func deadLetter(t *testing.T, js jetstream.JetStream, service string, seq uint64, truncated string) uint64 {
	t.Helper()
	e := created(t, fmt.Sprintf("o-%d", seq))
	msg := nats.NewMsg(consume.DLQSubject(service, stream.Orders, seq))
	for k, vs := range e.Header() {
		msg.Header[k] = vs
	}
	msg.Header.Del(event.HeaderMsgID)
	msg.Header.Set(event.HeaderMsgID, consume.DLQMsgID(service+"-orders", stream.Orders, seq))
	msg.Header.Set(consume.HeaderOriginalMsgID, e.ID)
	msg.Header.Set(consume.HeaderDLQConsumer, service+"-orders")
	msg.Header.Set(consume.HeaderDLQStream, stream.Orders)
	msg.Header.Set(consume.HeaderDLQStreamSeq, fmt.Sprint(seq))
	msg.Header.Set(consume.HeaderDLQSubject, e.Subject())
	msg.Header.Set(consume.HeaderDLQDeliveries, "10")
	msg.Header.Set(consume.HeaderDLQError, "boom")
	msg.Header.Set(consume.HeaderDLQBodySize, fmt.Sprint(len(e.Body)))
	msg.Data = e.Body
	if truncated != "" {
		msg.Header.Set(consume.HeaderDLQTruncated, truncated)
		msg.Data = e.Body[:5]
	}
	ack, err := js.PublishMsg(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// A dead letter cut to fit the DLQ cannot be replayed: it is skipped, says
// why, and stays.
func TestTruncatedDeadLetterIsNotReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seq := deadLetter(t, b.js, service, 1, "body")
	for _, opt := range []dlq.Options{{DryRun: true}, {}} {
		outs := b.replay(t, []uint64{seq}, opt)
		if len(outs) != 1 || outs[0].Replayed || !errors.Is(outs[0].Skipped, dlq.ErrTruncated) {
			t.Fatalf("replay %+v of a truncated dead letter = %+v, want skipped as truncated", opt, outs)
		}
	}
	if outs := b.replay(t, nil, dlq.Options{}); len(outs) != 1 || !errors.Is(outs[0].Skipped, dlq.ErrTruncated) {
		t.Fatalf("replay --all = %+v, want the truncated one skipped", outs)
	}
	if es := b.list(t, ""); len(es) != 1 || es[0].Truncated[0] != "body" {
		t.Fatalf("DLQ = %+v, want the truncated dead letter kept", es)
	}
	if b.msgs(t, stream.Replay) != 0 {
		t.Fatal("a truncated dead letter reached REPLAY")
	}
}

// ls filters by service and reads thousands of dead letters; show returns
// one whole; purge removes one service's, or all, and says which.
func TestListShowPurge(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	ctx := t.Context()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	if es, err := dlq.List(ctx, js, ""); err != nil || len(es) != 0 {
		t.Fatalf("empty DLQ: %v, %v", es, err)
	}
	const many = 2000
	for i := range uint64(many) {
		svc := "inventory"
		if i%4 == 0 {
			svc = "payment"
		}
		deadLetter(t, js, svc, i+1, "")
	}
	all, err := dlq.List(ctx, js, "")
	if err != nil || len(all) != many {
		t.Fatalf("ls: %d entries, %v; want %d", len(all), err, many)
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) || e.Error != "boom" || e.Deliveries != 10 || e.EventType != string(event.OrderCreated) {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
	pay, err := dlq.List(ctx, js, "payment")
	if err != nil || len(pay) != many/4 {
		t.Fatalf("ls --service payment: %d, %v; want %d", len(pay), err, many/4)
	}
	m, err := dlq.Get(ctx, js, 1)
	if err != nil || m.Service != "payment" || len(m.Body) == 0 || m.Header.Get(consume.HeaderDLQError) != "boom" {
		t.Fatalf("show 1 = %+v, %v", m, err)
	}
	if _, err := dlq.Get(ctx, js, many+1); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("show %d: %v, want not found", many+1, err)
	}

	gone, err := dlq.Purge(ctx, js, "payment")
	if err != nil || len(gone) != many/4 {
		t.Fatalf("purge --service payment: %d, %v", len(gone), err)
	}
	if left, err := dlq.List(ctx, js, ""); err != nil || len(left) != many-many/4 || left[0].Service != "inventory" {
		t.Fatalf("after purging payment: %d left, %v", len(left), err)
	}
	gone, err = dlq.Purge(ctx, js, "")
	if err != nil || len(gone) != many-many/4 {
		t.Fatalf("purge: %d, %v", len(gone), err)
	}
	if gone, err := dlq.Purge(ctx, js, ""); err != nil || len(gone) != 0 {
		t.Fatalf("purge of an empty DLQ: %d, %v", len(gone), err)
	}
}
