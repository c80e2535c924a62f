package readmodel

import (
	"fmt"
	"testing"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// BenchmarkHandleBatch projects batches of 256 events as the consumer loop
// hands them over, each in one transaction: half of them the order.created
// of new orders, half the inventory.reserved that moves an earlier batch's
// orders on (an update of a view in flight). One op is one batch.
//
//	go test -run '^$' -bench HandleBatch -benchtime 200x ./readmodel
func BenchmarkHandleBatch(b *testing.B) {
	pool := testenv.Pool(b, Schema, Migrations())
	rm, err := newReadModel(&service.Runtime{Pool: pool, Log: zap.NewNop(), Now: newClock().Now}, Config{})
	if err != nil {
		b.Fatal(err)
	}
	const half = 128
	var prev []event.Event // order.created of the batch before
	batch := func(i int) []event.Event {
		out := make([]event.Event, 0, 2*half)
		created := make([]event.Event, 0, half)
		for j := range half {
			id := fmt.Sprintf("b%d-%d", i, j)
			e, err := event.New(event.OrderCreated, id, "", payload(event.OrderCreated, id, pathConfirmed), t0)
			if err != nil {
				b.Fatal(err)
			}
			created = append(created, e)
		}
		for _, cr := range prev {
			e, err := event.New(event.InventoryReserved, cr.OrderID, cr.ID, payload(event.InventoryReserved, cr.OrderID, pathConfirmed), t0)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, e)
		}
		prev = created
		return append(out, created...)
	}
	ctx := b.Context()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		events := batch(i)
		b.StartTimer()
		tx, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := rm.handleBatch(ctx, tx, events); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
