// Package inventory is the inventory service of the jetsaga order saga
// (docs/DESIGN.md, "Saga"). It owns the stock of every SKU and one reservation
// decision per order, in the PostgreSQL schema "inventory".
//
// # Consumes
//
//   - order.created (consumer inventory-orders on ORDERS): an all-or-nothing
//     reservation. The order's lines are merged per SKU and held in SKU order
//     with a conditional UPDATE (available >= qty) inside a savepoint. If every
//     line is held the reservation is HELD and inventory.reserved is published
//     (the order's items and total); if one is not, the savepoint is rolled
//     back so nothing is held, the reservation is REJECTED with the reason
//     (unknown_sku or out_of_stock) and inventory.rejected is published.
//   - payment.failed (consumer inventory-payments on PAYMENTS): a HELD
//     reservation becomes RELEASED, its stock goes back to available, and
//     inventory.released is published (the compensation) with the
//     reservation's merged lines; unit prices are not kept, so they are 0.
//   - order.confirmed (consumer inventory-orders): a HELD reservation becomes
//     COMMITTED, its stock moves from reserved to sold. Nothing is published.
//   - order.cancelled (consumer inventory-orders): a HELD reservation (the
//     order timed out while its stock was held) is released as on
//     payment.failed, inventory.released caused by the order.cancelled; an
//     order with no reservation decision yet gets a CANCELLED one that holds
//     nothing, so its late order.created reserves nothing.
//
// Every handler is idempotent per order, not only per event: the reservation
// row, keyed by order id, is inserted with ON CONFLICT DO NOTHING, and every
// later move is a conditional UPDATE from HELD. A duplicate order.created,
// even re-emitted with a new event id, and a late, repeated or inapplicable
// payment.failed or order.confirmed are no-ops.
//
// # Publishes
//
// inventory.reserved, inventory.rejected, inventory.released, through the
// transactional outbox in the handler's transaction.
//
// # Tables
//
//   - stock (sku, available, reserved, sold, initial, adjusted, updated_at):
//     per SKU, initial + adjusted = available + reserved + sold always
//     (docs/DESIGN.md invariant 2); initial is what the SKU started with (its
//     --seed-stock, or the PUT that created it), adjusted the net of every
//     later PUT.
//   - stock_adjustments (id, sku, delta, available_before, available_after,
//     adjusted_at): one row per PUT on an existing SKU.
//   - reservations (order_id, status HELD|COMMITTED|RELEASED|REJECTED|CANCELLED,
//     reason, created_at, updated_at): one per order.
//   - reservation_items (order_id, sku, qty): what a HELD, COMMITTED or
//     RELEASED reservation holds or held, one row per SKU; none for REJECTED
//     or CANCELLED.
//
// # HTTP
//
//   - GET /stock: every SKU's {"sku", "available", "reserved", "sold",
//     "initial", "adjusted"}, sorted by SKU.
//   - GET /stock/{sku}: one SKU, or 404.
//   - PUT /stock/{sku} with {"available": N}: creates the SKU with initial
//     stock N, or adjusts its available stock to N (0 to 1,000,000,000),
//     adding the difference to adjusted and recording the adjustment;
//     400 with {"error", "fields"} naming each bad field (unknown fields
//     included), 413 over 64 KiB.
//
// # Start
//
// Config.SeedStock (the --seed-stock flag, parsed by ParseSeedStock) gives
// SKUs without a stock row their initial stock; existing SKUs are left alone.
package inventory
