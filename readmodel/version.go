package readmodel

import (
	"encoding/json"
	"slices"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// Seen is the version of a view: per saga stream, the sequences (ascending,
// each once) of the messages projected into it. Sequences only ever join it,
// so of two views of one order the one that has seen more covers the other;
// the store never replaces a view by one that does not cover it, and an
// event whose sequence the view has seen is already in it.
type Seen struct {
	Orders    []int64 `json:"ORDERS,omitempty"`
	Inventory []int64 `json:"INVENTORY,omitempty"`
	Payments  []int64 `json:"PAYMENTS,omitempty"`
}

// of returns the sequences of the named stream, nil for another stream.
func (s *Seen) of(name string) *[]int64 {
	switch name {
	case stream.Orders:
		return &s.Orders
	case stream.Inventory:
		return &s.Inventory
	case stream.Payments:
		return &s.Payments
	}
	return nil
}

// Has reports whether the message at seq of the named stream is in the view.
func (s Seen) Has(name string, seq uint64) bool {
	p := s.of(name)
	if p == nil || seq == 0 {
		return false
	}
	_, ok := slices.BinarySearch(*p, int64(seq))
	return ok
}

// add records seq of the named stream; a sequence of no saga stream, or 0,
// is not recorded.
func (s *Seen) add(name string, seq uint64) {
	p := s.of(name)
	if p == nil || seq == 0 {
		return
	}
	if i, ok := slices.BinarySearch(*p, int64(seq)); !ok {
		*p = slices.Insert(*p, i, int64(seq))
	}
}

// Covers reports whether s holds every sequence of o.
func (s Seen) Covers(o Seen) bool {
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		mine := *s.of(name)
		for _, q := range *o.of(name) {
			if _, ok := slices.BinarySearch(mine, q); !ok {
				return false
			}
		}
	}
	return true
}

// union returns the sequences of s and o.
func (s Seen) union(o Seen) Seen {
	var u Seen
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		for _, q := range append(slices.Clone(*s.of(name)), *o.of(name)...) {
			u.add(name, uint64(q))
		}
	}
	return u
}

// Fold returns the view of base's events and events together, where base is
// a stored view whose events are no longer kept (pruned): it stands for them
// by the records its timeline and fields imply (see records). An event base
// has seen already changes nothing. Fold(Project(a), b) equals Project of
// a and b together but for Seen, which is the union of both.
func Fold(base View, events []Recorded) View {
	recs := base.records()
	had := make(map[event.Type]bool, len(recs))
	for _, r := range recs {
		had[r.Type] = true
	}
	terminal := had[event.OrderConfirmed] || had[event.OrderCancelled]
	var skipped []Recorded
	for _, r := range events {
		if base.Seen.Has(r.Stream, r.Seq) {
			continue
		}
		// The base's events were stored before any late one: a late event
		// of a type the view has, or a terminal event contradicting its
		// terminal one, is not the first (see Project).
		if had[r.Type] || (terminal && (r.Type == event.OrderConfirmed || r.Type == event.OrderCancelled)) {
			skipped = append(skipped, r)
			continue
		}
		recs = append(recs, r)
	}
	v := Project(recs)
	v.Seen = v.Seen.union(base.Seen)
	for _, r := range skipped {
		v.Seen.add(r.Stream, r.Seq)
	}
	return v
}

// records returns records that Project turns back into v: one per timeline
// step, with a body carrying what the view took from the event's payload
// (customer, items and total from order.created; the reason from
// order.cancelled). Project reads no other body.
func (v View) records() []Recorded {
	out := make([]Recorded, 0, len(v.Timeline))
	for _, s := range v.Timeline {
		r := Recorded{
			EventID: s.EventID, Type: s.EventType, OrderID: v.OrderID, CausationID: s.CausationID,
			OccurredAt: s.OccurredAt, ProjectedAt: s.ProjectedAt,
		}
		var body any
		switch s.EventType {
		case event.OrderCreated:
			body = event.OrderCreatedPayload{OrderID: v.OrderID, CustomerID: v.CustomerID, Items: v.Items, TotalCents: v.TotalCents}
		case event.OrderCancelled:
			body = event.OrderCancelledPayload{OrderID: v.OrderID, Reason: v.Reason}
		}
		if body != nil {
			r.Body, _ = json.Marshal(body) // plain structs: cannot fail
		}
		out = append(out, r)
	}
	return out
}
