// Package check verifies docs/DESIGN.md's saga invariants against a running (or
// stopped) jetsaga: the four services' schemas and the JetStream streams. It
// is what `jetsaga check`, `make demo` and the end to end tests run.
//
// The package knows the services only by their tables, which it reads with
// schema-qualified SQL (orders.orders, inventory.stock,
// inventory.reservations, inventory.reservation_items, payment.payments,
// readmodel.order_views and the four outbox and dead_letters tables), and by the streams
// ORDERS, INVENTORY, PAYMENTS and DLQ. It imports no service package.
//
// Each service may keep its schema in a database of its own, even on a
// server of its own: [DBs] holds a pool per service ([OneDB] when one
// database holds all four). No query joins two services' tables. What one
// service answers alone (stock per SKU, its outbox, its dead letters) is
// SQL in its database; what compares services (an order with its view, its
// reservation, its payment) is a merge join in Go over the four tables,
// each read once in one query sorted by order id, so that the check's
// memory does not grow with the history.
//
// The invariants hold once the system is quiet: call [Quiesce] first, which
// waits until every outbox is empty and every durable consumer has caught up,
// then [Run]:
//
//	dbs := check.DBs{Order: orderPool, Inventory: inventoryPool, Payment: paymentPool, ReadModel: readmodelPool}
//	if err := check.Quiesce(ctx, dbs, js, time.Minute); err != nil { ... }
//	rep, err := check.Run(ctx, dbs, js, check.Options{})
//	rep.Write(os.Stdout)
//	if !rep.OK() { os.Exit(1) }
//
// Options.Deadline lets a check run against a live system: orders created
// less than Deadline ago may still be in flight and are left out of the
// per-order comparisons between services that a saga in flight fails for a
// moment (invariant 1; invariant 2's "a CONFIRMED order has a COMMITTED
// reservation, a CANCELLED one holds none"; invariant 3's "a CONFIRMED
// order has one payment of its total, a CANCELLED one no charge";
// invariant 5). Everything else is checked for every order, because it
// holds at every commit: a reservation, payment or view of an order the
// order service does not have, a COMMITTED reservation of an order not
// CONFIRMED, the stock's sums, the streams.
package check
