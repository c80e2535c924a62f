package order

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// bundle is what a store, handler or HTTP test needs: the service on a
// fresh "orders" schema.
type bundle struct {
	svc      *Service
	pool     *pgxpool.Pool
	reg      *prometheus.Registry
	notified *atomic.Int64 // calls of rt.Notify
	handed   *sync.Map     // event id -> outbox seq, of the rows given to rt.Hand
}

// clockBase is where the test clock starts; each reading is a millisecond
// later, at microsecond precision so that Postgres stores it as is.
var clockBase = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func setup(t *testing.T) bundle {
	t.Helper()
	pool := testenv.Pool(t, Schema, Migrations())
	var ticks atomic.Int64
	notified := &atomic.Int64{}
	handed := &sync.Map{}
	reg := prometheus.NewRegistry()
	svc, err := NewService(&service.Runtime{
		Pool:     pool,
		Log:      zaptest.NewLogger(t),
		Registry: reg,
		Notify:   func() { notified.Add(1) },
		Hand: func(rows []outbox.Row) {
			for _, r := range rows {
				handed.Store(r.Event.ID, r.Seq)
			}
		},
		Now: func() time.Time { return clockBase.Add(time.Duration(ticks.Add(1)) * time.Millisecond) },
	}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return bundle{svc: svc, pool: pool, reg: reg, notified: notified, handed: handed}
}

var testItems = []event.Item{{SKU: "sku-1", Qty: 2, UnitPriceCents: 1999}, {SKU: "sku-2", Qty: 1, UnitPriceCents: 500}}

const testTotal = 2*1999 + 500

// placeOrder places a PENDING order (and its order.created) as POST /orders does.
func placeOrder(t *testing.T, b bundle) Order {
	t.Helper()
	id, err := newOrderID()
	if err != nil {
		t.Fatal(err)
	}
	o, err := New(id, "cust-1", testItems, b.svc.now())
	if err != nil {
		t.Fatal(err)
	}
	placed, replayed, err := b.svc.place(t.Context(), o, "", requestHash(PlaceRequest{CustomerID: o.CustomerID, Items: o.Items}))
	if err != nil || replayed {
		t.Fatalf("place: replayed %t, err %v", replayed, err)
	}
	return placed
}

// newEvent builds a valid event of type typ for orderID, caused by a random
// event id, carrying reason where the type has one.
func newEvent(t *testing.T, typ event.Type, orderID, reason string) event.Event {
	t.Helper()
	var p event.Payload
	switch typ {
	case event.InventoryReserved:
		p = event.InventoryReservedPayload{OrderID: orderID, Items: testItems, TotalCents: testTotal}
	case event.InventoryRejected:
		p = event.InventoryRejectedPayload{OrderID: orderID, Reason: reason, SKU: "sku-2"}
	case event.PaymentCompleted:
		p = event.PaymentCompletedPayload{OrderID: orderID, PaymentID: "pay-" + orderID, AmountCents: testTotal}
	case event.PaymentFailed:
		p = event.PaymentFailedPayload{OrderID: orderID, Reason: "card declined", AmountCents: testTotal}
	case event.InventoryReleased:
		p = event.InventoryReleasedPayload{OrderID: orderID, Items: testItems}
	case event.OrderCreated:
		p = event.OrderCreatedPayload{OrderID: orderID, CustomerID: "c", Items: testItems, TotalCents: testTotal}
	default:
		t.Fatalf("newEvent: no payload for %s", typ)
	}
	causation := ""
	if typ != event.OrderCreated {
		causation = uuid.Must(uuid.NewV7()).String()
	}
	e, err := event.New(typ, orderID, causation, p, time.Now())
	if err != nil {
		t.Fatalf("newEvent %s: %v", typ, err)
	}
	return e
}

// deliver runs the handler in its own transaction, as the consumer loop
// does (without the inbox, so that duplicates reach the handler), and
// commits when it succeeds.
func deliver(ctx context.Context, b bundle, e event.Event) error {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := b.svc.Handle(ctx, tx, e); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func mustDeliver(t *testing.T, b bundle, e event.Event) {
	t.Helper()
	if err := deliver(t.Context(), b, e); err != nil {
		t.Fatalf("deliver %s: %v", e.Type, err)
	}
}

// mustDeliverBatch runs the set-based handler over events in one
// transaction and commits.
func mustDeliverBatch(t *testing.T, b bundle, events []event.Event) {
	t.Helper()
	if err := deliverBatch(t.Context(), b, b.svc.HandleBatch, events); err != nil {
		t.Fatalf("deliver a batch of %d: %v", len(events), err)
	}
}

// deliverBatch runs a batch handler over events in one transaction and
// commits.
func deliverBatch(ctx context.Context, b bundle, h func(context.Context, pgx.Tx, []event.Event) error, events []event.Event) error {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := h(ctx, tx, events); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// deliverRetrying delivers events one by one as the consumer loop does: an
// event refused as too early is retried after the others, until every event
// is handled; any other error fails the test.
func deliverRetrying(t *testing.T, b bundle, events []event.Event) {
	t.Helper()
	pending := events
	for round := 0; len(pending) > 0; round++ {
		if round > len(events) {
			t.Fatalf("%d events still too early after %d rounds", len(pending), round)
		}
		var again []event.Event
		for _, e := range pending {
			err := deliver(t.Context(), b, e)
			switch {
			case err == nil:
			case errors.Is(err, ErrTooEarly) && !consume.IsPermanent(err):
				again = append(again, e)
			default:
				t.Fatalf("deliver %s: %v", e.Type, err)
			}
		}
		pending = again
	}
}

// aged returns e as if it had occurred a minute before the service's clock.
func aged(e event.Event) event.Event {
	e.OccurredAt = clockBase.Add(-time.Minute)
	return e
}

// outboxRow is one row of the outbox table.
type outboxRow struct {
	Type        event.Type
	OrderID     string
	CausationID string
	Body        []byte
}

// outboxOf returns the outbox rows of an order in insertion order.
func outboxOf(t *testing.T, b bundle, orderID string) []outboxRow {
	t.Helper()
	rows, err := b.pool.Query(t.Context(), `
		SELECT event_type, order_id, causation_id, body FROM outbox WHERE order_id = $1 ORDER BY seq`, orderID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var typ string
		if err := rows.Scan(&typ, &r.OrderID, &r.CausationID, &r.Body); err != nil {
			t.Fatal(err)
		}
		r.Type = event.Type(typ)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func outboxTypes(rows []outboxRow) []event.Type {
	out := make([]event.Type, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.Type)
	}
	return out
}

func loadOrder(t *testing.T, b bundle, id string) Order {
	t.Helper()
	o, err := getOrder(t.Context(), b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func countRows(t *testing.T, b bundle, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
