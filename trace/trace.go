// Package trace reads one order's saga back from JetStream and lays it out as
// the causal chain it was: which event caused which, how long each hop took,
// and how long the whole saga took. It is what `jetsaga trace <order-id>`
// prints.
//
// The events of an order are found by subject ("*.*.<order id>" in ORDERS,
// INVENTORY and PAYMENTS) and its dead letters by their headers (DLQ), so a
// trace needs nothing but NATS: no database, no running service.
package trace

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// Hop is one event of a saga, or one dead letter about it.
type Hop struct {
	Seq         uint64 // stream sequence
	Stream      string // ORDERS, INVENTORY, PAYMENTS, or DLQ for a dead letter
	Subject     string
	Type        event.Type // for a dead letter: the type of the event that was dead-lettered
	EventID     string     // for a dead letter: the dead-lettered event's id
	CausationID string
	OccurredAt  time.Time     // zero when the header is missing or malformed
	Latency     time.Duration // since its cause's OccurredAt; 0 for the root and when the cause is not found
	Body        json.RawMessage

	// Depth is the hop's place in the causal tree: 0 for the root (and for
	// an event whose cause is not among the order's events), 1 for what the
	// root caused, and so on.
	Depth int
	// DeadLetter is, for a message of the DLQ stream, the error it was
	// dead-lettered with (header Jetsaga-Dlq-Error); "" for an event.
	DeadLetter string
	// Consumer is, for a dead letter, the consumer that gave up on it.
	Consumer string
}

// Load reads the events of the order from the ORDERS, INVENTORY and PAYMENTS
// streams, and its dead letters from DLQ. It drops copies of an event (same
// event id) and returns the events in causal order: a depth-first walk of the
// causation tree from order.created, children by occurrence time, with each
// hop's Depth and Latency set. Events whose cause is not found start trees of
// their own, after the root's; dead letters come last, by sequence.
//
// An order without any event gives no hops and no error.
func Load(ctx context.Context, js jetstream.JetStream, orderID string) ([]Hop, error) {
	if err := event.ValidOrderID(orderID); err != nil {
		return nil, fmt.Errorf("trace %q: %w", orderID, err)
	}
	var events []Hop
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		hops, err := read(ctx, js, name, "*.*."+orderID, nil)
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", orderID, err)
		}
		events = append(events, hops...)
	}
	// A dead letter's subject names the stream message, not the order
	// (dlq.<service>.<stream>.<sequence>): its headers name the order.
	dead, err := read(ctx, js, stream.DLQ, stream.Subject(stream.DLQ), func(h nats.Header) bool {
		return h.Get(event.HeaderOrderID) == orderID || strings.HasSuffix(h.Get(consume.HeaderDLQSubject), "."+orderID)
	})
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", orderID, err)
	}
	hops := Sort(events)
	slices.SortFunc(dead, func(a, b Hop) int { return cmp.Compare(a.Seq, b.Seq) })
	return append(hops, dead...), nil
}

// Sort drops copies of an event (the first by stream sequence is kept) and
// sorts the events causally, setting Depth and Latency, as Load does. It is
// exported for tools that have the events from elsewhere.
func Sort(events []Hop) []Hop {
	// The first copy of each event id, in stream order.
	slices.SortStableFunc(events, func(a, b Hop) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.Stream, b.Stream))
	})
	byID := make(map[string]int, len(events))
	unique := events[:0:0]
	for _, h := range events {
		if h.EventID != "" {
			if _, dup := byID[h.EventID]; dup {
				continue
			}
			byID[h.EventID] = len(unique)
		}
		unique = append(unique, h)
	}

	children := map[string][]int{}
	var roots []int
	for i, h := range unique {
		if _, ok := byID[h.CausationID]; ok && h.CausationID != "" && h.CausationID != h.EventID {
			children[h.CausationID] = append(children[h.CausationID], i)
		} else {
			roots = append(roots, i)
		}
	}
	byTime := func(a, b int) int {
		ha, hb := unique[a], unique[b]
		return cmp.Or(
			// order.created first among roots: the saga's true root.
			boolCmp(ha.Type != event.OrderCreated, hb.Type != event.OrderCreated),
			ha.OccurredAt.Compare(hb.OccurredAt),
			cmp.Compare(ha.Stream, hb.Stream),
			cmp.Compare(ha.Seq, hb.Seq),
		)
	}
	slices.SortFunc(roots, byTime)
	for _, kids := range children {
		slices.SortFunc(kids, byTime)
	}

	out := make([]Hop, 0, len(unique))
	visited := make([]bool, len(unique))
	var walk func(i, depth int, cause *Hop)
	walk = func(i, depth int, cause *Hop) {
		if visited[i] { // a causation cycle: impossible with fresh ids, but never loop
			return
		}
		visited[i] = true
		h := unique[i]
		h.Depth = depth
		h.Latency = 0
		if cause != nil && !h.OccurredAt.IsZero() && !cause.OccurredAt.IsZero() {
			h.Latency = h.OccurredAt.Sub(cause.OccurredAt)
		}
		out = append(out, h)
		if h.EventID == "" {
			return
		}
		for _, k := range children[h.EventID] {
			walk(k, depth+1, &h)
		}
	}
	for _, r := range roots {
		walk(r, 0, nil)
	}
	// Whatever a cycle left unvisited, as roots of their own.
	for i := range unique {
		if !visited[i] {
			walk(i, 0, nil)
		}
	}
	return out
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

// read returns every message of the named stream on subjects matching
// filter (and whose headers keep accepts, when keep is not nil), as hops, in
// stream order. A missing stream holds nothing.
func read(ctx context.Context, js jetstream.JetStream, name, filter string, keep func(nats.Header) bool) ([]Hop, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("stream %s subjects %s: %w", name, filter, err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	if want == 0 {
		return nil, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{filter},
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", name, filter, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(int(min(want, 500))))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", name, filter, err)
	}
	defer func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = js.DeleteConsumer(dctx, name, info.Name) // best effort: the threshold removes it anyway
			cancel()
		}
	}()
	var hops []Hop
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read %s %s after %d messages: %w", name, filter, len(hops), err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("read %s %s: %w", name, filter, err)
		}
		if keep == nil || keep(msg.Headers()) {
			hops = append(hops, hop(name, md.Sequence.Stream, msg))
		}
		if md.NumPending == 0 {
			return hops, nil
		}
	}
}

// hop reads a message's headers leniently: a trace shows what is there,
// even a message that breaks the contract.
func hop(streamName string, seq uint64, msg jetstream.Msg) Hop {
	h := msg.Headers()
	hp := Hop{
		Seq:         seq,
		Stream:      streamName,
		Subject:     msg.Subject(),
		Type:        event.Type(h.Get(event.HeaderType)),
		EventID:     h.Get(event.HeaderMsgID),
		CausationID: h.Get(event.HeaderCausationID),
		Body:        json.RawMessage(slices.Clone(msg.Data())),
	}
	if at, err := time.Parse(time.RFC3339Nano, h.Get(event.HeaderOccurredAt)); err == nil {
		hp.OccurredAt = at.UTC()
	}
	if streamName == stream.DLQ {
		hp.EventID = h.Get(consume.HeaderOriginalMsgID)
		hp.DeadLetter = h.Get(consume.HeaderDLQError)
		hp.Consumer = h.Get(consume.HeaderDLQConsumer)
	}
	return hp
}
