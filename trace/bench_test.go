package trace_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/trace"
)

// BenchmarkLoadInLongHistory times jetsaga trace of one order in a history
// of 100,000 confirmed sagas (400,000 messages over the three event
// streams, a tenth of a million sagas' history): the first order placed,
// whose trace reads each stream from its start (the worst case: an old
// order), and the last, whose trace starts near the end. A shard's
// messages are in every block, so the first costs in proportion to the
// history stored after the order; the trace delivers and sifts by header
// 1/event.Shards of it.
//
//	go test ./trace -run '^$' -bench LoadInLongHistory -benchtime 5x
func BenchmarkLoadInLongHistory(b *testing.B) {
	const sagas = 100_000
	n := testenv.StartNATS(b)
	js := testenv.JetStream(b, n.Connect(b))
	ctx := b.Context()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		b.Fatal(err)
	}
	items := []event.Item{{SKU: "sku-1", Qty: 2, UnitPriceCents: 1999}}
	mustNew := func(p event.Payload, cause string) event.Event {
		e, err := event.New(p.EventType(), p.GetOrderID(), cause, p, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	var first, last string
	for i := range sagas {
		id := uuid.Must(uuid.NewV7()).String()
		if i == 0 {
			first = id
		}
		last = id
		created := mustNew(event.OrderCreatedPayload{OrderID: id, CustomerID: "c1", Items: items, TotalCents: 3998}, "")
		reserved := mustNew(event.InventoryReservedPayload{OrderID: id, Items: items, TotalCents: 3998}, created.ID)
		completed := mustNew(event.PaymentCompletedPayload{OrderID: id, PaymentID: "p-" + id, AmountCents: 3998}, reserved.ID)
		confirmed := mustNew(event.OrderConfirmedPayload{OrderID: id, TotalCents: 3998}, completed.ID)
		for _, e := range []event.Event{created, reserved, completed, confirmed} {
			if _, err := js.PublishMsgAsync(e.Msg(), jetstream.WithMsgID(e.ID)); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("publishes not acknowledged after 5m")
	}
	for _, o := range []struct{ name, id string }{{"first-placed", first}, {"last-placed", last}} {
		b.Run(o.name, func(b *testing.B) {
			for b.Loop() {
				hops, err := trace.Load(ctx, js, o.id)
				if err != nil {
					b.Fatal(err)
				}
				if len(hops) != 4 {
					b.Fatalf("trace of %s: %d hops, want 4", o.id, len(hops))
				}
			}
		})
	}
}
