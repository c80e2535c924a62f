package check

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// delivery checks invariant 4: every outbox is empty; each event id is in
// the event streams once; an order has at most one event of each type; the
// DLQ is empty; no service recorded a dead letter (whether or not the DLQ
// still holds it); no message stays ack-pending past the bound.
func (c *checker) delivery(ctx context.Context, r *Result) error {
	for _, db := range c.dbs.services() {
		if err := c.outbox(ctx, db, r); err != nil {
			return err
		}
	}
	if err := c.streams(ctx, r); err != nil {
		return err
	}
	inDLQ, err := c.deadLetters(ctx, r)
	if err != nil {
		return err
	}
	for _, db := range c.dbs.services() {
		if err := c.deadLetterRecords(ctx, db, inDLQ, r); err != nil {
			return err
		}
	}
	return c.ackPending(ctx, r)
}

// outbox reports the events left in a service's outbox.
func (c *checker) outbox(ctx context.Context, db serviceDB, r *Result) error {
	schema := db.schema
	table := pgx.Identifier{schema, "outbox"}.Sanitize()
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return fmt.Errorf("count %s.outbox: %w", schema, err)
	}
	if n == 0 {
		return nil
	}
	rows, err := db.pool.Query(ctx,
		"SELECT event_type, order_id, event_id::text FROM "+table+" ORDER BY seq LIMIT $1", maxListed)
	if err != nil {
		return fmt.Errorf("read %s.outbox: %w", schema, err)
	}
	var typ, orderID, eventID string
	listed := 0
	_, err = pgx.ForEachRow(rows, []any{&typ, &orderID, &eventID}, func() error {
		listed++
		r.add("order %s: %s.outbox still holds %s (event %s)", orderID, schema, typ, eventID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s.outbox: %w", schema, err)
	}
	if more := n - listed; more > 0 {
		r.add("%s.outbox: %d more unpublished events", schema, more)
		r.Count += more - 1
	}
	return nil
}

// where a message is: its stream (an index into eventStreams) and sequence.
type where struct {
	stream int
	seq    uint64
}

// firstSeqs holds, for one order, the stream sequence of its first event of
// each type, indexed as event.Types(); 0 for none yet.
type firstSeqs [9]uint64

// streams reads every message of the event streams (headers only) and
// reports event ids seen twice and orders with two events of one type.
func (c *checker) streams(ctx context.Context, r *Result) error {
	names := eventStreams()
	types := event.Types()
	byID := map[uuid.UUID]where{}
	if len(types) > len(firstSeqs{}) {
		return fmt.Errorf("check: %d event types, room for %d", len(types), len(firstSeqs{}))
	}
	byOrder := map[string]*firstSeqs{}

	for si, name := range names {
		n, err := scan(ctx, c.js, name, func(msg jetstream.Msg, seq uint64) {
			if c.opt.Injected[StreamMsg{Stream: name, Seq: seq}] {
				return
			}
			subject := msg.Subject()
			at := fmt.Sprintf("%s #%d %s", name, seq, subject) // where, for a violation about one message
			rawID := msg.Headers().Get(event.HeaderMsgID)
			id, err := uuid.Parse(rawID)
			// One violation per message: one without an event id is no
			// event, whatever else it breaks.
			switch {
			case rawID == "":
				r.add("%s: no %s header", at, event.HeaderMsgID)
				return
			case err != nil:
				r.add("%s: %s %q is not a UUID", at, event.HeaderMsgID, clip(rawID))
				return
			default:
				if first, seen := byID[id]; seen {
					r.add("event %s is in the streams twice: %s #%d and %s #%d (%s)", rawID, names[first.stream], first.seq, name, seq, subject)
				} else {
					byID[id] = where{stream: si, seq: seq}
				}
			}

			// The headers name the event's type and order; the subject must
			// be the one they give (<type>.<shard>, or <type>.<order id> for
			// history written before subjects were sharded).
			h := msg.Headers()
			typ, orderID := event.Type(h.Get(event.HeaderType)), h.Get(event.HeaderOrderID)
			ti := slices.Index(types, typ)
			if ti < 0 || typ.Stream() != name || event.ValidOrderID(orderID) != nil || !event.IsSubject(subject, typ, orderID) {
				r.add("%s: not a %s event on its subject <event type>.<shard of the order id> (%s %q, %s %q)", at, name,
					event.HeaderType, clip(string(typ)), event.HeaderOrderID, clip(orderID))
				return
			}
			seqs := byOrder[orderID]
			if seqs == nil {
				seqs = new(firstSeqs)
				byOrder[orderID] = seqs
			}
			if first := seqs[ti]; first != 0 {
				r.add("order %s: %s twice, %s #%d and #%d", orderID, typ, name, first, seq)
				return
			}
			seqs[ti] = seq
		})
		c.rep.Streams[name] = n
		if err != nil {
			return err
		}
	}
	return nil
}

// maxErrorLen bounds the dead-letter error quoted in a violation.
const maxErrorLen = 200

// clip cuts s to maxErrorLen for a violation's text.
func clip(s string) string {
	if len(s) > maxErrorLen {
		return s[:maxErrorLen] + "..."
	}
	return s
}

// deadLetters reports every message of the DLQ stream, and returns the
// message ids (Nats-Msg-Id) it holds.
func (c *checker) deadLetters(ctx context.Context, r *Result) (map[string]bool, error) {
	ids := map[string]bool{}
	n, err := scan(ctx, c.js, stream.DLQ, func(msg jetstream.Msg, seq uint64) {
		h := msg.Headers()
		ids[h.Get(event.HeaderMsgID)] = true
		if c.injected(h.Get(consume.HeaderDLQStream), h.Get(consume.HeaderDLQStreamSeq)) {
			return
		}
		cause := clip(h.Get(consume.HeaderDLQError))
		orig := clip(h.Get(consume.HeaderDLQSubject))
		r.add("dead letter %s #%d %s of %s (consumer %s, event %s): %s", stream.DLQ, seq, msg.Subject(), cmpOr(orig, "?"),
			cmpOr(h.Get(consume.HeaderDLQConsumer), "?"), cmpOr(h.Get(consume.HeaderOriginalMsgID), "?"), cmpOr(cause, "no error given"))
	})
	c.rep.Streams[stream.DLQ] = n
	c.rep.DLQ = n
	return ids, err
}

// deadLetterRecords reports what a service's dead_letters table holds that the
// DLQ stream does not tell: a dead letter that could not be published at
// all (the message was terminated and recorded instead), and one that was
// published but is no longer in DLQ (the stream was purged, or the message
// deleted). Dead letters still in DLQ were reported by deadLetters.
func (c *checker) deadLetterRecords(ctx context.Context, db serviceDB, inDLQ map[string]bool, r *Result) error {
	schema := db.schema
	table := pgx.Identifier{schema, "dead_letters"}.Sanitize()
	rows, err := db.pool.Query(ctx, `
		SELECT consumer, stream, stream_seq, subject, event_id, error, published, publish_error, dlq_msg_id
		FROM `+table+` ORDER BY recorded_at, stream, stream_seq`)
	if err != nil {
		return fmt.Errorf("read %s.dead_letters: %w", schema, err)
	}
	var (
		consumer, streamName, subject, eventID, cause, pubErr, msgID string
		seq                                                          int64
		published                                                    bool
	)
	_, err = pgx.ForEachRow(rows, []any{&consumer, &streamName, &seq, &subject, &eventID, &cause, &published, &pubErr, &msgID}, func() error {
		at := fmt.Sprintf("%s #%d %s (consumer %s, event %s)", streamName, seq, clipped(subject), consumer, cmpOr(eventID, "?"))
		switch {
		case c.opt.Injected[StreamMsg{Stream: streamName, Seq: uint64(seq)}]:
		case !published:
			r.add("dead letter never published, recorded in %s.dead_letters: %s: %s; publish: %s", schema, at, clipped(cause), clipped(pubErr))
		case !inDLQ[msgID]:
			r.add("dead letter recorded in %s.dead_letters is missing from %s (purged?): %s: %s", schema, stream.DLQ, at, clipped(cause))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s.dead_letters: %w", schema, err)
	}
	return nil
}

// injected reports whether a dead letter's Jetsaga-Dlq-Stream and
// Jetsaga-Dlq-Stream-Seq headers name a message of Options.Injected.
func (c *checker) injected(streamName, seq string) bool {
	if len(c.opt.Injected) == 0 {
		return false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	return err == nil && c.opt.Injected[StreamMsg{Stream: streamName, Seq: n}]
}

// DefaultAckPendingBound is how long a message may stay delivered and
// unacknowledged before check reports it.
const DefaultAckPendingBound = 5 * time.Minute

// ackPending reports, per durable consumer of the event streams, the oldest
// message that is delivered but unacknowledged and was stored longer than
// the bound ago: a message no handler finishes and nothing dead-letters. The
// oldest unacknowledged message is the first one past the consumer's ack
// floor that its filter takes.
func (c *checker) ackPending(ctx context.Context, r *Result) error {
	bound := cmp.Or(c.opt.AckPendingBound, DefaultAckPendingBound)
	if bound < 0 {
		return nil
	}
	for _, name := range eventStreams() {
		s, err := c.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			if ci.Config.Durable == "" || ci.NumAckPending == 0 {
				continue
			}
			msg, err := firstUnacked(ctx, s, ci)
			if err != nil {
				return fmt.Errorf("consumer %s on %s: %w", ci.Config.Durable, name, err)
			}
			if msg == nil {
				continue
			}
			if age := time.Since(msg.Time); age > bound {
				r.add("consumer %s on %s: %s #%d %s ack-pending, stored %v ago (bound %v; %d awaiting ack)",
					ci.Config.Durable, name, name, msg.Sequence, clipped(msg.Subject), age.Round(time.Second), bound, ci.NumAckPending)
			}
		}
		if err := consumers.Err(); err != nil {
			return fmt.Errorf("list consumers of %s: %w", name, err)
		}
	}
	return nil
}

// firstUnacked returns the first message past ci's ack floor that its
// filter takes and that it has delivered, or nil.
func firstUnacked(ctx context.Context, s jetstream.Stream, ci *jetstream.ConsumerInfo) (*jetstream.RawStreamMsg, error) {
	filters := ci.Config.FilterSubjects
	if ci.Config.FilterSubject != "" {
		filters = append(filters, ci.Config.FilterSubject)
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	var first *jetstream.RawStreamMsg
	for _, f := range filters {
		msg, err := s.GetMsg(ctx, ci.AckFloor.Stream+1, jetstream.WithGetMsgSubject(f))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("message after %d on %s: %w", ci.AckFloor.Stream, f, err)
		}
		if msg.Sequence <= ci.Delivered.Stream && (first == nil || msg.Sequence < first.Sequence) {
			first = msg
		}
	}
	return first, nil
}

// clipped shortens what a hostile message may have made long.
func clipped(s string) string {
	if len(s) > maxErrorLen {
		return s[:maxErrorLen] + "..."
	}
	return s
}

// scan calls fn with every message of the named stream, headers only, from
// the first to the last one it held when scan began, and returns how many it
// read. A stream that does not exist holds nothing.
func scan(ctx context.Context, js jetstream.JetStream, name string, fn func(msg jetstream.Msg, seq uint64)) (uint64, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", name, err)
	}
	state := s.CachedInfo().State
	if state.Msgs == 0 {
		return 0, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		HeadersOnly:       true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", name, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", name, err)
	}
	defer func() {
		it.Stop()
		deleteOrdered(ctx, js, name, cons)
	}()
	var n uint64
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return n, fmt.Errorf("read stream %s after %d messages: %w", name, n, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return n, fmt.Errorf("read stream %s: %w", name, err)
		}
		n++
		fn(msg, md.Sequence.Stream)
		// NumPending counts what the stream held after this message when
		// it was delivered: 0 is the end, as is the last message scan saw.
		if md.NumPending == 0 || md.Sequence.Stream >= state.LastSeq {
			return n, nil
		}
	}
}

// deleteOrdered removes the ordered consumer's current server-side consumer
// now rather than when its inactivity threshold passes.
func deleteOrdered(ctx context.Context, js jetstream.JetStream, streamName string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, streamName, info.Name) // best effort: the threshold removes it anyway
}
