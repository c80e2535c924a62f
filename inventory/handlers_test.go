package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// bundle is what a handler or API test needs: a fresh inventory schema and
// the service on it.
type bundle struct {
	pool *pgxpool.Pool
	svc  *Service
	reg  *prometheus.Registry
}

// setup migrates a fresh database and starts the service on it with seed.
func setup(t *testing.T, seed map[string]int) bundle {
	t.Helper()
	pool := testenv.Pool(t, Schema, Migrations())
	reg := prometheus.NewRegistry()
	svc, err := New(&service.Runtime{
		Pool:     pool,
		Log:      zaptest.NewLogger(t),
		Registry: reg,
		Notify:   func() {},
		Now:      time.Now,
	}, Config{SeedStock: seed})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return bundle{pool: pool, svc: svc, reg: reg}
}

// apply runs the service's handler on e in one transaction, as the consume
// loop does (minus the inbox, so that the business key is what is tested).
func (b bundle) apply(t *testing.T, e event.Event) error {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := b.svc.handle(ctx, tx, e); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (b bundle) mustApply(t *testing.T, e event.Event) {
	t.Helper()
	if err := b.apply(t, e); err != nil {
		t.Fatalf("handle %s %s: %v", e.Type, e.OrderID, err)
	}
}

// stock returns every SKU's stock and fails the test if one breaks the
// invariant initial = available + reserved + sold.
func (b bundle) stock(t *testing.T) map[string]Stock {
	t.Helper()
	list, err := listStock(context.Background(), b.pool)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]Stock, len(list))
	for _, s := range list {
		if err := s.Check(); err != nil {
			t.Fatalf("invariant: %v", err)
		}
		m[s.SKU] = s
	}
	return m
}

// reservation returns the order's reservation status and reason, "" if none.
func (b bundle) reservation(t *testing.T, orderID string) (Status, string) {
	t.Helper()
	var status, reason string
	err := b.pool.QueryRow(context.Background(),
		`SELECT status, reason FROM reservations WHERE order_id = $1`, orderID).Scan(&status, &reason)
	if err == pgx.ErrNoRows {
		return "", ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return Status(status), reason
}

func (b bundle) lines(t *testing.T, orderID string) []Line {
	t.Helper()
	lines, err := reservationLines(context.Background(), b.pool, orderID)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// outRow is one outbox row.
type outRow struct {
	Type        event.Type
	OrderID     string
	CausationID string
	Body        []byte
}

func (b bundle) outbox(t *testing.T) []outRow {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT event_type, order_id, causation_id, body FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outRow, error) {
		var o outRow
		err := r.Scan(&o.Type, &o.OrderID, &o.CausationID, &o.Body)
		return o, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (b bundle) outboxTypes(t *testing.T, orderID string) []event.Type {
	t.Helper()
	var types []event.Type
	for _, o := range b.outbox(t) {
		if o.OrderID == orderID {
			types = append(types, o.Type)
		}
	}
	return types
}

// Events as other services would publish them, each with a new event id.

func newID(t *testing.T) string {
	t.Helper()
	return uuid.Must(uuid.NewV7()).String()
}

func item(sku string, qty int, price int64) event.Item {
	return event.Item{SKU: sku, Qty: qty, UnitPriceCents: price}
}

func created(t *testing.T, orderID string, items ...event.Item) event.Event {
	t.Helper()
	e, err := event.New(event.OrderCreated, orderID, "",
		event.OrderCreatedPayload{OrderID: orderID, CustomerID: "c1", Items: items, TotalCents: Total(items)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// facts returns what the order's reservation recorded: the order.created
// it was decided on, the inventory.reserved it published and the order's
// total; random ids and 100 cents when it has none, as a forger would guess.
func (b bundle) facts(t *testing.T, orderID string) (createdID, reservedID string, total int64) {
	t.Helper()
	err := b.pool.QueryRow(context.Background(), `
		SELECT coalesce(created_event_id::text, ''), coalesce(reserved_event_id::text, ''), coalesce(total_cents, 100)
		FROM reservations WHERE order_id = $1`, orderID).Scan(&createdID, &reservedID, &total)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	if err != nil {
		total = 100
	}
	if createdID == "" {
		createdID = newID(t)
	}
	if reservedID == "" {
		reservedID = newID(t)
	}
	return createdID, reservedID, total
}

// paymentFailed is the payment.failed payment would publish for the
// order's reservation as stored.
func (b bundle) paymentFailed(t *testing.T, orderID string) event.Event {
	t.Helper()
	_, reserved, total := b.facts(t, orderID)
	return paymentFailedOf(t, orderID, reserved, total)
}

func paymentFailedOf(t *testing.T, orderID, cause string, total int64) event.Event {
	t.Helper()
	e, err := event.New(event.PaymentFailed, orderID, cause,
		event.PaymentFailedPayload{OrderID: orderID, Reason: "declined_random", AmountCents: total}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// confirmed is the order.confirmed of the order's total as stored.
func (b bundle) confirmed(t *testing.T, orderID string) event.Event {
	t.Helper()
	_, _, total := b.facts(t, orderID)
	return confirmedOf(t, orderID, total)
}

func confirmedOf(t *testing.T, orderID string, total int64) event.Event {
	t.Helper()
	e, err := event.New(event.OrderConfirmed, orderID, newID(t),
		event.OrderConfirmedPayload{OrderID: orderID, TotalCents: total}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// cancelled is the order.cancelled the order service would publish for a
// timeout of the order as stored: caused by its order.created.
func (b bundle) cancelled(t *testing.T, orderID, reason string) event.Event {
	t.Helper()
	createdID, _, _ := b.facts(t, orderID)
	return cancelledEvent(t, orderID, createdID, reason)
}

func cancelledEvent(t *testing.T, orderID, cause, reason string) event.Event {
	t.Helper()
	e, err := event.New(event.OrderCancelled, orderID, cause,
		event.OrderCancelledPayload{OrderID: orderID, Reason: reason}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestReserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		seed       map[string]int
		items      []event.Item
		wantStatus Status
		wantReason string
		wantSKU    string // the SKU inventory.rejected names
		wantLines  []Line
		wantStock  map[string]Stock
	}{
		{
			name:       "one line",
			seed:       map[string]int{"a": 10},
			items:      []event.Item{item("a", 3, 250)},
			wantStatus: Held,
			wantLines:  []Line{{"a", 3}},
			wantStock:  map[string]Stock{"a": {SKU: "a", Available: 7, Reserved: 3, Initial: 10}},
		},
		{
			name:       "several lines",
			seed:       map[string]int{"a": 10, "b": 2, "c": 1},
			items:      []event.Item{item("b", 2, 100), item("a", 1, 5)},
			wantStatus: Held,
			wantLines:  []Line{{"a", 1}, {"b", 2}},
			wantStock: map[string]Stock{
				"a": {SKU: "a", Available: 9, Reserved: 1, Initial: 10},
				"b": {SKU: "b", Available: 0, Reserved: 2, Initial: 2},
				"c": {SKU: "c", Available: 1, Initial: 1},
			},
		},
		{
			name:       "duplicate skus merged",
			seed:       map[string]int{"a": 5},
			items:      []event.Item{item("a", 2, 100), item("a", 3, 90)},
			wantStatus: Held,
			wantLines:  []Line{{"a", 5}},
			wantStock:  map[string]Stock{"a": {SKU: "a", Available: 0, Reserved: 5, Initial: 5}},
		},
		{
			name:       "out of stock",
			seed:       map[string]int{"a": 2},
			items:      []event.Item{item("a", 3, 100)},
			wantStatus: Rejected,
			wantReason: event.ReasonOutOfStock,
			wantSKU:    "a",
			wantStock:  map[string]Stock{"a": {SKU: "a", Available: 2, Initial: 2}},
		},
		{
			name:       "no stock at all",
			seed:       map[string]int{"a": 0},
			items:      []event.Item{item("a", 1, 100)},
			wantStatus: Rejected,
			wantReason: event.ReasonOutOfStock,
			wantSKU:    "a",
			wantStock:  map[string]Stock{"a": {SKU: "a", Initial: 0}},
		},
		{
			name:       "second item short: the first is not held",
			seed:       map[string]int{"a": 10, "b": 1},
			items:      []event.Item{item("a", 2, 100), item("b", 2, 100)},
			wantStatus: Rejected,
			wantReason: event.ReasonOutOfStock,
			wantSKU:    "b",
			wantStock: map[string]Stock{
				"a": {SKU: "a", Available: 10, Initial: 10},
				"b": {SKU: "b", Available: 1, Initial: 1},
			},
		},
		{
			name:       "merged lines exceed stock though each line fits",
			seed:       map[string]int{"a": 5},
			items:      []event.Item{item("a", 3, 100), item("a", 3, 100)},
			wantStatus: Rejected,
			wantReason: event.ReasonOutOfStock,
			wantSKU:    "a",
			wantStock:  map[string]Stock{"a": {SKU: "a", Available: 5, Initial: 5}},
		},
		{
			name:       "unknown sku",
			seed:       map[string]int{"a": 5},
			items:      []event.Item{item("zzz", 1, 100)},
			wantStatus: Rejected,
			wantReason: event.ReasonUnknownSKU,
			wantSKU:    "zzz",
			wantStock:  map[string]Stock{"a": {SKU: "a", Available: 5, Initial: 5}},
		},
		{
			name:       "unknown sku after a held line: nothing held",
			seed:       map[string]int{"a": 5},
			items:      []event.Item{item("a", 5, 100), item("b", 1, 100)},
			wantStatus: Rejected,
			wantReason: event.ReasonUnknownSKU,
			wantSKU:    "b",
			wantStock:  map[string]Stock{"a": {SKU: "a", Available: 5, Initial: 5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.seed)
			e := created(t, "o1", tt.items...)
			b.mustApply(t, e)

			status, reason := b.reservation(t, "o1")
			if status != tt.wantStatus || reason != tt.wantReason {
				t.Errorf("reservation = %s %q, want %s %q", status, reason, tt.wantStatus, tt.wantReason)
			}
			if got := b.lines(t, "o1"); !slices.Equal(got, tt.wantLines) {
				t.Errorf("reservation items = %v, want %v", got, tt.wantLines)
			}
			if got := b.stock(t); !maps.Equal(got, tt.wantStock) {
				t.Errorf("stock = %v, want %v", got, tt.wantStock)
			}

			out := b.outbox(t)
			if len(out) != 1 {
				t.Fatalf("outbox has %d rows, want 1: %+v", len(out), out)
			}
			if out[0].OrderID != "o1" || out[0].CausationID != e.ID {
				t.Errorf("outbox row for order %q caused by %q, want o1 caused by %s", out[0].OrderID, out[0].CausationID, e.ID)
			}
			switch tt.wantStatus {
			case Held:
				if out[0].Type != event.InventoryReserved {
					t.Fatalf("outbox event %s, want %s", out[0].Type, event.InventoryReserved)
				}
				var p event.InventoryReservedPayload
				if err := json.Unmarshal(out[0].Body, &p); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(p.Items, tt.items) || p.TotalCents != Total(tt.items) {
					t.Errorf("inventory.reserved = %+v, want the order's items and total %d", p, Total(tt.items))
				}
			case Rejected:
				if out[0].Type != event.InventoryRejected {
					t.Fatalf("outbox event %s, want %s", out[0].Type, event.InventoryRejected)
				}
				var p event.InventoryRejectedPayload
				if err := json.Unmarshal(out[0].Body, &p); err != nil {
					t.Fatal(err)
				}
				if p.Reason != tt.wantReason || p.SKU != tt.wantSKU {
					t.Errorf("inventory.rejected = %+v, want reason %s sku %s", p, tt.wantReason, tt.wantSKU)
				}
			}
		})
	}
}

// TestReserveOncePerOrder: order.created delivered again, or re-emitted with
// a new event id, even after stock changed, has no second effect.
func TestReserveOncePerOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		seed   int
		qty    int
		want   Status
		effect func(t *testing.T, b bundle) // between the first and the repeated events
	}{
		{name: "held", seed: 5, qty: 2, want: Held},
		{name: "rejected, then stock arrives", seed: 1, qty: 2, want: Rejected, effect: func(t *testing.T, b bundle) {
			if _, _, err := setAvailable(context.Background(), b.pool, "a", 100); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "released", seed: 5, qty: 2, want: Released, effect: func(t *testing.T, b bundle) {
			b.mustApply(t, b.paymentFailed(t, "o1"))
		}},
		{name: "committed", seed: 5, qty: 2, want: Committed, effect: func(t *testing.T, b bundle) {
			b.mustApply(t, b.confirmed(t, "o1"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, map[string]int{"a": tt.seed})
			first := created(t, "o1", item("a", tt.qty, 100))
			b.mustApply(t, first)
			if tt.effect != nil {
				tt.effect(t, b)
			}
			wantStock, wantOut := b.stock(t), b.outbox(t)

			b.mustApply(t, first)                               // the same event again
			b.mustApply(t, created(t, "o1", item("a", 1, 100))) // re-emitted with a new id (and other items)

			if got, _ := b.reservation(t, "o1"); got != tt.want {
				t.Errorf("reservation %s, want %s", got, tt.want)
			}
			if got := b.stock(t); !maps.Equal(got, wantStock) {
				t.Errorf("stock = %v, want unchanged %v", got, wantStock)
			}
			if got := b.outbox(t); len(got) != len(wantOut) {
				t.Errorf("outbox has %d rows, want %d", len(got), len(wantOut))
			}
		})
	}
}

// TestSagaSequences runs the events inventory consumes in causal, late,
// repeated and impossible orders, checking the invariant after every step.
func TestSagaSequences(t *testing.T) {
	t.Parallel()
	const (
		create  = "created"
		createX = "created-short" // an order.created that cannot be reserved
		fail    = "payment.failed"
		confirm = "order.confirmed"
		cancel  = "order.cancelled" // reason timeout
	)
	tests := []struct {
		name       string
		steps      []string
		wantStatus Status
		wantStock  Stock
		wantEvents []event.Type
		refused    []int // steps dead-lettered: events no genuine saga sends
	}{
		{
			name:       "reserved then released",
			steps:      []string{create, fail},
			wantStatus: Released,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved, event.InventoryReleased},
		},
		{
			name:       "released twice",
			steps:      []string{create, fail, fail},
			wantStatus: Released,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved, event.InventoryReleased},
		},
		{
			name:       "reserved then committed",
			steps:      []string{create, confirm},
			wantStatus: Committed,
			wantStock:  Stock{SKU: "a", Available: 7, Sold: 3, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved},
		},
		{
			name:       "committed twice",
			steps:      []string{create, confirm, confirm},
			wantStatus: Committed,
			wantStock:  Stock{SKU: "a", Available: 7, Sold: 3, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved},
		},
		{
			name:       "release after commit is a no-op",
			steps:      []string{create, confirm, fail},
			wantStatus: Committed,
			wantStock:  Stock{SKU: "a", Available: 7, Sold: 3, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved},
		},
		{
			name:       "commit after release is a no-op",
			steps:      []string{create, fail, confirm},
			wantStatus: Released,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved, event.InventoryReleased},
		},
		{
			name:       "release of an unknown order is refused",
			refused:    []int{0},
			steps:      []string{fail},
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: nil,
		},
		{
			name:       "commit of an unknown order is refused",
			refused:    []int{0},
			steps:      []string{confirm},
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: nil,
		},
		{
			name:       "release of a rejected order is refused",
			refused:    []int{1},
			steps:      []string{createX, fail},
			wantStatus: Rejected,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryRejected},
		},
		{
			name:       "timeout while held: released",
			steps:      []string{create, cancel},
			wantStatus: Released,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved, event.InventoryReleased},
		},
		{
			name:       "timeout released twice",
			steps:      []string{create, cancel, cancel},
			wantStatus: Released,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved, event.InventoryReleased},
		},
		{
			name:       "timeout before order.created: the late order.created reserves nothing",
			steps:      []string{cancel, create},
			wantStatus: Cancelled,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: nil,
		},
		{
			name:       "cancellation after a release is a no-op",
			steps:      []string{create, fail, cancel},
			wantStatus: Released,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryReserved, event.InventoryReleased},
		},
		{
			name:       "cancellation of a rejected order is a no-op",
			steps:      []string{createX, cancel},
			wantStatus: Rejected,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryRejected},
		},
		{
			name:       "commit of a rejected order is refused",
			refused:    []int{1},
			steps:      []string{createX, confirm},
			wantStatus: Rejected,
			wantStock:  Stock{SKU: "a", Available: 10, Initial: 10},
			wantEvents: []event.Type{event.InventoryRejected},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, map[string]int{"a": 10})
			for i, step := range tt.steps {
				var e event.Event
				switch step {
				case create:
					e = created(t, "o1", item("a", 1, 100), item("a", 2, 100))
				case createX:
					e = created(t, "o1", item("a", 11, 100))
				case fail:
					e = b.paymentFailed(t, "o1")
				case confirm:
					e = b.confirmed(t, "o1")
				case cancel:
					e = b.cancelled(t, "o1", event.ReasonTimeout)
				}
				err := b.apply(t, e)
				if refused := slices.Contains(tt.refused, i); refused != consume.IsPermanent(err) {
					t.Fatalf("step %d %s: %v, want refused %v", i, step, err, refused)
				}
				b.stock(t) // checks the invariant
				if i > 0 && step == tt.steps[i-1] {
					b.mustApply(t, e) // the very same event once more
				}
			}
			if got, _ := b.reservation(t, "o1"); got != tt.wantStatus {
				t.Errorf("reservation %q, want %q", got, tt.wantStatus)
			}
			if got := b.stock(t)["a"]; got != tt.wantStock {
				t.Errorf("stock %+v, want %+v", got, tt.wantStock)
			}
			if got := b.outboxTypes(t, "o1"); !slices.Equal(got, tt.wantEvents) {
				t.Errorf("outbox events %v, want %v", got, tt.wantEvents)
			}
		})
	}
}

func TestReleasePublishesMergedItems(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]int{"a": 10, "b": 10})
	b.mustApply(t, created(t, "o1", item("b", 1, 100), item("a", 2, 100), item("b", 3, 50)))
	fail := b.paymentFailed(t, "o1")
	b.mustApply(t, fail)

	out := b.outbox(t)
	if len(out) != 2 || out[1].Type != event.InventoryReleased {
		t.Fatalf("outbox = %+v, want inventory.reserved then inventory.released", out)
	}
	if out[1].CausationID != fail.ID {
		t.Errorf("inventory.released caused by %s, want %s", out[1].CausationID, fail.ID)
	}
	p, err := event.Decode[event.InventoryReleasedPayload](event.Event{Type: event.InventoryReleased, OrderID: "o1", Body: out[1].Body})
	if err != nil {
		t.Fatal(err)
	}
	want := []event.Item{{SKU: "a", Qty: 2}, {SKU: "b", Qty: 4}}
	if !slices.Equal(p.Items, want) {
		t.Errorf("released items %v, want %v", p.Items, want)
	}
	if got := b.stock(t); got["a"].Available != 10 || got["b"].Available != 10 {
		t.Errorf("stock after release %v, want all available", got)
	}
}

func TestUnhandledEventTypeIsNoOp(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]int{"a": 1})
	e, err := event.New(event.OrderCancelled, "o1", newID(t),
		event.OrderCancelledPayload{OrderID: "o1", Reason: event.ReasonTimeout}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.mustApply(t, e)
	if out := b.outbox(t); len(out) != 0 {
		t.Errorf("outbox = %+v, want empty", out)
	}
}

// TestConcurrentReservationsNeverOversell: many orders race for a scarce SKU,
// each in its own transaction; exactly as many as there is stock for win.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	t.Parallel()
	const stock, orders = 5, 20
	b := setup(t, map[string]int{"scarce": stock})
	errs := make(chan error, orders)
	var wg sync.WaitGroup
	for i := range orders {
		e := created(t, fmt.Sprintf("o%02d", i), item("scarce", 1, 100))
		wg.Go(func() { errs <- b.apply(t, e) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("handle: %v", err)
		}
	}

	counts := map[Status]int{}
	for i := range orders {
		s, _ := b.reservation(t, fmt.Sprintf("o%02d", i))
		counts[s]++
	}
	if counts[Held] != stock || counts[Rejected] != orders-stock {
		t.Errorf("reservations %v, want %d HELD and %d REJECTED", counts, stock, orders-stock)
	}
	want := Stock{SKU: "scarce", Reserved: stock, Initial: stock}
	if got := b.stock(t)["scarce"]; got != want {
		t.Errorf("stock %+v, want %+v", got, want)
	}
	if got := len(b.outbox(t)); got != orders {
		t.Errorf("outbox has %d rows, want %d", got, orders)
	}
	if got := counterValue(t, b.reg, "jetsaga_reservations_total", "outcome", "held"); got != stock {
		t.Errorf("jetsaga_reservations_total{outcome=held} = %v, want %d", got, stock)
	}
}

// TestConcurrentCrossingOrdersDoNotDeadlock: orders listing the same SKUs in
// opposite orders run concurrently; stock rows are locked in SKU order, so
// none deadlocks and all are held.
func TestConcurrentCrossingOrdersDoNotDeadlock(t *testing.T) {
	t.Parallel()
	const orders = 30
	skus := []string{"a", "b", "c"}
	b := setup(t, map[string]int{"a": 1000, "b": 1000, "c": 1000})
	errs := make(chan error, orders)
	var wg sync.WaitGroup
	for i := range orders {
		items := []event.Item{item(skus[i%3], 1, 1), item(skus[(i+1)%3], 1, 1), item(skus[(i+2)%3], 1, 1)}
		if i%2 == 1 {
			slices.Reverse(items)
		}
		e := created(t, fmt.Sprintf("o%02d", i), items...)
		wg.Go(func() { errs <- b.apply(t, e) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("handle: %v", err)
		}
	}
	for _, sku := range skus {
		want := Stock{SKU: sku, Available: 1000 - orders, Reserved: orders, Initial: 1000}
		if got := b.stock(t)[sku]; got != want {
			t.Errorf("stock %+v, want %+v", got, want)
		}
	}
}

func TestSeedStock(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]int{"a": 5, "b": 0})
	b.mustApply(t, created(t, "o1", item("a", 2, 100)))

	// A restart with another seed keeps existing SKUs and adds new ones.
	if _, err := New(&service.Runtime{Pool: b.pool, Log: zaptest.NewLogger(t)}, Config{SeedStock: map[string]int{"a": 100, "c": 7}}); err != nil {
		t.Fatalf("New again: %v", err)
	}
	want := map[string]Stock{
		"a": {SKU: "a", Available: 3, Reserved: 2, Initial: 5},
		"b": {SKU: "b"},
		"c": {SKU: "c", Available: 7, Initial: 7},
	}
	if got := b.stock(t); !maps.Equal(got, want) {
		t.Errorf("stock %v, want %v", got, want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, Schema, Migrations())
	tests := []struct {
		name string
		rt   *service.Runtime
		seed map[string]int
	}{
		{"no runtime", nil, nil},
		{"no pool", &service.Runtime{}, nil},
		{"bad sku", &service.Runtime{Pool: pool}, map[string]int{"a.b": 1}},
		{"negative qty", &service.Runtime{Pool: pool}, map[string]int{"a": -1}},
		{"qty too large", &service.Runtime{Pool: pool}, map[string]int{"a": MaxAvailable + 1}},
	}
	for _, tt := range tests {
		if _, err := New(tt.rt, Config{SeedStock: tt.seed}); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}

// counterValue returns the value of the counter name{label=value} in reg, 0
// if it has none.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestUndecodableBodyIsPermanent: a body that breaks the contract is an
// error the consume loop dead-letters at once, and changes nothing.
func TestUndecodableBodyIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]int{"a": 1})
	good := created(t, "o1", item("a", 1, 100))
	tests := []struct {
		name string
		e    event.Event
	}{
		{"not JSON", event.Event{ID: good.ID, Type: event.OrderCreated, OrderID: "o1", OccurredAt: good.OccurredAt, Body: []byte("{")}},
		{"other order", event.Event{ID: good.ID, Type: event.OrderCreated, OrderID: "o2", OccurredAt: good.OccurredAt, Body: good.Body}},
		{"no items", event.Event{ID: good.ID, Type: event.OrderCreated, OrderID: "o1", OccurredAt: good.OccurredAt,
			Body: []byte(`{"order_id":"o1","customer_id":"c1","items":[],"total_cents":0}`)}},
		{"payment.failed without reason", event.Event{ID: good.ID, Type: event.PaymentFailed, OrderID: "o1", OccurredAt: good.OccurredAt,
			Body: []byte(`{"order_id":"o1","amount_cents":1}`)}},
	}
	for _, tt := range tests {
		err := b.apply(t, tt.e)
		if err == nil || !consume.IsPermanent(err) {
			t.Errorf("%s: handle = %v, want a permanent error", tt.name, err)
		}
	}
	if s, _ := b.reservation(t, "o1"); s != "" {
		t.Errorf("reservation %s after bad events, want none", s)
	}
	if out := b.outbox(t); len(out) != 0 {
		t.Errorf("outbox %+v after bad events, want empty", out)
	}
}
