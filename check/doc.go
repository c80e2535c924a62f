// Package check verifies docs/DESIGN.md's saga invariants against a running (or
// stopped) jetsaga: the four service schemas of one PostgreSQL database and
// the JetStream streams. It is what `jetsaga check`, `make demo` and the end
// to end tests run.
//
// The package knows the services only by their tables, which it reads with
// schema-qualified SQL (orders.orders, inventory.stock,
// inventory.reservations, inventory.reservation_items, payment.payments,
// readmodel.order_views and the four outbox and dead_letters tables), and by the streams
// ORDERS, INVENTORY, PAYMENTS and DLQ. It imports no service package.
//
// The invariants hold once the system is quiet: call [Quiesce] first, which
// waits until every outbox is empty and every durable consumer has caught up,
// then [Run]:
//
//	if err := check.Quiesce(ctx, pool, js, time.Minute); err != nil { ... }
//	rep, err := check.Run(ctx, pool, js, check.Options{})
//	rep.Write(os.Stdout)
//	if !rep.OK() { os.Exit(1) }
//
// Options.Deadline lets a check run against a live system: orders created
// less than Deadline ago may still be in flight and are left out of the
// per-order comparisons between services (invariant 1, the "a CONFIRMED
// order has a COMMITTED reservation" half of invariant 2, and invariant 5).
// Everything else is checked for every order, because it holds at every
// commit, not only after quiescence.
package check
