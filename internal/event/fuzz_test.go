package event_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/internal/event"
)

// FuzzFromMsg checks that FromMsg never panics, that every error it returns
// is a contract violation, and that an event it accepts survives Msg and
// FromMsg unchanged.
func FuzzFromMsg(f *testing.F) {
	// An empty header value stands for a missing header.
	add := func(subject string, h nats.Header, data []byte) {
		f.Add(subject, h.Get(event.HeaderMsgID), h.Get(event.HeaderType), h.Get(event.HeaderOrderID),
			h.Get(event.HeaderCausationID), h.Get(event.HeaderOccurredAt), data)
	}
	for _, typ := range event.Types() {
		m := mustNew(f, typ).Msg()
		add(m.Subject, m.Header, m.Data)
	}
	m := mustNew(f, event.OrderCreated).Msg()
	add("", nil, nil)
	add(m.Subject, m.Header, []byte("{"))
	add(m.Subject, m.Header, []byte("null"))
	add(m.Subject, m.Header, []byte(`{"order_id":"`+orderID+`","items":[{"qty":1e400}]}`))
	add(m.Subject, m.Header, []byte(`{"order_id":"`+orderID+`","customer_id":"c","items":[{"sku":"s","qty":1,"unit_price_cents":9223372036854775807}],"total_cents":9223372036854775807}`))
	add(event.LegacySubject(event.OrderCreated, orderID), m.Header, m.Data)
	add("order.created.000", m.Header, m.Data)
	add("order.created.*", m.Header, m.Data)
	add("order.created.>", m.Header, m.Data)
	m.Header.Set(event.HeaderOccurredAt, "9999-12-31T23:59:59.999999999-01:00")
	add(m.Subject, m.Header, m.Data)
	m.Header.Set(event.HeaderOccurredAt, "2025-01-01T00:00:00+14:00")
	add(m.Subject, m.Header, m.Data)
	m.Header.Set(event.HeaderMsgID, "urn:uuid:"+m.Header.Get(event.HeaderMsgID))
	add(m.Subject, m.Header, m.Data)

	f.Fuzz(func(t *testing.T, subject, id, typ, orderID, causation, occurredAt string, data []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{
			event.HeaderMsgID:       id,
			event.HeaderType:        typ,
			event.HeaderOrderID:     orderID,
			event.HeaderCausationID: causation,
			event.HeaderOccurredAt:  occurredAt,
		} {
			if v != "" {
				h.Set(k, v)
			}
		}

		e, err := event.FromMsg(subject, h, data)
		if err != nil {
			if !errors.Is(err, event.ErrContract) {
				t.Fatalf("FromMsg error %v is not ErrContract", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("FromMsg accepted an event that Validate rejects: %v", err)
		}

		m := e.Msg()
		again, err := event.FromMsg(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatalf("FromMsg(e.Msg()): %v\nevent: %+v", err, e)
		}
		if !sameEvent(again, e) {
			t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", again, e)
		}
	})
}
