// Package event is jetsaga's event contract: the types of event the services
// exchange, how each one travels on NATS JetStream, and the JSON body it
// carries. Every service encodes and decodes events through this package, so
// a message that passes [FromMsg] is one every consumer can act on, and one
// that fails it is a poison message for the dead-letter queue.
//
// # Subjects and streams
//
// The subject of an event is its type followed by the shard of its order
// (saga) id, for example "order.created.21": the shard is a fixed function of
// the order id, two hex digits (see [Shard]), so that a stream holds at most
// its types × [Shards] distinct subjects whatever its history, and the order
// id itself travels in the Jetsaga-Order-Id header and in the body. The first
// token names the stream that holds it: order.* events live in ORDERS,
// inventory.* in INVENTORY and payment.* in PAYMENTS (see [Type.Stream]).
// Consumers take every event of a type with [Filter] ("payment.failed.>").
// One order's events are among those on its shard's subjects
// ("*.*.<shard>"), the only ones there whose Jetsaga-Order-Id names it.
//
// Before subjects were sharded, an event's subject was its type followed by
// the order id ([LegacySubject]); [FromMsg] still accepts that form, so that
// history written then can be read again. An order id is a single subject
// token: 1 to 64 characters of [A-Za-z0-9_-] (see [ValidOrderID]).
//
// # Headers
//
// Every message carries five headers:
//
//	Nats-Msg-Id           the event id, a UUIDv7 in canonical form; JetStream's
//	                      dedup key and the consumers' idempotency key
//	Jetsaga-Event-Type    the event type, e.g. "inventory.reserved"
//	Jetsaga-Order-Id      the order id; the last subject token is its shard
//	Jetsaga-Causation-Id  the id of the event that caused this one;
//	                      empty for order.created and only for it
//	Jetsaga-Occurred-At   when the producing transaction committed,
//	                      RFC 3339 with nanoseconds, in UTC
//
// and, optionally, the W3C Trace Context of the span that published it:
//
//	traceparent           e.g. 00-<trace id>-<span id>-01
//	tracestate            vendor entries, when the trace has any
//
// An event without them is valid; so is one whose trace context is
// malformed (it is not part of the contract's checks, see [TraceContext]).
//
// # Body
//
// The body is the JSON encoding of the type's payload struct (for example
// [OrderCreatedPayload]), with snake_case field names, so it reads as is in
// "nats stream view". Unknown fields are ignored, so producers may add fields
// without breaking older consumers. The body's order_id must equal the
// header's.
//
// # Errors
//
// Every violation of the contract, including a body that is not JSON, is
// reported as a [*ContractError] and matches [ErrContract] with [errors.Is].
package event
