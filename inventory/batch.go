package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/pg"
)

// handleBatch is handle for several events at once (consume.BatchHandler).
// It reads, in one round trip, the stock rows the batch may move (locked, in
// SKU order), the batch's orders' reservations (locked, in order id order)
// and their lines; applies the events in the order given on that state in
// memory, with the same rules as reserve, release and commit; then writes
// new reservations and their lines, moved reservations, the stock rows'
// new counts and the outgoing events in one more round trip: the COMMIT's,
// under the loop's set-based pass (outbox.Defer). An event the
// one-by-one path would refuse (an undecodable payload) fails the batch,
// which the loop then hands to handle one event at a time.
func (s *Service) handleBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	var skus, orders []string
	created := make(map[string]event.OrderCreatedPayload)
	cancelled := make(map[string]event.OrderCancelledPayload)
	amount := make(map[string]int64) // of payment.failed and order.confirmed, by event id
	for _, e := range events {
		switch e.Type {
		case event.OrderCreated:
			p, err := event.Decode[event.OrderCreatedPayload](e)
			if err != nil {
				return fmt.Errorf("reserve order %s: %w", e.OrderID, err)
			}
			created[e.ID] = p
			for _, it := range p.Items {
				skus = append(skus, it.SKU)
			}
			orders = append(orders, p.OrderID)
		case event.OrderConfirmed:
			p, err := event.Decode[event.OrderConfirmedPayload](e)
			if err != nil {
				return fmt.Errorf("commit order %s: %w", e.OrderID, err)
			}
			amount[e.ID] = p.TotalCents
			orders = append(orders, p.OrderID)
		case event.PaymentFailed:
			p, err := event.Decode[event.PaymentFailedPayload](e)
			if err != nil {
				return fmt.Errorf("release order %s: %w", e.OrderID, err)
			}
			amount[e.ID] = p.AmountCents
			orders = append(orders, p.OrderID)
		case event.OrderCancelled:
			p, err := event.Decode[event.OrderCancelledPayload](e)
			if err != nil {
				return fmt.Errorf("cancel order %s: %w", e.OrderID, err)
			}
			cancelled[e.ID] = p
			orders = append(orders, p.OrderID)
		}
	}
	if len(orders) == 0 {
		return nil
	}
	st, err := loadBatchState(ctx, tx, skus, orders)
	if err != nil {
		return err
	}
	now := s.now()
	var out []event.Event
	for _, e := range events {
		var (
			ev  event.Event
			err error
		)
		switch e.Type {
		case event.OrderCreated:
			ev, err = s.reserveIn(st, e, created[e.ID], now)
		case event.OrderConfirmed:
			if err = st.verify(e, amount[e.ID]); err == nil {
				ev, err = s.leaveIn(st, e, Commit, now)
			}
		case event.PaymentFailed:
			if err = st.verify(e, amount[e.ID]); err == nil {
				ev, err = s.leaveIn(st, e, Release, now)
			}
		case event.OrderCancelled:
			ev, err = s.cancelIn(st, e, cancelled[e.ID], now)
		}
		if err != nil {
			return err
		}
		if ev.ID != "" {
			out = append(out, ev)
		}
	}
	if err := st.write(ctx, tx); err != nil {
		return err
	}
	if err := outbox.Add(ctx, tx, out...); err != nil {
		return fmt.Errorf("inventory batch of %d: %w", len(events), err)
	}
	return nil
}

// reservation is one order's reservation as a batch sees it.
type reservation struct {
	status Status
	reason string
	lines  []Line
	// What later events must agree with (docs/DESIGN.md, "Every hop checks
	// what it is told"); "" and -1 when not recorded (reservations decided
	// before they were kept).
	createdEvent  string // the order.created decided on
	reservedEvent string // the inventory.reserved published
	total         int64  // the order's total
	fresh         bool   // inserted by this batch
	moved         bool   // an existing one whose status this batch changed
}

// batchState is what a batch reads, changes in memory and writes back.
type batchState struct {
	stock        map[string]Stock // locked rows; a SKU missing here is unknown
	stockChanged map[string]bool
	res          map[string]*reservation // by order id; missing: no decision yet
	newOrder     []string                // orders whose reservation this batch inserts, in order
}

func loadBatchState(ctx context.Context, tx pgx.Tx, skus, orders []string) (*batchState, error) {
	b := &pgx.Batch{}
	b.Queue(`
		SELECT sku, available, reserved, sold FROM stock
		WHERE sku IN (SELECT unnest($1::text[])
		              UNION
		              SELECT sku FROM reservation_items WHERE order_id = ANY($2))
		ORDER BY sku
		FOR UPDATE OF stock`, skus, orders)
	b.Queue(`
		SELECT order_id, status, reason, coalesce(created_event_id::text, ''), coalesce(reserved_event_id::text, ''),
		       coalesce(total_cents, -1)
		FROM reservations WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`, orders)
	b.Queue(`SELECT order_id, sku, qty FROM reservation_items WHERE order_id = ANY($1) ORDER BY order_id, sku`, orders)
	br := tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()

	st := &batchState{stock: map[string]Stock{}, stockChanged: map[string]bool{}, res: map[string]*reservation{}}
	var (
		sku, order, status, reason string
		createdEv, reservedEv      string
		total                      int64
		avail, reserved, sold, qty int
	)
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&sku, &avail, &reserved, &sold}, func() error {
		st.stock[sku] = Stock{SKU: sku, Available: avail, Reserved: reserved, Sold: sold}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, fmt.Errorf("lock reservations: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&order, &status, &reason, &createdEv, &reservedEv, &total}, func() error {
		st.res[order] = &reservation{status: Status(status), reason: reason, createdEvent: createdEv, reservedEvent: reservedEv, total: total}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock reservations: %w", err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, fmt.Errorf("read reservation items: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&order, &sku, &qty}, func() error {
		if r := st.res[order]; r != nil {
			r.lines = append(r.lines, Line{SKU: sku, Qty: qty})
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read reservation items: %w", err)
	}
	return st, nil
}

// reserveIn is reserve on the batch's state: all of the order's lines held,
// or none and the first line (by SKU) that cannot be held named.
func (s *Service) reserveIn(st *batchState, e event.Event, p event.OrderCreatedPayload, now time.Time) (event.Event, error) {
	if st.res[p.OrderID] != nil {
		return event.Event{}, nil // decided before, whatever the event id
	}
	lines := Lines(p.Items)
	held := make([]Stock, 0, len(lines))
	short, reason := "", ""
	for _, l := range lines {
		cur, known := st.stock[l.SKU]
		next, ok := cur.Hold(l.Qty)
		if !known || !ok {
			short, reason = l.SKU, RejectReason(known)
			break
		}
		held = append(held, next)
	}
	st.newOrder = append(st.newOrder, p.OrderID)
	if reason != "" {
		st.res[p.OrderID] = &reservation{status: Rejected, reason: reason, fresh: true, createdEvent: e.ID, total: p.TotalCents}
		out, err := event.New(event.InventoryRejected, p.OrderID, e.ID,
			event.InventoryRejectedPayload{OrderID: p.OrderID, Reason: reason, SKU: short}, now)
		if err != nil {
			return event.Event{}, consume.Permanent(fmt.Errorf("reserve order %s: %w", p.OrderID, err))
		}
		s.metrics.reservations.WithLabelValues("rejected").Inc()
		s.log.Info("reservation rejected", zap.String("order_id", p.OrderID), zap.String("event_id", e.ID),
			zap.String("reason", reason), zap.String("sku", short))
		return out, nil
	}
	for _, next := range held {
		st.stock[next.SKU] = next
		st.stockChanged[next.SKU] = true
	}
	out, err := event.New(event.InventoryReserved, p.OrderID, e.ID,
		event.InventoryReservedPayload{OrderID: p.OrderID, Items: p.Items, TotalCents: Total(p.Items)}, now)
	if err != nil {
		return event.Event{}, consume.Permanent(fmt.Errorf("reserve order %s: %w", p.OrderID, err))
	}
	st.res[p.OrderID] = &reservation{status: Held, lines: lines, fresh: true,
		createdEvent: e.ID, reservedEvent: out.ID, total: p.TotalCents}
	s.metrics.reservations.WithLabelValues("held").Inc()
	return out, nil
}

// cancelIn is cancel on the batch's state: an order without a reservation
// decision gets a CANCELLED one (holding nothing); a HELD one is released.
func (s *Service) cancelIn(st *batchState, e event.Event, p event.OrderCancelledPayload, now time.Time) (event.Event, error) {
	r := st.res[p.OrderID]
	if r == nil {
		st.res[p.OrderID] = &reservation{status: Cancelled, reason: p.Reason, fresh: true, total: -1}
		st.newOrder = append(st.newOrder, p.OrderID)
		s.metrics.reservations.WithLabelValues("cancelled").Inc()
		s.log.Info("order cancelled before its reservation; none will be made", zap.String("order_id", p.OrderID),
			zap.String("event_id", e.ID), zap.String("event_type", string(e.Type)), zap.String("reason", p.Reason))
		return event.Event{}, nil
	}
	if r.status == Held {
		// Only a timeout (or the cancellation of an order the order
		// service never placed) cancels an order whose stock is held, and
		// its cause is the order's order.created.
		if p.Reason != event.ReasonTimeout && p.Reason != event.ReasonUnknownOrder {
			return event.Event{}, consume.Permanent(fmt.Errorf("cancel order %s: %w: order.cancelled %s with reason %s while its stock is held (only a timeout cancels a held reservation)",
				p.OrderID, ErrDisagrees, e.ID, p.Reason))
		}
		if r.createdEvent != "" && e.CausationID != r.createdEvent {
			return event.Event{}, consume.Permanent(fmt.Errorf("cancel order %s: %w: order.cancelled %s is caused by %s, the order's order.created is %s",
				p.OrderID, ErrDisagrees, e.ID, e.CausationID, r.createdEvent))
		}
	}
	return s.leaveIn(st, e, Release, now)
}

// ErrDisagrees: an event contradicts what inventory knows of the order's
// reservation (a forgery or a bug); it is dead-lettered with the reason.
var ErrDisagrees = errors.New("event disagrees with the reservation")

// verify checks a payment.failed or order.confirmed of amount cents against
// the order's reservation: both follow an inventory.reserved, so the order
// must have had its stock held (a reservation that is, or was, HELD), the
// amount must be the order's total and a payment.failed must be caused by
// the inventory.reserved inventory published. A duplicate agrees and goes on
// to be a no-op.
func (st *batchState) verify(e event.Event, amount int64) error {
	r := st.res[e.OrderID]
	switch {
	case r == nil:
		return consume.Permanent(fmt.Errorf("%s %s of order %s: %w: inventory never decided a reservation for it",
			e.Type, e.ID, e.OrderID, ErrDisagrees))
	case r.status == Rejected || r.status == Cancelled:
		return consume.Permanent(fmt.Errorf("%s %s of order %s: %w: its reservation is %s, it never held stock",
			e.Type, e.ID, e.OrderID, ErrDisagrees, r.status))
	case r.total >= 0 && amount != r.total:
		return consume.Permanent(fmt.Errorf("%s %s of order %s: %w: %d cents, the order's total is %d",
			e.Type, e.ID, e.OrderID, ErrDisagrees, amount, r.total))
	case e.Type == event.PaymentFailed && r.reservedEvent != "" && e.CausationID != r.reservedEvent:
		return consume.Permanent(fmt.Errorf("%s %s of order %s: %w: caused by %s, not by the inventory.reserved %s",
			e.Type, e.ID, e.OrderID, ErrDisagrees, e.CausationID, r.reservedEvent))
	}
	return nil
}

// leaveIn is release or commit on the batch's state: a HELD reservation
// moves, its stock with it; any other state, or none, is a no-op. Release
// returns inventory.released.
func (s *Service) leaveIn(st *batchState, e event.Event, t Transition, now time.Time) (event.Event, error) {
	r := st.res[e.OrderID]
	if r == nil || r.status != Held {
		return event.Event{}, nil
	}
	if len(r.lines) == 0 {
		return event.Event{}, consume.Permanent(fmt.Errorf("%s order %s: HELD reservation without items", t.To(), e.OrderID))
	}
	for _, l := range r.lines {
		cur, ok := st.stock[l.SKU]
		if !ok {
			return event.Event{}, fmt.Errorf("%s order %s: stock of %s: %w", t.To(), e.OrderID, l.SKU, errNotFound)
		}
		st.stock[l.SKU] = cur.Apply(t, l.Qty)
		st.stockChanged[l.SKU] = true
	}
	r.status = t.To()
	r.moved = !r.fresh
	if t == Commit {
		s.metrics.reservations.WithLabelValues("committed").Inc()
		return event.Event{}, nil
	}
	items := make([]event.Item, len(r.lines))
	for i, l := range r.lines {
		items[i] = event.Item{SKU: l.SKU, Qty: l.Qty}
	}
	out, err := event.New(event.InventoryReleased, e.OrderID, e.ID,
		event.InventoryReleasedPayload{OrderID: e.OrderID, Items: items}, now)
	if err != nil {
		return event.Event{}, consume.Permanent(fmt.Errorf("release order %s: %w", e.OrderID, err))
	}
	s.metrics.reservations.WithLabelValues("released").Inc()
	s.log.Info("reservation released", zap.String("order_id", e.OrderID), zap.String("event_id", e.ID))
	return out, nil
}

// write stores what the batch changed, in one round trip, or, when the
// batch's transaction is the loop's set-based pass (outbox.Defer), in the
// round trip of its COMMIT (pg.ExecOrHold): nothing reads these rows after
// them in the transaction.
func (st *batchState) write(ctx context.Context, tx pgx.Tx) error {
	b := &pgx.Batch{}
	var (
		newIDs, newStatus, newReason []string
		newCreated, newReserved      []*string
		newTotal                     []*int64
		itemOrder, itemSKU           []string
		itemQty                      []int32
	)
	for _, id := range st.newOrder {
		r := st.res[id]
		newIDs, newStatus, newReason = append(newIDs, id), append(newStatus, string(r.status)), append(newReason, r.reason)
		newCreated, newReserved = append(newCreated, nullString(r.createdEvent)), append(newReserved, nullString(r.reservedEvent))
		var total *int64
		if r.total >= 0 {
			total = &r.total
		}
		newTotal = append(newTotal, total)
		for _, l := range r.lines {
			itemOrder, itemSKU, itemQty = append(itemOrder, id), append(itemSKU, l.SKU), append(itemQty, int32(l.Qty))
		}
	}
	if len(newIDs) > 0 {
		b.Queue(`
			INSERT INTO reservations (order_id, status, reason, created_event_id, reserved_event_id, total_cents)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::bigint[])`,
			newIDs, newStatus, newReason, newCreated, newReserved, newTotal)
	}
	if len(itemOrder) > 0 {
		b.Queue(`
			INSERT INTO reservation_items (order_id, sku, qty)
			SELECT * FROM unnest($1::text[], $2::text[], $3::int[])`, itemOrder, itemSKU, itemQty)
	}
	var movedIDs, movedStatus []string
	for id, r := range st.res {
		if r.moved {
			movedIDs, movedStatus = append(movedIDs, id), append(movedStatus, string(r.status))
		}
	}
	if len(movedIDs) > 0 {
		// The rows were read HELD under lock: anything else is a bug, which
		// fails the statement (a text that is not an integer), and with it
		// the transaction, whenever the statement runs (it may go with the
		// COMMIT: pg.ExecOrHold).
		b.Queue(`
			WITH moved AS (
				UPDATE reservations r SET status = m.status, updated_at = now()
				FROM unnest($1::text[], $2::text[]) AS m(id, status)
				WHERE r.order_id = m.id AND r.status = 'HELD'
				RETURNING 1)
			SELECT ('write inventory batch: ' || count(*) || ' of ' || $3::int || ' HELD reservations moved')::int
			FROM moved HAVING count(*) <> $3::int`, movedIDs, movedStatus, len(movedIDs))
	}
	var skus []string
	var avail, reserved, sold []int32
	for sku := range st.stockChanged {
		c := st.stock[sku]
		skus, avail = append(skus, sku), append(avail, int32(c.Available))
		reserved, sold = append(reserved, int32(c.Reserved)), append(sold, int32(c.Sold))
	}
	if len(skus) > 0 {
		// The rows are locked by this transaction since it read them: the
		// counts it computed are the counts.
		b.Queue(`
			UPDATE stock s SET available = c.available, reserved = c.reserved, sold = c.sold, updated_at = now()
			FROM unnest($1::text[], $2::int[], $3::int[], $4::int[]) AS c(sku, available, reserved, sold)
			WHERE s.sku = c.sku`, skus, avail, reserved, sold)
	}
	if err := pg.ExecOrHold(ctx, tx, b); err != nil {
		return fmt.Errorf("write inventory batch: %w", err)
	}
	return nil
}

// nullString is s for a nullable column, NULL for "".
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
