package outbox_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// writeCreated commits n order.created events (orders prefix-0 ...) and
// returns them.
func writeCreated(t *testing.T, b bundle, prefix string, n int) []event.Event {
	t.Helper()
	es := make([]event.Event, n)
	for i := range es {
		es[i] = created(t, fmt.Sprintf("%s-%d", prefix, i))
		write(t, b.pool, es[i], true)
	}
	return es
}

// ordersMsgs returns the ORDERS stream's messages by Nats-Msg-Id, failing
// on an id stored twice.
func ordersMsgs(t *testing.T, js jetstream.JetStream) map[string]*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*jetstream.RawStreamMsg{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if _, twice := byID[id]; twice {
			t.Fatalf("event %s stored twice", id)
		}
		byID[id] = m
	}
	return byID
}

// flush publishes the whole outbox through a relay of cfg and checks that
// it is empty after.
func flush(t *testing.T, b bundle, cfg outbox.RelayConfig) int {
	t.Helper()
	r, err := outbox.NewRelay(b.pool, b.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.Flush(t.Context())
	if err != nil {
		t.Fatalf("flush: %v", err)
	}
	if left := count(t, b.pool, `SELECT count(*) FROM outbox`); left != 0 {
		t.Fatalf("%d rows left in the outbox", left)
	}
	return n
}

// batchLog records what OnAtomicBatch reports.
type batchLog struct {
	mu      sync.Mutex
	stored  []int
	refused []int
}

func (l *batchLog) add(events int, stored bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if stored {
		l.stored = append(l.stored, events)
	} else {
		l.refused = append(l.refused, events)
	}
}

func TestRelayPublishesAtomicBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	es := writeCreated(t, b, "atomic", 40)
	var log batchLog
	if n := flush(t, b, outbox.RelayConfig{OnAtomicBatch: log.add}); n != len(es) {
		t.Fatalf("flushed %d events, want %d", n, len(es))
	}
	if !slices.Equal(log.stored, []int{40}) || len(log.refused) != 0 {
		t.Fatalf("batches reported stored %v, refused %v; want one of 40 stored", log.stored, log.refused)
	}
	msgs := ordersMsgs(t, b.js)
	if len(msgs) != len(es) {
		t.Fatalf("ORDERS holds %d events, want %d", len(msgs), len(es))
	}
	// The stream keeps a batch's headers: all 40 went as one batch.
	batches := map[string]int{}
	for _, e := range es {
		m, ok := msgs[e.ID]
		if !ok {
			t.Fatalf("event %s not in ORDERS", e.ID)
		}
		batches[m.Header.Get("Nats-Batch-Id")]++
	}
	if len(batches) != 1 || batches[""] != 0 {
		t.Fatalf("events by batch id: %v; want all 40 in one batch", batches)
	}
}

func TestRelayBelowAtomicMinPublishesOneByOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	es := writeCreated(t, b, "small", 15)
	flush(t, b, outbox.RelayConfig{})
	wantOneByOne(t, ordersMsgs(t, b.js), es)
}

// wantOneByOne fails unless every one of es is in msgs, published outside
// any atomic batch.
func wantOneByOne(t *testing.T, msgs map[string]*jetstream.RawStreamMsg, es []event.Event) {
	t.Helper()
	for _, e := range es {
		m, ok := msgs[e.ID]
		if !ok {
			t.Fatalf("event %s not in ORDERS", e.ID)
		}
		if id := m.Header.Get("Nats-Batch-Id"); id != "" {
			t.Fatalf("event %s stored in batch %s; want it published one by one", e.ID, id)
		}
	}
}

// A batch holding an event the stream has already (a republish after a
// crash between the ack and the delete) is refused whole; the relay then
// publishes the batch's events one by one, which the stream deduplicates.
func TestAtomicBatchWithAnEventPublishedAlready(t *testing.T) {
	t.Parallel()
	b := setup(t)
	es := writeCreated(t, b, "again", 20)
	if _, err := b.js.PublishMsg(t.Context(), es[7].Msg()); err != nil {
		t.Fatal(err)
	}
	var log batchLog
	flush(t, b, outbox.RelayConfig{OnAtomicBatch: log.add})
	if !slices.Equal(log.refused, []int{20}) || len(log.stored) != 0 {
		t.Fatalf("batches reported stored %v, refused %v; want one of 20 refused", log.stored, log.refused)
	}
	msgs := ordersMsgs(t, b.js)
	if len(msgs) != len(es) {
		t.Fatalf("ORDERS holds %d events, want %d", len(msgs), len(es))
	}
	wantOneByOne(t, msgs, es)
}

// On a stream without allow_atomic (provisioned by hand, or by an older
// jetsaga) the relay turns atomic batches off and publishes one by one.
func TestRelayOnAStreamWithoutAtomicBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc, err := stream.StreamConfig(stream.Orders, stream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sc.AllowAtomicPublish = false
	if _, err := b.js.UpdateStream(t.Context(), sc); err != nil {
		t.Fatal(err)
	}
	r, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		writeCreated(t, b, fmt.Sprintf("plain%d", round), 20)
		if n, err := r.Flush(t.Context()); err != nil || n != 20 {
			t.Fatalf("round %d: flushed %d, %v; want 20", round, n, err)
		}
	}
	if msgs := ordersMsgs(t, b.js); len(msgs) != 40 {
		t.Fatalf("ORDERS holds %d events, want 40", len(msgs))
	}
	if left := count(t, b.pool, `SELECT count(*) FROM outbox`); left != 0 {
		t.Fatalf("%d rows left in the outbox", left)
	}
}

// Events left to publish one by one beside an atomic batch keep the order
// they were written in: the relay moves the batch's events to the front,
// not the others around.
func TestEventsBesideABatchKeepTheirOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var reserved []event.Event
	for i := range 3 {
		id := fmt.Sprintf("kept-%d", i)
		e, err := event.New(event.InventoryReserved, id, created(t, id).ID, &event.InventoryReservedPayload{
			OrderID: id, Items: []event.Item{{SKU: "sku-1", Qty: 1, UnitPriceCents: 100}}, TotalCents: 100,
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		write(t, b.pool, e, true)
		reserved = append(reserved, e)
	}
	writeCreated(t, b, "beside", 16)
	var log batchLog
	flush(t, b, outbox.RelayConfig{OnAtomicBatch: log.add})
	if !slices.Equal(log.stored, []int{16}) {
		t.Fatalf("batches stored %v; want the 16 order.created in one", log.stored)
	}
	s, err := b.js.Stream(t.Context(), stream.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range reserved {
		m, err := s.GetMsg(t.Context(), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != e.ID {
			t.Fatalf("INVENTORY #%d is %s; want %s, the event written %d of 3", i+1, id, e.ID, i+1)
		}
	}
}
