package readmodel_test

import (
	"fmt"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/readmodel"
)

// Project gives the same view whatever order the events arrived in: here an
// out-of-stock saga seen backwards, with a duplicate.
func ExampleProject() {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	created, _ := event.New(event.OrderCreated, "order-1", "", event.OrderCreatedPayload{
		OrderID: "order-1", CustomerID: "c1", TotalCents: 500,
		Items: []event.Item{{SKU: "sku-1", Qty: 2, UnitPriceCents: 250}},
	}, at)
	rejected, _ := event.New(event.InventoryRejected, "order-1", created.ID, event.InventoryRejectedPayload{
		OrderID: "order-1", Reason: event.ReasonOutOfStock, SKU: "sku-1",
	}, at.Add(5*time.Millisecond))
	cancelled, _ := event.New(event.OrderCancelled, "order-1", rejected.ID, event.OrderCancelledPayload{
		OrderID: "order-1", Reason: event.ReasonOutOfStock,
	}, at.Add(9*time.Millisecond))

	var recs []readmodel.Recorded
	for _, e := range []event.Event{cancelled, rejected, created, rejected} {
		recs = append(recs, readmodel.Recorded{
			EventID: e.ID, Type: e.Type, OrderID: e.OrderID, CausationID: e.CausationID,
			OccurredAt: e.OccurredAt, ProjectedAt: at.Add(20 * time.Millisecond), Body: e.Body,
		})
	}
	v := readmodel.Project(recs)
	fmt.Println(v.Status, v.Reason, v.CustomerID, v.TotalCents, v.Version)
	for _, s := range v.Timeline {
		fmt.Println(s.EventType, s.LagMS)
	}
	// Output:
	// CANCELLED out_of_stock c1 500 3
	// order.created 20
	// inventory.rejected 15
	// order.cancelled 11
}
