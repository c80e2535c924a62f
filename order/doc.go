// Package order is the order service of the jetsaga saga: it takes orders
// over HTTP and follows each one to a terminal state (CONFIRMED or
// CANCELLED) as the inventory and payment services report back. It never
// calls them; it only reads their events and publishes its own.
//
// # What it owns
//
// The "orders" schema, holding one table besides the shared delivery tables
// (outbox, inbox):
//
//	orders  one row per order: order_id (UUIDv7), customer_id, items (jsonb),
//	        total_cents, status (PENDING, RESERVED, CONFIRMED, CANCELLED),
//	        reason (out_of_stock, unknown_sku, payment_failed, timeout, or ""),
//	        payment_failed, version (1, +1 per change), idempotency_key
//	        (NULL without an Idempotency-Key header), request_hash,
//	        created_at, updated_at, deadline (NULL without one),
//	        created_event_id (the order.created's id)
//
// # HTTP
//
//	POST /orders      {"customer_id", "items": [{"sku", "qty", "unit_price_cents"}]}
//	                  → 202, Location: /orders/<id>, {"order_id", "status", "status_url"}
//	                  400 naming each invalid field, or for malformed JSON or an
//	                  unknown field; 413 over 64 KiB; 422 for an Idempotency-Key
//	                  reused with another body (the same body replays the 202)
//	GET /orders/{id}  → 200 the order as this service holds it, or 404
//
// The order row and its order.created are written in one transaction.
//
// # Events
//
// Publishes (through the outbox, on the ORDERS stream):
//
//	order.created    when an order is accepted
//	order.confirmed  on payment.completed
//	order.cancelled  on inventory.rejected (reason out_of_stock or unknown_sku),
//	                 or on inventory.released after a failed payment
//	                 (reason payment_failed), or when the order's deadline
//	                 passed while it was PENDING or RESERVED (reason timeout),
//	                 or on an order.created it never wrote (reason
//	                 unknown_order)
//
// Consumes, with the durable consumers order-inventory (INVENTORY stream:
// inventory.reserved, inventory.rejected, inventory.released),
// order-payments (PAYMENTS stream: payment.completed, payment.failed,
// payment.refunded, the last a no-op) and order-orders (its own
// order.created, checked by [Service.HandleCreated]). Each event is checked
// against the order first ([Order.Verify]): one that contradicts it is
// dead-lettered, one ahead of the step it follows is retried.
//
// # Deadlines
//
// With Config.SagaDeadline set (--saga-deadline, 30s by default), every
// order gets a deadline when placed, and [Service.Run], the deadline
// scheduler, cancels open orders past it ([Order.Expire]), claiming them
// with FOR UPDATE SKIP LOCKED so that several instances share the work.
//
// # State machine
//
// [Order.Apply] decides every transition as a pure function; see it for the
// table. Each event moves an order at most once and a terminal order never
// moves, so duplicates, late events and re-emitted events (a new event id
// for the same order) are no-ops: the handler is idempotent per order, not
// only per event id, and the final state does not depend on the order in
// which events arrive. An event for an order this service does not hold is
// retried for 10s after it occurred, then dead-lettered.
package order
