package event

import (
	"encoding/json"
	"fmt"
	"math"
)

// Payload is the body of an event: one struct per event type.
type Payload interface {
	// EventType returns the type of event this payload belongs to.
	EventType() Type
	// Validate checks the payload's fields against the contract.
	Validate() error
	// GetOrderID returns the order the payload is about.
	GetOrderID() string
}

// Reasons an order is rejected or cancelled.
const (
	ReasonOutOfStock    = "out_of_stock"
	ReasonUnknownSKU    = "unknown_sku"
	ReasonPaymentFailed = "payment_failed"
	ReasonTimeout       = "timeout"
	// ReasonUnknownOrder: an order.created the order service never wrote
	// (a forgery, or a bug) is cancelled at once by the order service.
	ReasonUnknownOrder = "unknown_order"
)

// Limits on payload fields.
const (
	maxItems        = 50
	maxQty          = 1000
	maxReasonLen    = 256 // payment.failed's free-text reason
	maxPaymentIDLen = 128
)

// Item is one order line.
type Item struct {
	SKU            string `json:"sku"`
	Qty            int    `json:"qty"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// OrderCreatedPayload is the body of order.created.
type OrderCreatedPayload struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Items      []Item `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// InventoryReservedPayload is the body of inventory.reserved.
type InventoryReservedPayload struct {
	OrderID    string `json:"order_id"`
	Items      []Item `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// InventoryRejectedPayload is the body of inventory.rejected. Reason is
// ReasonOutOfStock or ReasonUnknownSKU; SKU, when set, names the item at fault.
type InventoryRejectedPayload struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
	SKU     string `json:"sku,omitempty"`
}

// PaymentCompletedPayload is the body of payment.completed.
type PaymentCompletedPayload struct {
	OrderID     string `json:"order_id"`
	PaymentID   string `json:"payment_id"`
	AmountCents int64  `json:"amount_cents"`
}

// PaymentFailedPayload is the body of payment.failed. Reason is the payment
// provider's, free text.
type PaymentFailedPayload struct {
	OrderID     string `json:"order_id"`
	Reason      string `json:"reason"`
	AmountCents int64  `json:"amount_cents"`
}

// InventoryReleasedPayload is the body of inventory.released: the items whose
// reservation was given back.
type InventoryReleasedPayload struct {
	OrderID string `json:"order_id"`
	Items   []Item `json:"items"`
}

// OrderConfirmedPayload is the body of order.confirmed.
type OrderConfirmedPayload struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents"`
}

// OrderCancelledPayload is the body of order.cancelled. Reason is one of
// ReasonOutOfStock, ReasonUnknownSKU, ReasonPaymentFailed, ReasonTimeout or
// ReasonUnknownOrder.
type OrderCancelledPayload struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// PaymentRefundedPayload is the body of payment.refunded: a charge that
// completed for an order that ended CANCELLED was given back. Reason is the
// order's cancellation reason.
type PaymentRefundedPayload struct {
	OrderID     string `json:"order_id"`
	PaymentID   string `json:"payment_id"`
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
}

func (OrderCreatedPayload) EventType() Type      { return OrderCreated }
func (InventoryReservedPayload) EventType() Type { return InventoryReserved }
func (InventoryRejectedPayload) EventType() Type { return InventoryRejected }
func (PaymentCompletedPayload) EventType() Type  { return PaymentCompleted }
func (PaymentFailedPayload) EventType() Type     { return PaymentFailed }
func (InventoryReleasedPayload) EventType() Type { return InventoryReleased }
func (OrderConfirmedPayload) EventType() Type    { return OrderConfirmed }
func (OrderCancelledPayload) EventType() Type    { return OrderCancelled }
func (PaymentRefundedPayload) EventType() Type   { return PaymentRefunded }

func (p OrderCreatedPayload) GetOrderID() string      { return p.OrderID }
func (p InventoryReservedPayload) GetOrderID() string { return p.OrderID }
func (p InventoryRejectedPayload) GetOrderID() string { return p.OrderID }
func (p PaymentCompletedPayload) GetOrderID() string  { return p.OrderID }
func (p PaymentFailedPayload) GetOrderID() string     { return p.OrderID }
func (p InventoryReleasedPayload) GetOrderID() string { return p.OrderID }
func (p OrderConfirmedPayload) GetOrderID() string    { return p.OrderID }
func (p OrderCancelledPayload) GetOrderID() string    { return p.OrderID }
func (p PaymentRefundedPayload) GetOrderID() string   { return p.OrderID }

func (p OrderCreatedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	if !validToken(p.CustomerID) {
		return violation("customer_id", "must be 1-64 chars of [A-Za-z0-9_-]")
	}
	return validPricedItems(p.Items, p.TotalCents)
}

func (p InventoryReservedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	return validPricedItems(p.Items, p.TotalCents)
}

func (p InventoryRejectedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	if err := validReason(p.Reason, ReasonOutOfStock, ReasonUnknownSKU); err != nil {
		return err
	}
	if p.SKU != "" && !validToken(p.SKU) {
		return violation("sku", "must be 1-64 chars of [A-Za-z0-9_-]")
	}
	return nil
}

func (p PaymentCompletedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	if p.PaymentID == "" || len(p.PaymentID) > maxPaymentIDLen {
		return violation("payment_id", "must be 1-%d bytes", maxPaymentIDLen)
	}
	return validAmount("amount_cents", p.AmountCents)
}

func (p PaymentFailedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	if p.Reason == "" || len(p.Reason) > maxReasonLen {
		return violation("reason", "must be 1-%d bytes", maxReasonLen)
	}
	return validAmount("amount_cents", p.AmountCents)
}

func (p InventoryReleasedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	_, err := validItems(p.Items)
	return err
}

func (p OrderConfirmedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	return validAmount("total_cents", p.TotalCents)
}

func (p OrderCancelledPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	return validReason(p.Reason, ReasonOutOfStock, ReasonUnknownSKU, ReasonPaymentFailed, ReasonTimeout, ReasonUnknownOrder)
}

func (p PaymentRefundedPayload) Validate() error {
	if err := ValidOrderID(p.OrderID); err != nil {
		return err
	}
	if p.PaymentID == "" || len(p.PaymentID) > maxPaymentIDLen {
		return violation("payment_id", "must be 1-%d bytes", maxPaymentIDLen)
	}
	if err := validReason(p.Reason, ReasonOutOfStock, ReasonUnknownSKU, ReasonPaymentFailed, ReasonTimeout, ReasonUnknownOrder); err != nil {
		return err
	}
	return validAmount("amount_cents", p.AmountCents)
}

// validItems checks 1 to maxItems items and returns the sum of qty × unit
// price, or a violation if it overflows int64.
func validItems(items []Item) (int64, error) {
	if len(items) == 0 || len(items) > maxItems {
		return 0, violation("items", "must hold 1-%d items, has %d", maxItems, len(items))
	}
	var sum int64
	for i, it := range items {
		field := fmt.Sprintf("items[%d]", i)
		if !validToken(it.SKU) {
			return 0, violation(field+".sku", "must be 1-64 chars of [A-Za-z0-9_-]")
		}
		if it.Qty < 1 || it.Qty > maxQty {
			return 0, violation(field+".qty", "must be 1-%d, got %d", maxQty, it.Qty)
		}
		if it.UnitPriceCents < 0 {
			return 0, violation(field+".unit_price_cents", "must be >= 0, got %d", it.UnitPriceCents)
		}
		qty := int64(it.Qty)
		if it.UnitPriceCents > (math.MaxInt64-sum)/qty {
			return 0, violation("items", "total overflows int64")
		}
		sum += qty * it.UnitPriceCents
	}
	return sum, nil
}

// validPricedItems checks the items and that total is their sum.
func validPricedItems(items []Item, total int64) error {
	sum, err := validItems(items)
	if err != nil {
		return err
	}
	if total != sum {
		return violation("total_cents", "is %d, items sum to %d", total, sum)
	}
	return nil
}

func validAmount(field string, cents int64) error {
	if cents < 0 {
		return violation(field, "must be >= 0, got %d", cents)
	}
	return nil
}

func validReason(reason string, allowed ...string) error {
	for _, a := range allowed {
		if reason == a {
			return nil
		}
	}
	return violation("reason", "must be one of %q, got %q", allowed, reason)
}

// DecodePayload decodes body as the payload of an event of type t and
// validates it. The result is the payload struct itself, not a pointer:
// OrderCreatedPayload for OrderCreated, and so on. Unknown JSON fields are
// ignored.
func DecodePayload(t Type, body []byte) (Payload, error) {
	switch t {
	case OrderCreated:
		return decode[OrderCreatedPayload](body)
	case InventoryReserved:
		return decode[InventoryReservedPayload](body)
	case InventoryRejected:
		return decode[InventoryRejectedPayload](body)
	case PaymentCompleted:
		return decode[PaymentCompletedPayload](body)
	case PaymentFailed:
		return decode[PaymentFailedPayload](body)
	case InventoryReleased:
		return decode[InventoryReleasedPayload](body)
	case OrderConfirmed:
		return decode[OrderConfirmedPayload](body)
	case OrderCancelled:
		return decode[OrderCancelledPayload](body)
	case PaymentRefunded:
		return decode[PaymentRefundedPayload](body)
	}
	return nil, violation("type", "unknown event type %q", t)
}

// decode unmarshals body into a P and validates it.
func decode[P Payload](body []byte) (Payload, error) {
	var p P
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &ContractError{Field: "body", Problem: "not a valid JSON " + string(p.EventType()) + " payload: " + err.Error(), err: err}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Decode decodes and validates the body of e as a P, which must be the
// payload struct of e's type, and checks that it names e's order.
//
//	p, err := event.Decode[event.OrderCreatedPayload](e)
func Decode[P Payload](e Event) (P, error) {
	var zero P
	payload, err := DecodePayload(e.Type, e.Body)
	if err != nil {
		return zero, err
	}
	p, ok := payload.(P)
	if !ok {
		return zero, violation("type", "%s event carries %T, not %T", e.Type, payload, zero)
	}
	if p.GetOrderID() != e.OrderID {
		return zero, violation("order_id", "body has %q, event has %q", p.GetOrderID(), e.OrderID)
	}
	return p, nil
}

// Compile-time checks that every payload implements Payload.
var _ = []Payload{
	OrderCreatedPayload{}, InventoryReservedPayload{}, InventoryRejectedPayload{},
	PaymentCompletedPayload{}, PaymentFailedPayload{}, InventoryReleasedPayload{},
	OrderConfirmedPayload{}, OrderCancelledPayload{}, PaymentRefundedPayload{},
}
