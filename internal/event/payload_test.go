package event_test

import (
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/jetsaga/jetsaga/internal/event"
)

func TestPayloadValidate(t *testing.T) {
	t.Parallel()

	item := func(sku string, qty int, price int64) event.Item {
		return event.Item{SKU: sku, Qty: qty, UnitPriceCents: price}
	}
	created := func(total int64, items ...event.Item) event.OrderCreatedPayload {
		return event.OrderCreatedPayload{OrderID: orderID, CustomerID: "c1", Items: items, TotalCents: total}
	}
	many := func(n int) []event.Item {
		return slices.Repeat([]event.Item{item("s", 1, 1)}, n)
	}

	tests := []struct {
		name    string
		payload event.Payload
		wantErr string
	}{
		{name: "created", payload: created(2*150+3, item("a", 2, 150), item("b", 3, 1))},
		{name: "created free items", payload: created(0, item("a", 1, 0))},
		{name: "created 50 items", payload: event.OrderCreatedPayload{OrderID: orderID, CustomerID: "c1", Items: many(50), TotalCents: 50}},
		{name: "created qty 1000", payload: created(1000, item("a", 1000, 1))},
		{name: "created empty order id", payload: event.OrderCreatedPayload{CustomerID: "c1", Items: many(1), TotalCents: 1},
			wantErr: "order_id: must be 1-64"},
		{name: "created empty customer", payload: event.OrderCreatedPayload{OrderID: orderID, Items: many(1), TotalCents: 1},
			wantErr: "customer_id: must be 1-64"},
		{name: "created customer with dot", payload: event.OrderCreatedPayload{OrderID: orderID, CustomerID: "a.b", Items: many(1), TotalCents: 1},
			wantErr: "customer_id"},
		{name: "zero items", payload: created(0), wantErr: "items: must hold 1-50 items, has 0"},
		{name: "51 items", payload: event.OrderCreatedPayload{OrderID: orderID, CustomerID: "c1", Items: many(51), TotalCents: 51},
			wantErr: "items: must hold 1-50 items, has 51"},
		{name: "qty 0", payload: created(0, item("a", 0, 1)), wantErr: "items[0].qty: must be 1-1000, got 0"},
		{name: "qty negative", payload: created(-1, item("a", -1, 1)), wantErr: "items[0].qty"},
		{name: "qty 1001", payload: created(1001, item("a", 1, 0), item("b", 1001, 1)), wantErr: "items[1].qty: must be 1-1000, got 1001"},
		{name: "negative price", payload: created(-5, item("a", 1, -5)), wantErr: "items[0].unit_price_cents: must be >= 0"},
		{name: "empty sku", payload: created(1, item("", 1, 1)), wantErr: "items[0].sku"},
		{name: "sku with space", payload: created(1, item("a b", 1, 1)), wantErr: "items[0].sku"},
		{name: "wrong total", payload: created(301, item("a", 2, 150)), wantErr: "total_cents: is 301, items sum to 300"},
		{name: "negative total", payload: created(-300, item("a", 2, 150)), wantErr: "total_cents"},
		{name: "total overflows", payload: created(0, item("a", 2, math.MaxInt64/2+1)), wantErr: "items: total overflows"},
		{name: "sum overflows", payload: created(0, item("a", 1, math.MaxInt64), item("b", 1, 1)), wantErr: "items: total overflows"},
		{name: "max total", payload: created(math.MaxInt64, item("a", 1, math.MaxInt64))},

		{name: "reserved", payload: event.InventoryReservedPayload{OrderID: orderID, Items: many(2), TotalCents: 2}},
		{name: "reserved wrong total", payload: event.InventoryReservedPayload{OrderID: orderID, Items: many(2), TotalCents: 3},
			wantErr: "total_cents"},
		{name: "reserved no items", payload: event.InventoryReservedPayload{OrderID: orderID}, wantErr: "items"},

		{name: "rejected out of stock", payload: event.InventoryRejectedPayload{OrderID: orderID, Reason: event.ReasonOutOfStock}},
		{name: "rejected unknown sku", payload: event.InventoryRejectedPayload{OrderID: orderID, Reason: event.ReasonUnknownSKU, SKU: "x"}},
		{name: "rejected unknown reason", payload: event.InventoryRejectedPayload{OrderID: orderID, Reason: event.ReasonPaymentFailed},
			wantErr: "reason: must be one of"},
		{name: "rejected no reason", payload: event.InventoryRejectedPayload{OrderID: orderID}, wantErr: "reason"},
		{name: "rejected bad sku", payload: event.InventoryRejectedPayload{OrderID: orderID, Reason: event.ReasonUnknownSKU, SKU: "x>"},
			wantErr: "sku: must be 1-64"},

		{name: "completed", payload: event.PaymentCompletedPayload{OrderID: orderID, PaymentID: "p", AmountCents: 0}},
		{name: "completed no payment id", payload: event.PaymentCompletedPayload{OrderID: orderID, AmountCents: 1}, wantErr: "payment_id"},
		{name: "completed negative amount", payload: event.PaymentCompletedPayload{OrderID: orderID, PaymentID: "p", AmountCents: -1},
			wantErr: "amount_cents: must be >= 0"},

		{name: "failed", payload: event.PaymentFailedPayload{OrderID: orderID, Reason: "insufficient funds", AmountCents: 10}},
		{name: "failed no reason", payload: event.PaymentFailedPayload{OrderID: orderID, AmountCents: 10}, wantErr: "reason"},
		{name: "failed negative amount", payload: event.PaymentFailedPayload{OrderID: orderID, Reason: "x", AmountCents: -10},
			wantErr: "amount_cents"},

		{name: "released", payload: event.InventoryReleasedPayload{OrderID: orderID, Items: many(3)}},
		{name: "released no items", payload: event.InventoryReleasedPayload{OrderID: orderID}, wantErr: "items"},
		{name: "released qty 0", payload: event.InventoryReleasedPayload{OrderID: orderID, Items: []event.Item{item("a", 0, 0)}},
			wantErr: "items[0].qty"},

		{name: "confirmed", payload: event.OrderConfirmedPayload{OrderID: orderID, TotalCents: 0}},
		{name: "confirmed negative total", payload: event.OrderConfirmedPayload{OrderID: orderID, TotalCents: -1}, wantErr: "total_cents"},
		{name: "confirmed order id with star", payload: event.OrderConfirmedPayload{OrderID: "*"}, wantErr: "order_id"},

		{name: "cancelled out of stock", payload: event.OrderCancelledPayload{OrderID: orderID, Reason: event.ReasonOutOfStock}},
		{name: "cancelled unknown sku", payload: event.OrderCancelledPayload{OrderID: orderID, Reason: event.ReasonUnknownSKU}},
		{name: "cancelled payment failed", payload: event.OrderCancelledPayload{OrderID: orderID, Reason: event.ReasonPaymentFailed}},
		{name: "cancelled timeout", payload: event.OrderCancelledPayload{OrderID: orderID, Reason: event.ReasonTimeout}},
		{name: "refunded", payload: event.PaymentRefundedPayload{OrderID: orderID, PaymentID: "pay_1", AmountCents: 10, Reason: event.ReasonTimeout}},
		{name: "refunded no payment id", payload: event.PaymentRefundedPayload{OrderID: orderID, AmountCents: 10, Reason: event.ReasonTimeout},
			wantErr: "payment_id"},
		{name: "refunded unknown reason", payload: event.PaymentRefundedPayload{OrderID: orderID, PaymentID: "pay_1", Reason: "oops"},
			wantErr: "reason"},
		{name: "refunded negative amount", payload: event.PaymentRefundedPayload{OrderID: orderID, PaymentID: "pay_1", AmountCents: -1, Reason: event.ReasonTimeout},
			wantErr: "amount_cents"},
		{name: "cancelled unknown reason", payload: event.OrderCancelledPayload{OrderID: orderID, Reason: "changed_mind"},
			wantErr: "reason: must be one of"},
		{name: "cancelled reason case matters", payload: event.OrderCancelledPayload{OrderID: orderID, Reason: "TIMEOUT"},
			wantErr: "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			checkErr(t, tt.payload.Validate(), tt.wantErr)

			// DecodePayload applies the same rules to the JSON form.
			body, err := json.Marshal(tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			p, err := event.DecodePayload(tt.payload.EventType(), body)
			checkErr(t, err, tt.wantErr)
			if err == nil && p.GetOrderID() != tt.payload.GetOrderID() {
				t.Errorf("decoded order id %q, want %q", p.GetOrderID(), tt.payload.GetOrderID())
			}
		})
	}
}

func TestPayloadJSONNames(t *testing.T) {
	t.Parallel()

	body, err := json.Marshal(event.OrderCreatedPayload{
		OrderID: "o1", CustomerID: "c1", TotalCents: 5,
		Items: []event.Item{{SKU: "s", Qty: 1, UnitPriceCents: 5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"order_id":"o1","customer_id":"c1","items":[{"sku":"s","qty":1,"unit_price_cents":5}],"total_cents":5}`
	if string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}

	body, _ = json.Marshal(event.InventoryRejectedPayload{OrderID: "o1", Reason: event.ReasonOutOfStock})
	if want := `{"order_id":"o1","reason":"out_of_stock"}`; string(body) != want {
		t.Errorf("body = %s, want %s (sku omitted when empty)", body, want)
	}
}

func TestDecodePayloadUnknownType(t *testing.T) {
	t.Parallel()

	_, err := event.DecodePayload("order.shipped", []byte(`{"order_id":"o1"}`))
	checkErr(t, err, "unknown event type")
}
