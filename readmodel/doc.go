// Package readmodel is the read side (CQRS) of the jetsaga order saga: it
// consumes every saga event into one view per order and serves queries on
// those views, saying how far behind the write side it is.
//
// # Owns
//
// The Postgres schema "readmodel" with three tables beside the delivery
// tables (outbox, unused here, and inbox):
//
//   - events: every distinct event seen (event_id primary key, order_id,
//     event_type, causation_id, occurred_at, projected_at, body, and the
//     stream and seq it was read at), until its order is terminal and older
//     than --event-retention (then pruned);
//   - order_views: one row per order (customer_id, items, total_cents,
//     status, reason, version, timeline, last_occurred_at, updated_at,
//     lag_ms; orders_seqs, inventory_seqs, payments_seqs: the stream
//     sequences it has seen; pruned: its events are deleted; created_at:
//     when the saga began), indexed by (status, order_id) for the list and,
//     for the views in flight only (PENDING, RESERVED), by (created_at,
//     order_id) for GET /sagas and the counts in flight;
//   - counts: deltas of the CONFIRMED and CANCELLED views and of the events
//     recorded, one row appended by each statement that changes them and
//     folded into one every few seconds, so that GET /stats and the
//     dashboard count without scanning order_views or events.
//
// # Consumes
//
// Every event type, through three durable consumers: readmodel-orders on
// ORDERS (order.>), readmodel-inventory on INVENTORY (inventory.>) and
// readmodel-payments on PAYMENTS (payment.>). It publishes nothing.
//
// # Projection
//
// Each event is recorded in events (a known event id is a no-op), then the
// order's view is recomputed from all of the order's recorded events by the
// pure function [Project], under a per-order advisory lock so that
// concurrent events of one order serialize. Because the view depends only on
// the set of events, events arriving late, twice, or out of causal order
// converge to the same view; a re-emitted event (same order and type, new id)
// counts once. The status mirrors the order service's: CANCELLED once
// order.cancelled is seen (with its reason), else CONFIRMED once
// order.confirmed is seen, else RESERVED once inventory.reserved is seen, else
// PENDING. Lag is projected_at (the read model's clock when it first recorded
// the event) minus occurred_at (the producer's commit time).
//
// A view records the stream sequences of the events projected into it
// ([Seen]): an event it has seen is skipped, and a view is never replaced by
// one that has not seen all of them. A pruned view stands for its deleted
// events: a late event is folded into it ([Fold]).
//
// # Rebuild
//
// POST /admin/rebuild replays the three streams from their first sequence
// into the schema readmodel_rebuild while "readmodel" keeps serving, then
// swaps the two in one transaction (docs/DESIGN.md, "Read model: versions,
// retention, rebuild").
// # HTTP
//
//	GET /orders?status=&limit=&after=  views by order id, cursor-paginated:
//	                                   {"orders":[...],"next":"<after= of the next page, or empty>"};
//	                                   limit 1-500, default 50; status one of the four
//	GET /orders/{id}                   one view with its timeline; 404 if unknown
//	GET /orders/{id}/watch             Server-Sent Events: the view each time its
//	                                   version changes, until it is terminal
//	GET /stats                         views per status, events projected, lag
//	                                   p50/p99 of the last 1,000 events, and how
//	                                   many messages each consumer is behind,
//	                                   sagas in flight and stuck
//	GET /sagas?state=&limit=&after=&older_than=
//	                                   sagas in flight (or stuck: older than
//	                                   --stuck-after) oldest first, with age,
//	                                   last event and [WaitingFor]; limit 1-1000,
//	                                   default 100; after the next cursor
//	POST /admin/rebuild[?force=true]   rebuild from the streams; streams progress
//	                                   and the report as JSON lines
//	GET /                              the dashboard (web/, embedded; assets under /assets/)
//	GET /dashboard/events              Server-Sent Events for it: "hello" with the
//	                                   last 5 minutes, then a "tick" a second
//	                                   (dashboard.go); at most 32 streams
//
// Bad input answers 400 with {"error": "..."}.
//
// # Metrics
//
// jetsaga_readmodel_lag_seconds, a histogram of projection lag.
package readmodel
