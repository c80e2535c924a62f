package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// The kinds of poison --poison injects, in turn. Each is what an attacker
// with the nats CLI and no credentials could publish.
const (
	// A subject that nearly fills nats-server's 4,096-byte control line,
	// published without a reply subject (as `nats pub` does): a dead letter
	// on a subject built from it would exceed the control line and get the
	// consumer's connection closed for good.
	poisonLongSubject = "long_subject"
	// A message near max_payload: the event streams must refuse it
	// (max_msg_size).
	poisonHuge = "near_max_payload"
	// A 200 KiB body that is not JSON, on an event's subject (its type and
	// an order's shard): stored, and dead-lettered by every consumer that
	// takes its subject.
	poisonGarbage = "garbage_body"
	// A well-formed event — valid headers and body, a fresh order — on the
	// subject of another shard than its order id's: an event's subject names
	// its order's shard, and one that does not breaks the contract, so every
	// consumer that takes it dead-letters it rather than act on it.
	poisonWrongShard = "wrong_shard"
)

var poisonKinds = []string{poisonLongSubject, poisonHuge, poisonGarbage, poisonWrongShard}

// poisonSubjects are the event types poison is published as, in turn: one per
// stream, each taken by two or three consumers.
var poisonSubjects = []event.Type{event.OrderCreated, event.InventoryReserved, event.PaymentFailed}

// poison is one injected message and what became of it.
type poison struct {
	Kind    string
	Subject string // clipped for the report
	Stream  string // where it was stored; empty when it was refused
	Seq     uint64
	Refused string // why the stream refused it (the expected outcome for near_max_payload)
	Err     string // why it could not be injected at all
	// Consumers are the durable consumers whose filters take the subject;
	// Letters, those that dead-lettered it (in DLQ or, when the DLQ publish
	// failed, in their dead_letters table).
	Consumers []string
	Letters   []string
}

// accounted reports whether the poison's fate is known: refused by the
// stream, or dead-lettered by every consumer that takes it.
func (p poison) accounted() bool {
	switch {
	case p.Err != "":
		return false
	case p.Stream == "":
		return p.Refused != ""
	default:
		return len(p.Consumers) > 0 && len(p.Letters) == len(p.Consumers)
	}
}

// fate says in a few words what became of the poison.
func (p poison) fate() string {
	switch {
	case p.Err != "":
		return p.Err
	case p.Stream == "":
		return "refused: " + p.Refused
	case p.Consumers == nil:
		return fmt.Sprintf("stored as %s #%d", p.Stream, p.Seq)
	default:
		return fmt.Sprintf("stored as %s #%d, dead-lettered by %d of %d consumers (%s)", p.Stream, p.Seq,
			len(p.Letters), len(p.Consumers), strings.Join(p.Letters, ", "))
	}
}

// injectPoison publishes the i-th poison message and waits until the stream
// stored it (or refused it), retrying while NATS is down.
func injectPoison(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, i int) poison {
	kind := poisonKinds[i%len(poisonKinds)]
	// Each kind goes to each stream in turn.
	typ := poisonSubjects[(i+i/len(poisonKinds))%len(poisonSubjects)]
	id := uuid.Must(uuid.NewV7()).String()
	p := poison{Kind: kind}
	var subject string
	msg := func() *nats.Msg {
		m := nats.NewMsg(subject)
		m.Header.Set(event.HeaderMsgID, id)
		return m
	}
	deadline := time.Now().Add(time.Minute)
	switch kind {
	case poisonLongSubject:
		// The type and one long token: the stream's subjects and the
		// consumers' filters take it, as they take <type>.<shard>.
		subject = string(typ) + "." + strings.Repeat("L", 4040)
		p.Subject = subject[:40] + "...(" + strconv.Itoa(len(subject)) + " bytes)"
		// A core publish: the control line holds no reply subject. The
		// stream dedups the retries on Nats-Msg-Id.
		for {
			err := nc.PublishMsg(func() *nats.Msg { m := msg(); m.Data = []byte("x"); return m }())
			if err == nil {
				err = nc.FlushTimeout(5 * time.Second)
			}
			if err == nil {
				name := typ.Stream()
				s, serr := js.Stream(ctx, name)
				if serr == nil {
					var sm *jetstream.RawStreamMsg
					if sm, serr = s.GetLastMsgForSubject(ctx, subject); serr == nil {
						p.Stream, p.Seq = name, sm.Sequence
						return p
					}
				}
				err = serr
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				p.Err = fmt.Sprintf("not stored: %v", err)
				return p
			}
			pause(ctx, 250*time.Millisecond)
		}
	case poisonHuge, poisonGarbage, poisonWrongShard:
		subject = event.Subject(typ, "poison-"+strconv.Itoa(i))
		size := 200 << 10
		if kind == poisonHuge {
			size = int(nc.MaxPayload()) - 1024
		}
		body := []byte(strings.Repeat("\xff", size))
		var header nats.Header
		if kind == poisonWrongShard {
			e, err := wellFormed(typ, id)
			if err != nil {
				p.Err = err.Error()
				return p
			}
			subject = string(typ) + "." + otherShard(e.OrderID)
			header, body = e.Header(), e.Body
		}
		p.Subject = subject
		for {
			m := msg()
			m.Data = body
			for k, v := range header {
				m.Header[k] = v
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ack, err := js.PublishMsg(pctx, m)
			cancel()
			var apiErr *jetstream.APIError
			switch {
			case err == nil:
				p.Stream, p.Seq = ack.Stream, ack.Sequence
				return p
			case errors.As(err, &apiErr), errors.Is(err, nats.ErrMaxPayload):
				p.Refused = err.Error()
				return p
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				p.Err = fmt.Sprintf("not stored: %v", err)
				return p
			}
			pause(ctx, 250*time.Millisecond)
		}
	}
	return p
}

// wellFormed returns a valid event of type typ, with event id id, for a new
// order (one nobody placed).
func wellFormed(typ event.Type, id string) (event.Event, error) {
	orderID := uuid.Must(uuid.NewV7()).String()
	items := []event.Item{{SKU: "poison", Qty: 1, UnitPriceCents: 100}}
	var p event.Payload
	cause := uuid.Must(uuid.NewV7()).String()
	switch typ {
	case event.OrderCreated:
		p, cause = event.OrderCreatedPayload{OrderID: orderID, CustomerID: "poison", Items: items, TotalCents: 100}, ""
	case event.InventoryReserved:
		p = event.InventoryReservedPayload{OrderID: orderID, Items: items, TotalCents: 100}
	case event.PaymentFailed:
		p = event.PaymentFailedPayload{OrderID: orderID, Reason: "card_declined", AmountCents: 100}
	default:
		return event.Event{}, fmt.Errorf("no well-formed %s poison", typ)
	}
	e, err := event.New(typ, orderID, cause, p, time.Now())
	if err != nil {
		return event.Event{}, fmt.Errorf("well-formed %s poison: %w", typ, err)
	}
	e.ID = id // the message's Nats-Msg-Id, which dedups the retries
	return e, nil
}

// otherShard returns a shard that is not orderID's.
func otherShard(orderID string) string {
	if event.Shard(orderID) == "000" {
		return "001"
	}
	return "000"
}

// accountPoison fills in, for each stored poison, the durable consumers that
// take its subject and those that dead-lettered it: a DLQ message whose
// Nats-Msg-Id names (consumer, stream, sequence), or a row in a service's
// dead_letters table.
func accountPoison(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, ps []poison) error {
	filters := map[string]map[string][]string{} // stream -> durable -> filters
	for _, p := range ps {
		if p.Stream == "" || filters[p.Stream] != nil {
			continue
		}
		s, err := js.Stream(ctx, p.Stream)
		if err != nil {
			return fmt.Errorf("stream %s: %w", p.Stream, err)
		}
		filters[p.Stream] = map[string][]string{}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			if ci.Config.Durable == "" {
				continue
			}
			f := ci.Config.FilterSubjects
			if ci.Config.FilterSubject != "" {
				f = append(f, ci.Config.FilterSubject)
			}
			filters[p.Stream][ci.Config.Durable] = f
		}
		if err := consumers.Err(); err != nil {
			return fmt.Errorf("list consumers of %s: %w", p.Stream, err)
		}
	}
	dlq, err := js.Stream(ctx, stream.DLQ)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	for i := range ps {
		p := &ps[i]
		if p.Stream == "" {
			continue
		}
		for durable, fs := range filters[p.Stream] {
			if len(fs) > 0 && !anyMatch(ctx, js, p.Stream, p.Seq, fs) {
				continue
			}
			p.Consumers = append(p.Consumers, durable)
			found, err := deadLettered(ctx, pool, dlq, durable, p.Stream, p.Seq)
			if err != nil {
				return err
			}
			if found {
				p.Letters = append(p.Letters, durable)
			}
		}
		slices.Sort(p.Consumers)
		slices.Sort(p.Letters)
	}
	return nil
}

// anyMatch reports whether the message at seq is on a subject one of the
// filters takes, by asking the stream for the next message on each filter.
func anyMatch(ctx context.Context, js jetstream.JetStream, streamName string, seq uint64, filters []string) bool {
	s, err := js.Stream(ctx, streamName)
	if err != nil {
		return false
	}
	for _, f := range filters {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
		if err == nil && m.Sequence == seq {
			return true
		}
	}
	return false
}

// deadLettered looks for the dead letter of (consumer, stream, seq).
func deadLettered(ctx context.Context, pool *pgxpool.Pool, dlq jetstream.Stream, consumer, streamName string, seq uint64) (bool, error) {
	// The dead letter's subject is dlq.<service>.<stream>.<seq>; the
	// service is the consumer's prefix.
	service, _, _ := strings.Cut(consumer, "-")
	m, err := dlq.GetLastMsgForSubject(ctx, consume.DLQSubject(service, streamName, seq))
	if err == nil && m.Header.Get(consume.HeaderDLQConsumer) == consumer {
		return true, nil
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, fmt.Errorf("look up the dead letter of %s #%d: %w", streamName, seq, err)
	}
	for _, schema := range []string{"orders", "inventory", "payment", "readmodel"} {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "dead_letters"}.Sanitize()+`
			WHERE consumer = $1 AND stream = $2 AND stream_seq = $3`, consumer, streamName, int64(seq)).Scan(&n)
		if err != nil {
			return false, fmt.Errorf("look up %s.dead_letters: %w", schema, err)
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

// injected returns the stored poison as check.Options.Injected.
func injected(ps []poison) map[check.StreamMsg]bool {
	m := map[check.StreamMsg]bool{}
	for _, p := range ps {
		if p.Stream != "" {
			m[check.StreamMsg{Stream: p.Stream, Seq: p.Seq}] = true
		}
	}
	return m
}

// pause waits d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
