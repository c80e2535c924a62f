package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/internal/event"
)

const (
	orderID = "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d"
	causeID = "0190f5c2-7d1e-7a3b-9c4d-000000000001"
)

// at is not in UTC on purpose: events carry it in UTC.
var at = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))

var items = []event.Item{
	{SKU: "sku-1", Qty: 2, UnitPriceCents: 1250},
	{SKU: "SKU_2", Qty: 1, UnitPriceCents: 0},
}

const itemsTotal = 2500

// payloadFor returns a valid payload of type t for order id.
func payloadFor(t event.Type, id string) event.Payload {
	switch t {
	case event.OrderCreated:
		return event.OrderCreatedPayload{OrderID: id, CustomerID: "cust-42", Items: items, TotalCents: itemsTotal}
	case event.InventoryReserved:
		return event.InventoryReservedPayload{OrderID: id, Items: items, TotalCents: itemsTotal}
	case event.InventoryRejected:
		return event.InventoryRejectedPayload{OrderID: id, Reason: event.ReasonOutOfStock, SKU: "sku-1"}
	case event.PaymentCompleted:
		return event.PaymentCompletedPayload{OrderID: id, PaymentID: "pay_123", AmountCents: itemsTotal}
	case event.PaymentFailed:
		return event.PaymentFailedPayload{OrderID: id, Reason: "card_declined", AmountCents: itemsTotal}
	case event.InventoryReleased:
		return event.InventoryReleasedPayload{OrderID: id, Items: items}
	case event.OrderConfirmed:
		return event.OrderConfirmedPayload{OrderID: id, TotalCents: itemsTotal}
	case event.OrderCancelled:
		return event.OrderCancelledPayload{OrderID: id, Reason: event.ReasonPaymentFailed}
	case event.PaymentRefunded:
		return event.PaymentRefundedPayload{OrderID: id, PaymentID: "pay_123", AmountCents: itemsTotal, Reason: event.ReasonTimeout}
	}
	panic("no payload for " + t)
}

// causationFor returns the causation id an event of type t needs.
func causationFor(t event.Type) string {
	if t == event.OrderCreated {
		return ""
	}
	return causeID
}

// mustNew builds a valid event of type t.
func mustNew(t testing.TB, typ event.Type) event.Event {
	t.Helper()
	e, err := event.New(typ, orderID, causationFor(typ), payloadFor(typ, orderID), at)
	if err != nil {
		t.Fatalf("New(%s): %v", typ, err)
	}
	return e
}

// sameEvent reports whether a and b are the same event, down to the body's bytes.
func sameEvent(a, b event.Event) bool {
	return a.ID == b.ID && a.Type == b.Type && a.OrderID == b.OrderID &&
		a.CausationID == b.CausationID && a.OccurredAt.Equal(b.OccurredAt) &&
		a.OccurredAt.Location() == b.OccurredAt.Location() && bytes.Equal(a.Body, b.Body)
}

func TestTypes(t *testing.T) {
	t.Parallel()

	want := map[event.Type]string{
		"order.created":      "ORDERS",
		"inventory.reserved": "INVENTORY",
		"inventory.rejected": "INVENTORY",
		"payment.completed":  "PAYMENTS",
		"payment.failed":     "PAYMENTS",
		"inventory.released": "INVENTORY",
		"order.confirmed":    "ORDERS",
		"order.cancelled":    "ORDERS",
		"payment.refunded":   "PAYMENTS",
	}
	types := event.Types()
	if len(types) != len(want) || types[0] != event.OrderCreated || types[7] != event.OrderCancelled {
		t.Fatalf("Types() = %v", types)
	}
	for _, typ := range types {
		if !typ.Valid() {
			t.Errorf("%s: Valid() = false", typ)
		}
		if got := typ.Stream(); got != want[typ] {
			t.Errorf("%s: Stream() = %q, want %q", typ, got, want[typ])
		}
	}
	for _, typ := range []event.Type{"", "order", "order.", "order.created.x", "Order.Created", "dlq.order.created", "order.*"} {
		if typ.Valid() || typ.Stream() != "" {
			t.Errorf("%q: Valid() = %v, Stream() = %q, want false, \"\"", typ, typ.Valid(), typ.Stream())
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()

	for _, typ := range event.Types() {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()

			e := mustNew(t, typ)
			u, err := uuid.Parse(e.ID)
			if err != nil || u.Version() != 7 || e.ID != strings.ToLower(e.ID) {
				t.Errorf("ID %q is not a lowercase UUIDv7 (%v)", e.ID, err)
			}
			if e.OccurredAt.Location() != time.UTC || !e.OccurredAt.Equal(at) {
				t.Errorf("OccurredAt = %v, want %v in UTC", e.OccurredAt, at)
			}

			m := e.Msg()
			// orderID's shard, pinned: FNV-1a of its bytes mod 64.
			if want := string(typ) + ".21"; m.Subject != want || e.Subject() != want {
				t.Errorf("subject = %q, want %q", m.Subject, want)
			}
			if len(m.Header) != 5 {
				t.Errorf("header has %d keys, want 5: %v", len(m.Header), m.Header)
			}
			if got := m.Header.Get(event.HeaderOccurredAt); got != "2025-03-14T14:09:26.535897932Z" {
				t.Errorf("%s = %q", event.HeaderOccurredAt, got)
			}
			if got := m.Header.Get(event.HeaderMsgID); got != e.ID {
				t.Errorf("%s = %q, want %q", event.HeaderMsgID, got, e.ID)
			}

			got, err := event.FromMsg(m.Subject, m.Header, m.Data)
			if err != nil {
				t.Fatalf("FromMsg: %v", err)
			}
			if !sameEvent(got, e) {
				t.Errorf("FromMsg = %+v, want %+v", got, e)
			}

			p, err := event.DecodePayload(got.Type, got.Body)
			if err != nil {
				t.Fatalf("DecodePayload: %v", err)
			}
			if want := payloadFor(typ, orderID); fmt.Sprint(p) != fmt.Sprint(want) {
				t.Errorf("payload = %+v, want %+v", p, want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		typ       event.Type
		orderID   string
		causation string
		payload   event.Payload
		at        time.Time
		wantErr   string // substring of the error; "" for none
	}{
		{name: "valid", typ: event.OrderCreated, orderID: orderID, payload: payloadFor(event.OrderCreated, orderID), at: at},
		{name: "pointer payload", typ: event.OrderConfirmed, orderID: orderID, causation: causeID,
			payload: &event.OrderConfirmedPayload{OrderID: orderID}, at: at},
		{name: "nil payload", typ: event.OrderCreated, orderID: orderID, at: at, wantErr: "payload: must not be nil"},
		{name: "nil pointer payload", typ: event.OrderConfirmed, orderID: orderID, causation: causeID,
			payload: (*event.OrderConfirmedPayload)(nil), at: at, wantErr: "payload: must not be nil"},
		{name: "unknown type", typ: "order.shipped", orderID: orderID, causation: causeID,
			payload: payloadFor(event.OrderConfirmed, orderID), at: at, wantErr: "unknown event type"},
		{name: "payload of another type", typ: event.OrderConfirmed, orderID: orderID, causation: causeID,
			payload: payloadFor(event.OrderCancelled, orderID), at: at, wantErr: "is the payload of order.cancelled"},
		{name: "payload for another order", typ: event.OrderCreated, orderID: "other-order",
			payload: payloadFor(event.OrderCreated, orderID), at: at, wantErr: "order_id: body has"},
		{name: "bad order id", typ: event.OrderCreated, orderID: "a.b",
			payload: payloadFor(event.OrderCreated, "a.b"), at: at, wantErr: "order_id: must be 1-64"},
		{name: "invalid payload", typ: event.OrderCancelled, orderID: orderID, causation: causeID,
			payload: event.OrderCancelledPayload{OrderID: orderID, Reason: "bored"}, at: at, wantErr: "reason: must be one of"},
		{name: "causation on order.created", typ: event.OrderCreated, orderID: orderID, causation: causeID,
			payload: payloadFor(event.OrderCreated, orderID), at: at, wantErr: "causation_id: must be empty"},
		{name: "no causation", typ: event.InventoryReserved, orderID: orderID,
			payload: payloadFor(event.InventoryReserved, orderID), at: at, wantErr: "causation_id: required"},
		{name: "causation not a UUID", typ: event.InventoryReserved, orderID: orderID, causation: "abc",
			payload: payloadFor(event.InventoryReserved, orderID), at: at, wantErr: "causation_id: must be a UUID"},
		{name: "zero time", typ: event.OrderCreated, orderID: orderID,
			payload: payloadFor(event.OrderCreated, orderID), wantErr: "occurred_at"},
		{name: "year 10000", typ: event.OrderCreated, orderID: orderID,
			payload: payloadFor(event.OrderCreated, orderID), at: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), wantErr: "occurred_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			e, err := event.New(tt.typ, tt.orderID, tt.causation, tt.payload, tt.at)
			checkErr(t, err, tt.wantErr)
			if err == nil {
				if verr := e.Validate(); verr != nil {
					t.Errorf("Validate: %v", verr)
				}
			}
		})
	}
}

// checkErr fails t unless err contains wantErr ("" means no error), and
// checks that every error matches ErrContract.
func checkErr(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("no error, want one containing %q", wantErr)
	case err != nil && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("error %q does not contain %q", err, wantErr)
	case err != nil && !errors.Is(err, event.ErrContract):
		t.Fatalf("errors.Is(%v, ErrContract) = false", err)
	}
}

func TestValidOrderID(t *testing.T) {
	t.Parallel()

	tests := []struct {
		id      string
		wantErr bool
	}{
		{id: orderID},
		{id: "A"},
		{id: "order_1-B"},
		{id: strings.Repeat("x", 64)},
		{id: "", wantErr: true},
		{id: "a.b", wantErr: true},
		{id: "a*", wantErr: true},
		{id: "*", wantErr: true},
		{id: ">", wantErr: true},
		{id: "a b", wantErr: true},
		{id: "a\tb", wantErr: true},
		{id: "a\r\nb", wantErr: true},
		{id: "ordér", wantErr: true},
		{id: strings.Repeat("x", 65), wantErr: true},
	}
	for _, tt := range tests {
		err := event.ValidOrderID(tt.id)
		if (err != nil) != tt.wantErr {
			t.Errorf("ValidOrderID(%q) = %v, wantErr %v", tt.id, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, event.ErrContract) {
			t.Errorf("ValidOrderID(%q) = %v, not ErrContract", tt.id, err)
		}
	}
}

func TestFromMsg(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		typ     event.Type                    // the valid event to start from
		mutate  func(m *nats.Msg)             // breaks it, or not
		check   func(*testing.T, event.Event) // optional, when no error
		wantErr string
	}{
		{name: "valid", typ: event.PaymentCompleted, mutate: func(*nats.Msg) {}},
		{name: "missing Nats-Msg-Id", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Del(event.HeaderMsgID) }, wantErr: "Nats-Msg-Id: missing header"},
		{name: "missing type", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Del(event.HeaderType) }, wantErr: "Jetsaga-Event-Type: missing header"},
		{name: "missing order id", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Del(event.HeaderOrderID) }, wantErr: "Jetsaga-Order-Id: missing header"},
		{name: "missing causation id", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Del(event.HeaderCausationID) }, wantErr: "Jetsaga-Causation-Id: missing header"},
		{name: "empty causation id", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderCausationID, "") }, wantErr: "Jetsaga-Causation-Id: missing header"},
		{name: "order.created without causation header", typ: event.OrderCreated,
			mutate: func(m *nats.Msg) { m.Header.Del(event.HeaderCausationID) }},
		{name: "order.created with causation", typ: event.OrderCreated,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderCausationID, causeID) }, wantErr: "causation_id: must be empty"},
		{name: "missing occurred-at", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Del(event.HeaderOccurredAt) }, wantErr: "Jetsaga-Occurred-At: missing header"},
		{name: "no headers at all", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header = nil }, wantErr: "missing header"},
		{name: "header given twice", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Add(event.HeaderMsgID, causeID) }, wantErr: "Nats-Msg-Id: header given 2 times"},
		{name: "header names are case-sensitive", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) {
				m.Header["jetsaga-event-type"] = m.Header[event.HeaderType]
				m.Header.Del(event.HeaderType)
			}, wantErr: "Jetsaga-Event-Type: missing header"},
		{name: "extra headers ignored", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set("Nats-Stream", "PAYMENTS") }},
		{name: "unknown type", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) {
				m.Header.Set(event.HeaderType, "payment.voided")
				m.Subject = "payment.voided." + orderID
			}, wantErr: "unknown event type"},
		{name: "subject of another type", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = "payment.failed." + orderID }, wantErr: "subject:"},
		{name: "type header of another type", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderType, string(event.PaymentFailed)) }, wantErr: "subject:"},
		{name: "subject of another order", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = "payment.completed.other" }, wantErr: "subject:"},
		{name: "subject of another shard", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = "payment.completed.000" }, wantErr: "subject:"},
		{name: "subject of another order's shard", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = event.Subject(event.PaymentCompleted, "other") }, wantErr: "subject:"},
		{name: "shard in capitals", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = "payment.completed.1A1" }, wantErr: "subject:"},
		{name: "legacy subject with the order id", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = "payment.completed." + orderID },
			check: func(t *testing.T, e event.Event) {
				if e.OrderID != orderID || e.Subject() != "payment.completed.21" {
					t.Errorf("legacy event read as order %q, subject %q", e.OrderID, e.Subject())
				}
			}},
		{name: "legacy subject of another type", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = "payment.failed." + orderID }, wantErr: "subject:"},
		{name: "wildcard subject", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject = event.Filter(event.PaymentCompleted) }, wantErr: "subject:"},
		{name: "subject with extra token", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Subject += ".x" }, wantErr: "subject:"},
		{name: "order id header not a token", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) {
				m.Header.Set(event.HeaderOrderID, "a.b")
				m.Subject = "payment.completed.a.b"
			}, wantErr: "order_id: must be 1-64"},
		{name: "body order id differs from header", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) {
				m.Header.Set(event.HeaderOrderID, "other")
				m.Subject = "payment.completed.other"
			}, wantErr: "order_id: body has"},
		{name: "bad UUID", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderMsgID, "not-a-uuid") }, wantErr: "id: must be a UUID"},
		{name: "uppercase UUID", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderMsgID, strings.ToUpper(m.Header.Get(event.HeaderMsgID))) }, wantErr: "id: must be a UUID"},
		{name: "UUID in braces", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderMsgID, "{"+m.Header.Get(event.HeaderMsgID)+"}") }, wantErr: "id: must be a UUID"},
		{name: "nil UUID", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderMsgID, uuid.Nil.String()) }, wantErr: "id: must be a UUID"},
		{name: "bad causation UUID", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderCausationID, "123") }, wantErr: "causation_id: must be a UUID"},
		{name: "bad occurred-at", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderOccurredAt, "yesterday") }, wantErr: "Jetsaga-Occurred-At: must be RFC 3339"},
		{name: "occurred-at without zone", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderOccurredAt, "2025-03-14T14:09:26") }, wantErr: "Jetsaga-Occurred-At"},
		{name: "occurred-at zero time", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderOccurredAt, "0001-01-01T00:00:00Z") }, wantErr: "occurred_at"},
		{name: "occurred-at with offset is read as UTC", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Header.Set(event.HeaderOccurredAt, "2025-03-14T16:09:26.5+02:00") },
			check: func(t *testing.T, e event.Event) {
				if want := time.Date(2025, 3, 14, 14, 9, 26, 5e8, time.UTC); e.OccurredAt != want {
					t.Errorf("OccurredAt = %v, want %v", e.OccurredAt, want)
				}
			}},
		{name: "malformed JSON", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Data = m.Data[:len(m.Data)-1] }, wantErr: "body: not a valid JSON"},
		{name: "empty body", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Data = nil }, wantErr: "body:"},
		{name: "null body", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Data = []byte("null") }, wantErr: "order_id: must be 1-64"},
		{name: "trailing garbage", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) { m.Data = append(m.Data, "{}"...) }, wantErr: "body:"},
		{name: "wrong JSON type", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) {
				m.Data = []byte(`{"order_id":"` + orderID + `","payment_id":"p","amount_cents":"12"}`)
			}, wantErr: "body:"},
		{name: "body of another type", typ: event.PaymentCompleted,
			mutate:  func(m *nats.Msg) { m.Data = []byte(`{"order_id":"` + orderID + `","reason":"card_declined"}`) },
			wantErr: "payment_id"},
		{name: "unknown JSON fields ignored", typ: event.PaymentCompleted,
			mutate: func(m *nats.Msg) {
				m.Data = []byte(`{"order_id":"` + orderID + `","payment_id":"p","amount_cents":12,"currency":"EUR","extra":{"a":[1,2]}}`)
			},
			check: func(t *testing.T, e event.Event) {
				p, err := event.Decode[event.PaymentCompletedPayload](e)
				if err != nil || p.AmountCents != 12 || p.PaymentID != "p" {
					t.Errorf("Decode = %+v, %v", p, err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			m := mustNew(t, tt.typ).Msg()
			tt.mutate(m)
			e, err := event.FromMsg(m.Subject, m.Header, m.Data)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				if !sameEvent(e, event.Event{}) {
					t.Errorf("FromMsg returned %+v with its error", e)
				}
				return
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

func TestMalformedJSONIsContractError(t *testing.T) {
	t.Parallel()

	_, err := event.DecodePayload(event.OrderConfirmed, []byte(`{"order_id":`))
	var ce *event.ContractError
	if !errors.As(err, &ce) || ce.Field != "body" {
		t.Fatalf("err = %v, want *ContractError on body", err)
	}
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) {
		t.Errorf("err = %v does not wrap the *json.SyntaxError", err)
	}
	if !errors.Is(err, event.ErrContract) {
		t.Errorf("errors.Is(%v, ErrContract) = false", err)
	}
}

func TestContractErrorMessage(t *testing.T) {
	t.Parallel()

	err := event.ValidOrderID("")
	if got, want := err.Error(), "event: order_id: must be 1-64 chars of [A-Za-z0-9_-]"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var ce *event.ContractError
	if !errors.As(err, &ce) || ce.Field != "order_id" || ce.Problem != "must be 1-64 chars of [A-Za-z0-9_-]" {
		t.Errorf("errors.As = %+v", ce)
	}
	wrapped := fmt.Errorf("handle message: %w", err)
	if !errors.Is(wrapped, event.ErrContract) {
		t.Errorf("wrapped error does not match ErrContract")
	}
	if errors.Is(errors.New("event contract violation"), event.ErrContract) {
		t.Errorf("an unrelated error matches ErrContract")
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()

	e := mustNew(t, event.OrderCreated)
	p, err := event.Decode[event.OrderCreatedPayload](e)
	if err != nil {
		t.Fatal(err)
	}
	if p.CustomerID != "cust-42" || p.TotalCents != itemsTotal || len(p.Items) != 2 {
		t.Errorf("Decode = %+v", p)
	}

	if _, err := event.Decode[event.OrderCancelledPayload](e); !errors.Is(err, event.ErrContract) {
		t.Errorf("Decode to the wrong payload: err = %v, want ErrContract", err)
	}
	if _, err := event.Decode[*event.OrderCreatedPayload](e); !errors.Is(err, event.ErrContract) {
		t.Errorf("Decode to a pointer payload: err = %v, want ErrContract", err)
	}

	other := e
	other.OrderID = "other"
	if _, err := event.Decode[event.OrderCreatedPayload](other); !errors.Is(err, event.ErrContract) {
		t.Errorf("Decode for another order: err = %v, want ErrContract", err)
	}

	bad := e
	bad.Type = "order.shipped"
	if _, err := event.Decode[event.OrderCreatedPayload](bad); !errors.Is(err, event.ErrContract) {
		t.Errorf("Decode of an unknown type: err = %v, want ErrContract", err)
	}
}
