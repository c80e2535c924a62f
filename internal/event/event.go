package event

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Type is an event type. It is also the subject prefix of the event.
type Type string

// The event types of the order saga.
const (
	OrderCreated      Type = "order.created"
	InventoryReserved Type = "inventory.reserved"
	InventoryRejected Type = "inventory.rejected"
	PaymentCompleted  Type = "payment.completed"
	PaymentFailed     Type = "payment.failed"
	InventoryReleased Type = "inventory.released"
	OrderConfirmed    Type = "order.confirmed"
	OrderCancelled    Type = "order.cancelled"
	PaymentRefunded   Type = "payment.refunded"
)

// Types returns every event type, in saga order.
func Types() []Type {
	return []Type{
		OrderCreated,
		InventoryReserved,
		InventoryRejected,
		PaymentCompleted,
		PaymentFailed,
		InventoryReleased,
		OrderConfirmed,
		OrderCancelled,
		PaymentRefunded,
	}
}

// Valid reports whether t is one of [Types].
func (t Type) Valid() bool {
	switch t {
	case OrderCreated, InventoryReserved, InventoryRejected, PaymentCompleted,
		PaymentFailed, InventoryReleased, OrderConfirmed, OrderCancelled, PaymentRefunded:
		return true
	}
	return false
}

// Stream returns the name of the JetStream stream that holds events of type
// t: "ORDERS", "INVENTORY" or "PAYMENTS". It returns "" for an invalid type.
func (t Type) Stream() string {
	if !t.Valid() {
		return ""
	}
	prefix, _, _ := strings.Cut(string(t), ".")
	switch prefix {
	case "order":
		return "ORDERS"
	case "inventory":
		return "INVENTORY"
	case "payment":
		return "PAYMENTS"
	}
	return ""
}

// Header names. Every event message carries the first five.
const (
	HeaderMsgID       = "Nats-Msg-Id"
	HeaderType        = "Jetsaga-Event-Type"
	HeaderOrderID     = "Jetsaga-Order-Id"
	HeaderCausationID = "Jetsaga-Causation-Id"
	HeaderOccurredAt  = "Jetsaga-Occurred-At" // time.RFC3339Nano, UTC

	// HeaderTraceParent and HeaderTraceState are the W3C Trace Context of
	// the span that published the event, spelled as in HTTP. Both are
	// optional: an event without them is valid.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Bounds of a trace context worth carrying on: a version 00 traceparent is
// 55 bytes (later versions may add fields), and W3C caps tracestate at 32
// members, which fit in 512 bytes in practice.
const (
	maxTraceParent = 128
	maxTraceState  = 512
)

// TraceContext is an event's W3C Trace Context, as carried in its
// traceparent and tracestate headers. Zero when the event carries none.
// The event package does not interpret it; internal/telemetry does.
type TraceContext struct {
	Parent string // traceparent
	State  string // tracestate
}

// IsZero reports whether tc carries no trace context.
func (tc TraceContext) IsZero() bool { return tc.Parent == "" }

// Event is one message on the bus: metadata plus the JSON body.
type Event struct {
	ID          string // UUIDv7 string, canonical lowercase form
	Type        Type
	OrderID     string
	CausationID string // "" only for order.created
	OccurredAt  time.Time
	Body        []byte // JSON of the payload struct

	// Trace is the trace context the event travels with (optional, not
	// validated: a malformed one starts a new trace where it is read).
	Trace TraceContext

	// Stream and Seq say where the event was read from: the stream and its
	// sequence in it, taken from the JetStream metadata by the consumer
	// loop. Zero for an event not read from a stream (one being built, or
	// decoded by FromMsg alone). Neither is part of the message.
	Stream string
	Seq    uint64
}

// New builds an event of type t for the order orderID, caused by the event
// with id causationID ("" for order.created, and only for it). It gives the
// event a new UUIDv7 id and encodes payload as the body. The payload must be
// the one for t (e.g. [OrderCreatedPayload] for [OrderCreated]), be valid and
// name the same order. occurredAt is kept in UTC.
func New(t Type, orderID, causationID string, payload Payload, occurredAt time.Time) (Event, error) {
	if v := reflect.ValueOf(payload); !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return Event{}, violation("payload", "must not be nil")
	}
	if !t.Valid() {
		return Event{}, violation("type", "unknown event type %q", t)
	}
	if pt := payload.EventType(); pt != t {
		return Event{}, violation("payload", "%T is the payload of %s, not %s", payload, pt, t)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("event: new id: %w", err)
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return Event{}, fmt.Errorf("event: encode %s payload: %w", t, err)
	}
	e := Event{
		ID:          id.String(),
		Type:        t,
		OrderID:     orderID,
		CausationID: causationID,
		OccurredAt:  occurredAt.UTC(),
		Body:        body,
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Shards is the number of subject shards the order ids are spread over: an
// event's subject is its type and its order's shard (see [Subject]), so a
// stream holds at most (its types × Shards) distinct subjects, however long
// its history.
//
// Why 64 (docs/DESIGN.md, "Subjects: a shard of the order id"): nats-server
// keeps state per distinct subject for the stream's lifetime, so the count
// bounds that memory (9 types × 64 = 576 subjects, against 4 million and
// 688 MB at a million sagas with a subject per order). It must also stay
// small because a filtered consumer that is behind pays for every subject in
// a block on every message it is handed (nats-server matches the block's
// subjects against the filter when they are fewer than the messages left to
// walk): reading a backlog of ORDERS through the three-type filter of
// inventory-orders ran at 3,600 msgs/s with 1,024 shards, 50,000 with 64
// and 195,000 with a subject per order (BenchmarkBacklogByShards in
// internal/stream). And it must not be too small, because one shard, 1/64
// of the history, is what a lookup of one order's events delivers and sifts
// by header. A power of two, so that a shard is exactly two hex digits.
// Changing it moves every subject: it is part of the contract.
const Shards = 64

// Shard returns the subject shard of an order id: the FNV-1a 32-bit hash of
// the id's bytes modulo [Shards], as two lowercase hex digits, "00" to "3f".
// It is a fixed function of the id, the same in every process and version,
// so that anyone can compute where an order's events are:
// Shard("0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d") is "21". The token is always
// a valid subject token and never a valid UUID, so it is never mistaken for
// an order id.
func Shard(orderID string) string {
	const (
		offset32 = 2166136261
		prime32  = 16777619
		hex      = "0123456789abcdef"
	)
	h := uint32(offset32)
	for i := range len(orderID) {
		h ^= uint32(orderID[i])
		h *= prime32
	}
	n := h % Shards
	return string([]byte{hex[n>>4&0xf], hex[n&0xf]})
}

// Subject returns the subject of an event of type t for the order orderID:
// "<type>.<shard of the order id>", e.g. "order.created.21" (see [Shard]).
// The order id itself travels in the Jetsaga-Order-Id header and the body.
// For a subject filter of every event of a type, use [Filter], not
// Subject(t, ">").
func Subject(t Type, orderID string) string {
	return string(t) + "." + Shard(orderID)
}

// LegacySubject returns the subject an event of type t for orderID had before
// subjects were sharded: "<type>.<order id>". Streams written by those
// versions still hold such messages, and [FromMsg] accepts them (a rebuild or
// a dead-letter replay of old history must still read them); nothing
// publishes on them any more.
func LegacySubject(t Type, orderID string) string {
	return string(t) + "." + orderID
}

// IsSubject reports whether subject is one an event of type t for orderID
// may be read from: [Subject] or, for history written before subjects were
// sharded, [LegacySubject].
func IsSubject(subject string, t Type, orderID string) bool {
	return subject == Subject(t, orderID) || subject == LegacySubject(t, orderID)
}

// Filter returns the subject filter that takes every event of type t,
// whatever its shard (and legacy subjects too): "<type>.>", e.g.
// "payment.failed.>". Consumers filter with it.
func Filter(t Type) string {
	return string(t) + ".>"
}

// Subject returns the subject the event is published on.
func (e Event) Subject() string { return Subject(e.Type, e.OrderID) }

// Header returns the event's five headers, and its trace context when it
// has one. The causation header is present but empty for order.created.
func (e Event) Header() nats.Header {
	h := nats.Header{
		HeaderMsgID:       {e.ID},
		HeaderType:        {string(e.Type)},
		HeaderOrderID:     {e.OrderID},
		HeaderCausationID: {e.CausationID},
		HeaderOccurredAt:  {e.OccurredAt.UTC().Format(time.RFC3339Nano)},
	}
	if e.Trace.Parent != "" {
		h[HeaderTraceParent] = []string{e.Trace.Parent}
		if e.Trace.State != "" {
			h[HeaderTraceState] = []string{e.Trace.State}
		}
	}
	return h
}

// Msg returns the message to publish: subject, headers and the body as data.
func (e Event) Msg() *nats.Msg {
	return &nats.Msg{Subject: e.Subject(), Header: e.Header(), Data: e.Body}
}

// Validate checks the event's metadata and that its body decodes to a valid
// payload of its type for the same order.
func (e Event) Validate() error {
	if err := e.validateMeta(); err != nil {
		return err
	}
	return e.validateBody()
}

// validateMeta checks every field but the body.
func (e Event) validateMeta() error {
	if !e.Type.Valid() {
		return violation("type", "unknown event type %q", e.Type)
	}
	if err := validEventID("id", e.ID); err != nil {
		return err
	}
	if err := ValidOrderID(e.OrderID); err != nil {
		return err
	}
	if e.Type == OrderCreated {
		if e.CausationID != "" {
			return violation("causation_id", "must be empty for %s", OrderCreated)
		}
	} else {
		if e.CausationID == "" {
			return violation("causation_id", "required for %s", e.Type)
		}
		if err := validEventID("causation_id", e.CausationID); err != nil {
			return err
		}
	}
	// Year 1 to 9999 in UTC: what RFC 3339 can carry, minus the zero time.
	if at := e.OccurredAt.UTC(); at.IsZero() || at.Year() < 1 || at.Year() > 9999 {
		return violation("occurred_at", "must be set, between years 1 and 9999")
	}
	return nil
}

// validateBody checks that the body is a valid payload of the event's type
// for the event's order.
func (e Event) validateBody() error {
	p, err := DecodePayload(e.Type, e.Body)
	if err != nil {
		return err
	}
	if got := p.GetOrderID(); got != e.OrderID {
		return violation("order_id", "body has %q, event has %q", got, e.OrderID)
	}
	return nil
}

// FromMsg rebuilds an event from a received message's subject, headers and
// data, and validates it: every required header is present, the type is
// known, the ids are canonical UUIDs, the order id is one subject token, the
// occurrence time parses, the subject is Subject(type, order id) (or, for
// history written before subjects were sharded, LegacySubject(type, order
// id): see [IsSubject]), and the body decodes to a valid payload for the same
// order. The event's Body is data itself, not a copy.
func FromMsg(subject string, h nats.Header, data []byte) (Event, error) {
	var e Event
	var err error
	if e.ID, err = header(h, HeaderMsgID, true); err != nil {
		return Event{}, err
	}
	var typ string
	if typ, err = header(h, HeaderType, true); err != nil {
		return Event{}, err
	}
	e.Type = Type(typ)
	if !e.Type.Valid() {
		return Event{}, violation(HeaderType, "unknown event type %q", typ)
	}
	if e.OrderID, err = header(h, HeaderOrderID, true); err != nil {
		return Event{}, err
	}
	if e.CausationID, err = header(h, HeaderCausationID, e.Type != OrderCreated); err != nil {
		return Event{}, err
	}
	at, err := header(h, HeaderOccurredAt, true)
	if err != nil {
		return Event{}, err
	}
	occurredAt, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return Event{}, &ContractError{Field: HeaderOccurredAt, Problem: "must be RFC 3339 time", err: err}
	}
	e.OccurredAt = occurredAt.UTC()
	if err := e.validateMeta(); err != nil {
		return Event{}, err
	}
	if !IsSubject(subject, e.Type, e.OrderID) {
		return Event{}, violation("subject", "%q does not match type and order id, want %q", subject, e.Subject())
	}
	e.Body = data
	if err := e.validateBody(); err != nil {
		return Event{}, err
	}
	e.Trace = traceContext(h)
	return e, nil
}

// traceContext returns the trace context h carries. It is optional and never
// a contract violation: a header given more than once (W3C: ignore it), or
// longer than a trace context can be, is left behind, and the event travels
// on without it.
func traceContext(h nats.Header) TraceContext {
	tp := h[HeaderTraceParent]
	if len(tp) != 1 || len(tp[0]) > maxTraceParent {
		return TraceContext{}
	}
	tc := TraceContext{Parent: tp[0]}
	if ts := h[HeaderTraceState]; len(ts) == 1 && len(ts[0]) <= maxTraceState {
		tc.State = ts[0]
	}
	return tc
}

// header returns the single value of header key. A header given more than
// once is a violation; so is a missing or empty one when required.
func header(h nats.Header, key string, required bool) (string, error) {
	switch vs := h[key]; {
	case len(vs) > 1:
		return "", violation(key, "header given %d times", len(vs))
	case len(vs) == 0 || vs[0] == "":
		if required {
			return "", violation(key, "missing header")
		}
		return "", nil
	default:
		return vs[0], nil
	}
}

// validEventID checks that id is a non-nil UUID in canonical lowercase form,
// so that one event has one spelling as a dedup and idempotency key.
func validEventID(field, id string) error {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id || u == uuid.Nil {
		return violation(field, "must be a UUID in canonical lowercase form, got %q", id)
	}
	return nil
}

// ValidOrderID checks that id can be an order id: 1 to 64 bytes of
// [A-Za-z0-9_-], so that it is a single NATS subject token.
func ValidOrderID(id string) error {
	if !validToken(id) {
		return violation("order_id", "must be 1-64 chars of [A-Za-z0-9_-]")
	}
	return nil
}

// validToken reports whether s is 1 to 64 bytes of [A-Za-z0-9_-].
func validToken(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
