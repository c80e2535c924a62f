package event_test

import (
	"fmt"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
)

func Example() {
	// The order service accepts an order and publishes order.created.
	created, err := event.New(event.OrderCreated, "ord-1", "", event.OrderCreatedPayload{
		OrderID:    "ord-1",
		CustomerID: "cust-7",
		Items:      []event.Item{{SKU: "mug", Qty: 2, UnitPriceCents: 950}},
		TotalCents: 1900,
	}, time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC))
	if err != nil {
		panic(err)
	}
	msg := created.Msg()
	fmt.Println(msg.Subject) // the type and the order's shard; the order id is in a header

	fmt.Println(msg.Header.Get(event.HeaderOccurredAt))
	fmt.Println(string(msg.Data))

	// The inventory service receives it...
	got, err := event.FromMsg(msg.Subject, msg.Header, msg.Data)
	if err != nil {
		panic(err) // in a service: dead-letter the message
	}
	order, err := event.Decode[event.OrderCreatedPayload](got)
	if err != nil {
		panic(err)
	}

	// ...and answers with an event caused by it.
	reserved, err := event.New(event.InventoryReserved, order.OrderID, got.ID, event.InventoryReservedPayload{
		OrderID:    order.OrderID,
		Items:      order.Items,
		TotalCents: order.TotalCents,
	}, time.Date(2025, 3, 14, 12, 0, 1, 0, time.UTC))
	if err != nil {
		panic(err)
	}
	fmt.Println(reserved.Subject(), reserved.Type.Stream(), reserved.CausationID == created.ID)
	// Output:
	// order.created.32
	// 2025-03-14T12:00:00Z
	// {"order_id":"ord-1","customer_id":"cust-7","items":[{"sku":"mug","qty":2,"unit_price_cents":950}],"total_cents":1900}
	// inventory.reserved.32 INVENTORY true
}
