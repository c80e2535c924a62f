// Package trace reads one order's saga back from JetStream and lays it out as
// the causal chain it was: which event caused which, how long each hop took,
// and how long the whole saga took. It is what `jetsaga trace <order-id>`
// prints.
//
// The events of an order are found by subject and header: its shard's
// subjects ("*.*.<shard>" in ORDERS, INVENTORY and PAYMENTS, see
// event.Shard) hold about 1/event.Shards of the history, and of those the
// messages whose Jetsaga-Order-Id names the order are its events (history
// written before subjects were sharded is on "*.*.<order id>", read too). Its
// dead letters are found by their headers (DLQ). A trace needs nothing but
// NATS: no database, no running service.
//
// What a trace costs is nats-server's, and it is not the shard's share: a
// shard's messages are spread over every block of a stream, so nats-server
// reads every block from where the trace starts. An order id minted by the
// order service is a UUIDv7, which carries the time it was placed, and none
// of its events can be stored before that: the trace starts there (less a
// minute for the clocks of different hosts), so it reads the history stored
// since the order was placed, not all of it — a recent order's trace is
// quick at any length of history, an old one's reads what came after it
// (Options.Within bounds that). An id that is no UUIDv7, or a window without
// the order's order.created (a clock far off), is read from the start.
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

	"github.com/google/uuid"
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
	OrderID     string     // the order the hop belongs to (the one Load was asked for)
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

// Options narrow what LoadWith reads.
type Options struct {
	// Within, when positive, reads only the events stored within this long
	// after the order was placed (the time its UUIDv7 id carries): a quick
	// look at an old order in a long history, which misses what came later
	// (an event republished by a dead letter's replay, days on). It is
	// ignored for an order id that is no UUIDv7. Dead letters are read
	// whole either way.
	Within time.Duration
}

// clockMargin is how much earlier than the time in its id an order's events
// are looked for: the id is minted on the order service's host, the stream's
// timestamps on nats-server's.
const clockMargin = time.Minute

// Load reads the events of the order from the ORDERS, INVENTORY and PAYMENTS
// streams, and its dead letters from DLQ. It drops copies of an event (same
// event id) and returns the events in causal order: a depth-first walk of the
// causation tree from order.created, children by occurrence time, with each
// hop's Depth and Latency set. Events whose cause is not found start trees of
// their own, after the root's; dead letters come last, by sequence.
//
// An order without any event gives no hops and no error.
func Load(ctx context.Context, js jetstream.JetStream, orderID string) ([]Hop, error) {
	return LoadWith(ctx, js, orderID, Options{})
}

// LoadWith is Load with options.
func LoadWith(ctx context.Context, js jetstream.JetStream, orderID string, opt Options) ([]Hop, error) {
	if err := event.ValidOrderID(orderID); err != nil {
		return nil, fmt.Errorf("trace %q: %w", orderID, err)
	}
	// The order's shard, and for history written before subjects were
	// sharded its own id (the two filters must not be equal: an order id
	// may be two hex digits).
	filters := []string{"*.*." + event.Shard(orderID)}
	if orderID != event.Shard(orderID) {
		filters = append(filters, "*.*."+orderID)
	}
	mine := func(subject string, h nats.Header) bool { return belongs(orderID, subject, h) }
	var w window
	if placed, ok := placedAt(orderID); ok {
		w.from = placed.Add(-clockMargin)
		if opt.Within > 0 {
			w.until = placed.Add(opt.Within)
		}
	}
	events, err := readEvents(ctx, js, filters, mine, w)
	if err == nil && !w.from.IsZero() && !slices.ContainsFunc(events, func(h Hop) bool { return h.Type == event.OrderCreated }) {
		// No order.created since the id's time: a clock far off, or an id
		// minted elsewhere. Read from the start.
		events, err = readEvents(ctx, js, filters, mine, window{})
	}
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", orderID, err)
	}
	// A dead letter's subject names the stream message, not the order
	// (dlq.<service>.<stream>.<sequence>): its headers name the order.
	dead, err := read(ctx, js, stream.DLQ, []string{stream.Subject(stream.DLQ)}, func(_ string, h nats.Header) bool {
		return belongs(orderID, h.Get(consume.HeaderDLQSubject), h)
	}, window{})
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", orderID, err)
	}
	hops := Sort(events)
	slices.SortFunc(dead, func(a, b Hop) int { return cmp.Compare(a.Seq, b.Seq) })
	hops = append(hops, dead...)
	for i := range hops {
		hops[i].OrderID = orderID
	}
	return hops, nil
}

// belongs reports whether a message on subject with headers h is about the
// order: its Jetsaga-Order-Id names it or, for a message without one (which
// breaks the contract, and a trace shows), its subject is the order's
// legacy subject "<type>.<order id>". A shard's subjects carry other orders'
// events: the header tells them apart.
func belongs(orderID, subject string, h nats.Header) bool {
	if id := h.Get(event.HeaderOrderID); id != "" {
		return id == orderID
	}
	return subject[strings.LastIndexByte(subject, '.')+1:] == orderID
}

// readEvents reads the messages of the event streams on filters that keep
// accepts, within w.
func readEvents(ctx context.Context, js jetstream.JetStream, filters []string, keep func(string, nats.Header) bool, w window) ([]Hop, error) {
	var events []Hop
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		hops, err := read(ctx, js, name, filters, keep, w)
		if err != nil {
			return nil, err
		}
		events = append(events, hops...)
	}
	return events, nil
}

// placedAt returns the time a UUIDv7 order id was minted.
func placedAt(orderID string) (time.Time, bool) {
	u, err := uuid.Parse(orderID)
	if err != nil || u.Version() != 7 || u.String() != orderID {
		return time.Time{}, false
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec), true
}

// window bounds a read by the messages' stored time: from (zero: the
// stream's first message) until (zero: its last).
type window struct{ from, until time.Time }

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

// read returns the messages of the named stream on subjects matching
// filters (and that keep accepts), stored within w, as hops, in stream order.
// A missing stream holds nothing.
func read(ctx context.Context, js jetstream.JetStream, name string, filters []string, keep func(string, nats.Header) bool, w window) ([]Hop, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, InactiveThreshold: time.Minute}
	if !w.from.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &w.from
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", name, filters, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(500))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", name, filters, err)
	}
	defer func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = js.DeleteConsumer(dctx, name, info.Name) // best effort: the threshold removes it anyway
			cancel()
		}
	}()
	// Nothing on the filters from the window's start: the iterator would
	// wait for a message that never comes.
	if info := cons.CachedInfo(); info == nil || info.NumPending == 0 {
		return nil, nil
	}
	var hops []Hop
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read %s %s after %d messages: %w", name, filters, len(hops), err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("read %s %s: %w", name, filters, err)
		}
		if !w.until.IsZero() && md.Timestamp.After(w.until) {
			return hops, nil
		}
		if keep == nil || keep(msg.Subject(), msg.Headers()) {
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
