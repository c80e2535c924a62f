// Package payment is the payment service of the jetsaga order saga
// (docs/DESIGN.md, "Saga"). It owns one payment per order, ever, in the
// PostgreSQL schema "payment", and charges through a simulated card gateway.
//
// # Consumes
//
// inventory.reserved (consumer payment-inventory on INVENTORY): the order's
// total is charged through the [Gateway], which declines amounts above
// Config.DeclineOverCents (reason declined_over_limit) and, of the rest, a
// share Config.DeclineRate at random (reason declined_random). The random
// draw is a hash of Config.Seed and the order id ([Roll]), so the decision is
// the same for every delivery of the event and for every run with the same
// seed.
//
// The payment row is inserted with ON CONFLICT (order_id) DO NOTHING: only
// the first inventory.reserved of an order, whatever its event id, charges
// and publishes; any later one is a no-op. It charges only the total that
// the order's order.created gave (table orders): an inventory.reserved of
// another amount is dead-lettered, one whose order.created payment has not
// seen yet is retried.
//
// order.created and order.confirmed (consumer payment-orders on ORDERS):
// the order's total and its confirmation, what charges and refunds are
// checked against. order.cancelled (the same consumer): a COMPLETED payment
// of the cancelled order is refunded (REFUNDED, payment.refunded); an order
// that timed out (or that the order service never placed, unknown_order)
// before it was charged gets a CANCELLED row, charging nothing, so that its
// late inventory.reserved is a no-op; the cancellation of an order payment
// saw confirmed is dead-lettered.
//
// # Publishes
//
// payment.completed {payment_id, amount_cents} or payment.failed {reason,
// amount_cents}, and payment.refunded {payment_id, amount_cents, reason},
// through the transactional outbox in the handler's transaction.
//
// # Tables
//
//   - payments (order_id, payment_id UUIDv7, amount_cents, status
//     COMPLETED|FAILED|REFUNDED|CANCELLED, reason, created_at, refunded_at):
//     one row per order.
//   - orders (order_id, total_cents, created_event_id, confirmed): what
//     order.created and order.confirmed told payment.
//
// # HTTP
//
//   - GET /payments/{order_id}: {"order_id", "payment_id", "amount_cents",
//     "status", "reason", "created_at"}, or 404.
//
// # Metrics
//
// jetsaga_payments_total{status="completed"|"failed"}.
package payment
