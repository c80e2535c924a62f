package check_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestQuiesce(t *testing.T) {
	t.Parallel()
	for _, l := range layouts {
		t.Run(string(l), func(t *testing.T) {
			t.Parallel()
			testQuiesce(t, newWorldIn(t, l))
		})
	}
}

func testQuiesce(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A settled world is quiet, even with an ordered (ephemeral) consumer
	// left behind by a reader.
	s, err := w.js.Stream(ctx, stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := check.Quiesce(ctx, w.check, w.js, 10*time.Second); err != nil {
		t.Fatalf("Quiesce on a settled world: %v", err)
	}

	// A service's durable consumer that has not caught up, and an event not
	// yet relayed from an outbox.
	cons, err := stream.EnsureConsumer(ctx, w.js, stream.ConsumerConfig{
		Stream: stream.Orders, Durable: "inventory-orders", FilterSubjects: []string{"order.created.>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEvent(t, event.OrderCancelledPayload{OrderID: "o-young", Reason: event.ReasonTimeout}, "o-young",
		w.event(t, "o-young", event.InventoryReserved).ID, time.Now())
	w.exec(t, "orders", `INSERT INTO outbox (event_id, event_type, order_id, causation_id, occurred_at, body)
		VALUES ($1, $2, $3, $4, $5, $6)`, e.ID, string(e.Type), e.OrderID, e.CausationID, e.OccurredAt, e.Body)

	err = check.Quiesce(ctx, w.check, w.js, 2*time.Second) // the work stays: it cannot quiesce
	if !errors.Is(err, check.ErrNotQuiet) {
		t.Fatalf("Quiesce with work left: %v, want ErrNotQuiet", err)
	}
	for _, want := range []string{"orders.outbox holds 1 event;", "consumer inventory-orders on ORDERS: 6 pending, 0 awaiting ack"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// Fetched but not acked: still busy.
	batch, err := cons.Fetch(6, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for msg := range batch.Messages() {
		msgs = append(msgs, msg)
	}
	if len(msgs) != 6 {
		t.Fatalf("fetched %d messages, want 6 (err %v)", len(msgs), batch.Error())
	}
	w.exec(t, "orders", `DELETE FROM outbox`)
	err = check.Quiesce(ctx, w.check, w.js, 2*time.Second) // the work stays: it cannot quiesce
	if !errors.Is(err, check.ErrNotQuiet) || !strings.Contains(err.Error(), "0 pending, 6 awaiting ack") || strings.Contains(err.Error(), "outbox") {
		t.Fatalf("Quiesce with unacked messages: %v", err)
	}

	for _, msg := range msgs {
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := check.Quiesce(ctx, w.check, w.js, 10*time.Second); err != nil {
		t.Fatalf("Quiesce once all is done: %v", err)
	}
}

// TestQuiesceMissingTables: waiting cannot create a table, so Quiesce says
// so at once instead of at its timeout.
func TestQuiesceMissingTables(t *testing.T) {
	t.Parallel()
	pool := testenv.PoolOn(t, testenv.DatabaseURL(t), "public", nil)
	js := testenv.JetStream(t, testenv.StartNATS(t).Connect(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := check.Quiesce(ctx, check.OneDB(pool), js, time.Minute)
	if err == nil || errors.Is(err, check.ErrNotQuiet) || !strings.Contains(err.Error(), "orders.outbox") {
		t.Fatalf("Quiesce without tables: %v, want an error about orders.outbox", err)
	}
}
