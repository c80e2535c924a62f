package dlq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// Entry is one dead letter, as its headers describe it.
type Entry struct {
	Seq        uint64    `json:"seq"`  // its sequence in DLQ
	Time       time.Time `json:"time"` // when it was dead-lettered
	Service    string    `json:"service"`
	Consumer   string    `json:"consumer"`   // the durable consumer that gave up on it
	Stream     string    `json:"stream"`     // where the message was stored
	StreamSeq  uint64    `json:"stream_seq"` // and at which sequence
	Subject    string    `json:"subject"`    // the message's subject
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	OrderID    string    `json:"order_id"`
	Deliveries uint64    `json:"deliveries"`
	Error      string    `json:"error"`
	BodySize   int       `json:"body_size"`           // of the original body
	BodySHA256 string    `json:"body_sha256"`         // of the original body
	Truncated  []string  `json:"truncated,omitempty"` // what the dead letter holds only part of: subject, headers, body
}

// Errors of an entry that cannot be replayed.
var (
	// ErrTruncated: the dead letter holds only part of the message (its
	// subject, headers or body were cut to fit the DLQ).
	ErrTruncated = errors.New("truncated: the dead letter holds only part of the message")
	// ErrNotReplayable: the dead letter does not say which consumer to
	// replay it to.
	ErrNotReplayable = errors.New("not replayable")
	// ErrNotFound: no dead letter at that sequence.
	ErrNotFound = errors.New("no such dead letter")
)

// entryOf reads a dead letter's headers.
func entryOf(seq uint64, at time.Time, subject string, h nats.Header) Entry {
	e := Entry{
		Seq: seq, Time: at.UTC(),
		Consumer:  h.Get(consume.HeaderDLQConsumer),
		Stream:    h.Get(consume.HeaderDLQStream),
		Subject:   h.Get(consume.HeaderDLQSubject),
		EventID:   h.Get(consume.HeaderOriginalMsgID),
		EventType: h.Get(event.HeaderType),
		OrderID:   h.Get(event.HeaderOrderID),
		Error:     h.Get(consume.HeaderDLQError),
	}
	if tokens := strings.Split(subject, "."); len(tokens) == 4 && tokens[0] == "dlq" {
		e.Service = tokens[1]
	}
	e.StreamSeq, _ = strconv.ParseUint(h.Get(consume.HeaderDLQStreamSeq), 10, 64)
	e.Deliveries, _ = strconv.ParseUint(h.Get(consume.HeaderDLQDeliveries), 10, 64)
	e.BodySize, _ = strconv.Atoi(h.Get(consume.HeaderDLQBodySize))
	e.BodySHA256 = h.Get(consume.HeaderDLQBodySHA256)
	if tr := h.Get(consume.HeaderDLQTruncated); tr != "" {
		e.Truncated = strings.Split(tr, ",")
	}
	return e
}

// Replayable reports why e cannot be replayed, or nil.
func (e Entry) Replayable() error {
	switch {
	case len(e.Truncated) > 0:
		return fmt.Errorf("%w (%s)", ErrTruncated, strings.Join(e.Truncated, ", "))
	case e.Service == "" || e.Consumer == "":
		return fmt.Errorf("%w: no service or consumer named", ErrNotReplayable)
	case e.Stream == stream.Replay:
		return fmt.Errorf("%w: a replay that named no consumer of %s", ErrNotReplayable, e.Service)
	case e.Subject == "" || e.Stream == "" || e.StreamSeq == 0:
		return fmt.Errorf("%w: the original subject, stream or sequence is missing", ErrNotReplayable)
	}
	return nil
}

// filter is the DLQ subject filter of service ("" for every service).
func filter(service string) string {
	if service == "" {
		return stream.Subject(stream.DLQ)
	}
	return "dlq." + service + ".>"
}

// List returns the dead letters of service ("" for all), oldest first,
// reading their headers only (an ordered consumer, headers only), so it is
// cheap however large the bodies.
func List(ctx context.Context, js jetstream.JetStream, service string) ([]Entry, error) {
	var out []Entry
	_, err := scan(ctx, js, service, func(e Entry) { out = append(out, e) })
	return out, err
}

// scan calls fn for each dead letter of service and returns the last
// sequence it read.
func scan(ctx context.Context, js jetstream.JetStream, service string, fn func(Entry)) (uint64, error) {
	s, err := js.Stream(ctx, stream.DLQ)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	subj := filter(service)
	last, err := s.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last dead letter on %s: %w", subj, err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj}, HeadersOnly: true, InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stream.DLQ, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stream.DLQ, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", stream.DLQ, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", stream.DLQ, err)
		}
		if md.Sequence.Stream > last.Sequence {
			return last.Sequence, nil
		}
		fn(entryOf(md.Sequence.Stream, md.Timestamp, msg.Subject(), msg.Headers()))
		if md.NumPending == 0 || md.Sequence.Stream >= last.Sequence {
			return last.Sequence, nil
		}
	}
}

// Message is one dead letter whole: its entry, its headers and its body.
type Message struct {
	Entry
	Header nats.Header
	Body   []byte
}

// Get returns the dead letter at seq.
func Get(ctx context.Context, js jetstream.JetStream, seq uint64) (Message, error) {
	s, err := js.Stream(ctx, stream.DLQ)
	if err != nil {
		return Message{}, fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	return get(ctx, s, seq)
}

func get(ctx context.Context, s jetstream.Stream, seq uint64) (Message, error) {
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Message{}, fmt.Errorf("%s #%d: %w", stream.DLQ, seq, ErrNotFound)
	}
	if err != nil {
		return Message{}, fmt.Errorf("get %s #%d: %w", stream.DLQ, seq, err)
	}
	return Message{Entry: entryOf(raw.Sequence, raw.Time, raw.Subject, raw.Header), Header: raw.Header, Body: raw.Data}, nil
}

// replayable checks m's entry, then that its body is the original one.
func (m Message) replayable() error {
	if err := m.Entry.Replayable(); err != nil {
		return err
	}
	sum := sha256.Sum256(m.Body)
	if m.BodySHA256 != "" && hex.EncodeToString(sum[:]) != m.BodySHA256 {
		return fmt.Errorf("%w (body: %d bytes do not match the original's SHA-256)", ErrTruncated, len(m.Body))
	}
	return nil
}

// replayMsg builds the replay of m for REPLAY: the original headers and
// body, the event id in Jetsaga-Original-Msg-Id, Nats-Msg-Id the replay's
// own id, and the Jetsaga-Replay-* headers naming the consumer and where
// the event was.
func (m Message) replayMsg() *nats.Msg {
	msg := nats.NewMsg(consume.ReplaySubject(m.Service, m.Consumer, m.Seq))
	for k, vs := range m.Header {
		if strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "Jetsaga-Dlq-") || strings.HasPrefix(k, "Jetsaga-Replay-") {
			continue
		}
		msg.Header[k] = vs
	}
	msg.Header.Set(event.HeaderMsgID, consume.ReplayMsgID(m.Seq))
	msg.Header.Set(consume.HeaderReplayConsumer, m.Consumer)
	msg.Header.Set(consume.HeaderReplaySubject, m.Subject)
	msg.Header.Set(consume.HeaderReplayStream, m.Stream)
	msg.Header.Set(consume.HeaderReplayStreamSeq, strconv.FormatUint(m.StreamSeq, 10))
	msg.Header.Set(consume.HeaderReplayDLQSeq, strconv.FormatUint(m.Seq, 10))
	msg.Data = m.Body
	return msg
}
