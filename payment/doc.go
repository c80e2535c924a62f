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
// and publishes; any later one is a no-op.
//
// order.cancelled (consumer payment-orders on ORDERS): a COMPLETED payment
// of the cancelled order is refunded (REFUNDED, payment.refunded); an order
// that timed out before it was charged gets a CANCELLED row, charging
// nothing, so that its late inventory.reserved is a no-op.
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
