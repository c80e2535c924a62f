package readmodel

import (
	"cmp"
	"slices"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Status is an order's status in the read model. It mirrors the order
// service's: CONFIRMED only once order.confirmed is seen, CANCELLED only once
// order.cancelled is.
type Status string

// The statuses of an order view.
const (
	Pending   Status = "PENDING"
	Reserved  Status = "RESERVED"
	Confirmed Status = "CONFIRMED"
	Cancelled Status = "CANCELLED"
)

// Statuses returns every status, in saga order.
func Statuses() []Status { return []Status{Pending, Reserved, Confirmed, Cancelled} }

// Valid reports whether s is one of [Statuses].
func (s Status) Valid() bool { return slices.Contains(Statuses(), s) }

// Terminal reports whether s is CONFIRMED or CANCELLED: no later event
// changes it.
func (s Status) Terminal() bool { return s == Confirmed || s == Cancelled }

// Recorded is one event as the read model stored it: the event's metadata and
// body plus when the read model first projected it.
type Recorded struct {
	EventID     string
	Type        event.Type
	OrderID     string
	CausationID string
	OccurredAt  time.Time
	ProjectedAt time.Time
	Body        []byte // JSON payload of Type
	// Stream and Seq are where the event was read: its stream and its
	// sequence there ("" and 0 when unknown, e.g. a dead letter replayed
	// from another stream).
	Stream string
	Seq    uint64
}

// Step is one entry of an order's timeline.
type Step struct {
	EventID     string     `json:"event_id"`
	EventType   event.Type `json:"event_type"`
	CausationID string     `json:"causation_id,omitempty"` // the event that caused it ("" for order.created)
	OccurredAt  time.Time  `json:"occurred_at"`
	ProjectedAt time.Time  `json:"projected_at"`
	LagMS       float64    `json:"lag_ms"` // ProjectedAt - OccurredAt
}

// View is the read model's picture of one order, computed by [Project].
type View struct {
	OrderID    string       `json:"order_id"`
	CustomerID string       `json:"customer_id"` // "" until order.created is seen
	Items      []event.Item `json:"items"`       // never nil
	TotalCents int64        `json:"total_cents"`
	Status     Status       `json:"status"`
	Reason     string       `json:"reason"` // from order.cancelled
	// Version counts the distinct saga events projected: one per event
	// type, so a re-emitted event (same order and type, new id) counts once.
	Version int `json:"version"`
	// Timeline holds those events in causal order: each after its cause,
	// otherwise by occurrence time (causalOrder). Never nil.
	Timeline       []Step    `json:"timeline"`
	LastOccurredAt time.Time `json:"last_occurred_at"`
	// LagMS is the lag of the event projected last (the one with the latest
	// ProjectedAt among the timeline's).
	LagMS float64 `json:"lag_ms"`
	// Seen is the view's version: the stream sequences of every event
	// projected into it, so that a replayed event is known as one and a view
	// is never overwritten by one that has seen less (see [Seen]).
	Seen Seen `json:"seen"`
}

// stepRank is each saga event type's step: the types the read model
// projects, and a tie-breaker for events that occurred at the same instant
// (a cause has a lower step than its effect in every saga but a timeout's,
// which causation orders; see causalOrder).
var stepRank = map[event.Type]int{
	event.OrderCreated:      0,
	event.InventoryReserved: 1,
	event.InventoryRejected: 1,
	event.PaymentCompleted:  2,
	event.PaymentFailed:     2,
	event.InventoryReleased: 3,
	event.OrderConfirmed:    3,
	event.OrderCancelled:    4,
	event.PaymentRefunded:   5,
}

// Project computes the view of one order from all of its recorded events.
// It depends only on the set of events, not on their order, and is
// idempotent: an event given twice, or re-emitted with a new id for the same
// order and type, counts once (the first: see first). Events of unknown
// types are ignored; a body that does not decode leaves the fields it would
// have set at their zero values.
//
// Status: CANCELLED once order.cancelled is seen (reason from its payload),
// else CONFIRMED once order.confirmed is seen, else RESERVED once
// inventory.reserved is seen, else PENDING. Customer, items and total come
// from order.created.
//
// A terminal view is not flipped by a later contradicting terminal event:
// the order service publishes one of order.confirmed and order.cancelled per
// order, never both, so when both are there the one first in the ORDERS
// stream is the order's and the other a forgery (or a bug); it is left out
// of the view and its timeline. Likewise a second order.created (an
// old-dated copy) does not replace the first one's customer, items and
// total.
func Project(events []Recorded) View {
	kept := map[event.Type]Recorded{}
	for _, r := range events {
		if _, ok := stepRank[r.Type]; !ok {
			continue
		}
		if prev, ok := kept[r.Type]; !ok || first(r, prev) {
			kept[r.Type] = r
		}
	}
	if c, ok := kept[event.OrderConfirmed]; ok {
		if x, ok := kept[event.OrderCancelled]; ok {
			if first(c, x) {
				delete(kept, event.OrderCancelled)
			} else {
				delete(kept, event.OrderConfirmed)
			}
		}
	}
	chosen := make([]Recorded, 0, len(kept))
	for _, r := range kept {
		chosen = append(chosen, r)
	}
	chosen = causalOrder(chosen)

	v := View{Items: []event.Item{}, Status: Pending, Version: len(chosen), Timeline: make([]Step, 0, len(chosen))}
	var latest Step
	for i, r := range chosen {
		if i == 0 {
			v.OrderID = r.OrderID
		}
		s := Step{
			EventID:     r.EventID,
			EventType:   r.Type,
			CausationID: r.CausationID,
			OccurredAt:  r.OccurredAt.UTC(),
			ProjectedAt: r.ProjectedAt.UTC(),
			LagMS:       lagMS(r.ProjectedAt, r.OccurredAt),
		}
		v.Timeline = append(v.Timeline, s)
		if s.OccurredAt.After(v.LastOccurredAt) {
			v.LastOccurredAt = s.OccurredAt
		}
		// Later in causal order wins a tie, so the result is still a
		// function of the set.
		if i == 0 || !s.ProjectedAt.Before(latest.ProjectedAt) {
			latest = s
		}
	}
	v.LagMS = latest.LagMS
	for _, r := range events {
		v.Seen.add(r.Stream, r.Seq)
	}

	if r, ok := kept[event.OrderCreated]; ok {
		if p, err := event.DecodePayload(r.Type, r.Body); err == nil {
			c := p.(event.OrderCreatedPayload)
			v.CustomerID = c.CustomerID
			v.Items = append(v.Items, c.Items...)
			v.TotalCents = c.TotalCents
		}
	}
	switch {
	case has(kept, event.OrderCancelled):
		v.Status = Cancelled
		if p, err := event.DecodePayload(event.OrderCancelled, kept[event.OrderCancelled].Body); err == nil {
			v.Reason = p.(event.OrderCancelledPayload).Reason
		}
	case has(kept, event.OrderConfirmed):
		v.Status = Confirmed
	case has(kept, event.InventoryReserved):
		v.Status = Reserved
	}
	return v
}

func has(kept map[event.Type]Recorded, t event.Type) bool {
	_, ok := kept[t]
	return ok
}

// first reports whether a is kept over b when both are of one order (and
// type, or both terminal): the one first in its stream when both were read
// from the same stream (the order the bus stored them in, which no header
// can change), else the earlier occurrence, then the smaller id.
func first(a, b Recorded) bool {
	if a.Stream != "" && a.Stream == b.Stream && a.Seq > 0 && b.Seq > 0 && a.Seq != b.Seq {
		return a.Seq < b.Seq
	}
	return before(a, b)
}

// before reports whether a occurred before b: the earlier occurrence, then
// the smaller id.
func before(a, b Recorded) bool {
	if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
		return c < 0
	}
	return a.EventID < b.EventID
}

// causalOrder returns rs so that every event comes after the event that
// caused it, when that one is among rs, and otherwise in occurrence order
// (then saga step, then id). After a timeout the saga's steps interleave: an
// order.cancelled caused by order.created can come between
// payment.completed and the inventory.released and payment.refunded it
// causes; this order shows that as it happened. It depends only on the set
// (a causation cycle, which only forged events can make, is broken in
// occurrence order).
func causalOrder(rs []Recorded) []Recorded {
	slices.SortFunc(rs, func(a, b Recorded) int {
		return cmp.Or(
			a.OccurredAt.Compare(b.OccurredAt),
			cmp.Compare(stepRank[a.Type], stepRank[b.Type]),
			cmp.Compare(a.EventID, b.EventID),
		)
	})
	present := make(map[string]bool, len(rs))
	for _, r := range rs {
		present[r.EventID] = true
	}
	out := make([]Recorded, 0, len(rs))
	taken := make([]bool, len(rs))
	placed := make(map[string]bool, len(rs)) // event ids in out
	for len(out) < len(rs) {
		next := -1
		for i, r := range rs {
			if taken[i] {
				continue
			}
			if next < 0 {
				next = i // the earliest left: taken if nothing is ready (a cycle)
			}
			if r.CausationID == "" || !present[r.CausationID] || placed[r.CausationID] {
				next = i
				break
			}
		}
		taken[next], placed[rs[next].EventID] = true, true
		out = append(out, rs[next])
	}
	return out
}

// lagMS returns projected - occurred in milliseconds.
func lagMS(projected, occurred time.Time) float64 {
	return float64(projected.Sub(occurred)) / float64(time.Millisecond)
}
