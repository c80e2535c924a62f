package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// bundle is what a handler or API test needs: a fresh payment schema and the
// service on it.
type bundle struct {
	pool *pgxpool.Pool
	svc  *Service
	reg  *prometheus.Registry
}

func setup(t *testing.T, cfg Config) bundle {
	t.Helper()
	pool := testenv.Pool(t, Schema, Migrations())
	reg := prometheus.NewRegistry()
	svc, err := New(&service.Runtime{
		Pool:     pool,
		Log:      zaptest.NewLogger(t),
		Registry: reg,
		Notify:   func() {},
		Now:      time.Now,
	}, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return bundle{pool: pool, svc: svc, reg: reg}
}

// apply runs the handler on e in one transaction, as the consume loop does
// (minus the inbox, so that the business key is what is tested).
//
// An inventory.reserved comes after its order's order.created: unless the
// test told payment of the order already (learn), it learns the order's
// total from the event, as payment-orders would have from order.created.
func (b bundle) apply(t *testing.T, e event.Event) {
	t.Helper()
	if e.Type == event.InventoryReserved {
		p, err := event.Decode[event.InventoryReservedPayload](e)
		if err == nil {
			b.learn(t, e.OrderID, p.TotalCents)
		}
	}
	b.applyOnly(t, e)
}

// learn hands payment-orders the order.created of an order worth
// totalCents; an order it knows already keeps its first total.
func (b bundle) learn(t *testing.T, orderID string, totalCents int64) {
	t.Helper()
	e, err := event.New(event.OrderCreated, orderID, "", event.OrderCreatedPayload{
		OrderID: orderID, CustomerID: "c1", TotalCents: totalCents,
		Items: []event.Item{{SKU: "sku-1", Qty: 1, UnitPriceCents: totalCents}},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.applyOnly(t, e)
}

// applyOnly runs the handler of e's consumer on e in one transaction.
func (b bundle) applyOnly(t *testing.T, e event.Event) {
	t.Helper()
	if err := b.try(t, e); err != nil {
		t.Fatalf("handle %s %s: %v", e.Type, e.OrderID, err)
	}
}

// try is applyOnly returning the handler's error.
func (b bundle) try(t *testing.T, e event.Event) error {
	t.Helper()
	handle := b.svc.handle
	if e.Type.Stream() == stream.Orders {
		handle = b.svc.handleCancelled
	}
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := handle(ctx, tx, e); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (b bundle) payments(t *testing.T) []Payment {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT order_id, payment_id, amount_cents, status, reason FROM payments ORDER BY order_id`)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Payment, error) {
		var p Payment
		err := r.Scan(&p.OrderID, &p.PaymentID, &p.AmountCents, &p.Status, &p.Reason)
		return p, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

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

// reserved builds inventory.reserved for orderID worth totalCents, with a
// new event id.
func reserved(t *testing.T, orderID string, totalCents int64) event.Event {
	t.Helper()
	e, err := event.New(event.InventoryReserved, orderID, uuid.Must(uuid.NewV7()).String(),
		event.InventoryReservedPayload{
			OrderID:    orderID,
			Items:      []event.Item{{SKU: "sku-1", Qty: 1, UnitPriceCents: totalCents}},
			TotalCents: totalCents,
		}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCharge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        Config
		amount     int64
		wantStatus Status
		wantReason string
	}{
		{"approved", Config{}, 4999, Completed, ""},
		{"free order approved", Config{DeclineOverCents: 100}, 0, Completed, ""},
		{"declined over the limit", Config{DeclineOverCents: 1000}, 1001, Failed, ReasonDeclinedOverLimit},
		{"declined at random", Config{DeclineRate: 1, Seed: 3}, 10, Failed, ReasonDeclinedRandom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.cfg)
			e := reserved(t, "o1", tt.amount)
			b.apply(t, e)

			ps := b.payments(t)
			if len(ps) != 1 {
				t.Fatalf("%d payments, want 1", len(ps))
			}
			p := ps[0]
			if p.OrderID != "o1" || p.AmountCents != tt.amount || p.Status != tt.wantStatus || p.Reason != tt.wantReason {
				t.Errorf("payment %+v, want o1 %d %s %q", p, tt.amount, tt.wantStatus, tt.wantReason)
			}
			if u, err := uuid.Parse(p.PaymentID); err != nil || u.Version() != 7 {
				t.Errorf("payment id %q is not a UUIDv7", p.PaymentID)
			}

			out := b.outbox(t)
			if len(out) != 1 {
				t.Fatalf("outbox has %d rows, want 1", len(out))
			}
			if out[0].OrderID != "o1" || out[0].CausationID != e.ID {
				t.Errorf("outbox row for %q caused by %q, want o1 caused by %s", out[0].OrderID, out[0].CausationID, e.ID)
			}
			switch tt.wantStatus {
			case Completed:
				var body event.PaymentCompletedPayload
				if out[0].Type != event.PaymentCompleted || json.Unmarshal(out[0].Body, &body) != nil {
					t.Fatalf("outbox %s %s, want payment.completed", out[0].Type, out[0].Body)
				}
				if body.PaymentID != p.PaymentID || body.AmountCents != tt.amount {
					t.Errorf("payment.completed %+v, want payment %s amount %d", body, p.PaymentID, tt.amount)
				}
			case Failed:
				var body event.PaymentFailedPayload
				if out[0].Type != event.PaymentFailed || json.Unmarshal(out[0].Body, &body) != nil {
					t.Fatalf("outbox %s %s, want payment.failed", out[0].Type, out[0].Body)
				}
				if body.Reason != tt.wantReason || body.AmountCents != tt.amount {
					t.Errorf("payment.failed %+v, want reason %s amount %d", body, tt.wantReason, tt.amount)
				}
			}
			status := metricStatus(tt.wantStatus)
			if got := counterValue(t, b.reg, "jetsaga_payments_total", "status", status); got != 1 {
				t.Errorf("jetsaga_payments_total{status=%q} = %v, want 1", status, got)
			}
		})
	}
}

// TestChargeOncePerOrder: inventory.reserved delivered again, or re-emitted
// with a new event id, charges nothing more; one with another amount than
// the order's total is refused.
func TestChargeOncePerOrder(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{}, {DeclineRate: 1}} {
		b := setup(t, cfg)
		first := reserved(t, "o1", 500)
		b.apply(t, first)
		wantPay, wantOut := b.payments(t), b.outbox(t)

		b.apply(t, first)
		b.apply(t, reserved(t, "o1", 500))
		if err := b.try(t, reserved(t, "o1", 7)); !consume.IsPermanent(err) || !errors.Is(err, ErrDisagrees) {
			t.Errorf("rate %v: inventory.reserved of another amount: %v, want a permanent ErrDisagrees", cfg.DeclineRate, err)
		}

		if got := b.payments(t); !slices.Equal(got, wantPay) {
			t.Errorf("rate %v: payments %+v, want %+v", cfg.DeclineRate, got, wantPay)
		}
		if got := b.outbox(t); len(got) != len(wantOut) {
			t.Errorf("rate %v: outbox has %d rows, want %d", cfg.DeclineRate, len(got), len(wantOut))
		}
		total := counterValue(t, b.reg, "jetsaga_payments_total", "status", "completed") +
			counterValue(t, b.reg, "jetsaga_payments_total", "status", "failed")
		if total != 1 {
			t.Errorf("rate %v: jetsaga_payments_total sums to %v, want 1", cfg.DeclineRate, total)
		}
	}
}

// TestChargeRepeatsAcrossRuns: two services with the same seed, on two
// databases, decide every order alike.
func TestChargeRepeatsAcrossRuns(t *testing.T) {
	t.Parallel()
	cfg := Config{DeclineRate: 0.5, Seed: 2024}
	a, b := setup(t, cfg), setup(t, cfg)
	for _, id := range []string{"o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"} {
		a.apply(t, reserved(t, id, 100))
		b.apply(t, reserved(t, id, 100))
	}
	pa, pb := a.payments(t), b.payments(t)
	for i := range pa {
		if pa[i].Status != pb[i].Status || pa[i].Reason != pb[i].Reason {
			t.Errorf("order %s: %s %q in one run, %s %q in the other", pa[i].OrderID, pa[i].Status, pa[i].Reason, pb[i].Status, pb[i].Reason)
		}
	}
}

func TestUnhandledEventTypeIsNoOp(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	e, err := event.New(event.InventoryRejected, "o1", uuid.Must(uuid.NewV7()).String(),
		event.InventoryRejectedPayload{OrderID: "o1", Reason: event.ReasonOutOfStock}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.apply(t, e)
	if ps, out := b.payments(t), b.outbox(t); len(ps) != 0 || len(out) != 0 {
		t.Errorf("payments %v, outbox %v; want none", ps, out)
	}
}

// TestUndecodableBodyIsPermanent: a body that breaks the contract is an
// error the consume loop dead-letters at once, and charges nothing.
func TestUndecodableBodyIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	good := reserved(t, "o1", 100)
	tests := []struct {
		name string
		body string
	}{
		{"not JSON", "{"},
		{"total does not match items", `{"order_id":"o1","items":[{"sku":"a","qty":1,"unit_price_cents":5}],"total_cents":6}`},
		{"other order", `{"order_id":"o2","items":[{"sku":"a","qty":1,"unit_price_cents":5}],"total_cents":5}`},
	}
	ctx := context.Background()
	for _, tt := range tests {
		e := good
		e.Body = []byte(tt.body)
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = b.svc.handle(ctx, tx, e)
		_ = tx.Rollback(ctx)
		if err == nil || !consume.IsPermanent(err) {
			t.Errorf("%s: handle = %v, want a permanent error", tt.name, err)
		}
	}
	if ps := b.payments(t); len(ps) != 0 {
		t.Errorf("payments %+v after bad events, want none", ps)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, Schema, Migrations())
	tests := []struct {
		name string
		rt   *service.Runtime
		cfg  Config
	}{
		{"no runtime", nil, Config{}},
		{"no pool", &service.Runtime{}, Config{}},
		{"negative limit", &service.Runtime{Pool: pool}, Config{DeclineOverCents: -1}},
		{"rate over 1", &service.Runtime{Pool: pool}, Config{DeclineRate: 2}},
	}
	for _, tt := range tests {
		if _, err := New(tt.rt, tt.cfg); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}

func TestConsumers(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	cs := b.svc.Consumers()
	if len(cs) != 2 {
		t.Fatalf("%d consumers, want 2", len(cs))
	}
	// The order events first: a batch learns an order's total before it
	// charges the order.
	if c := cs[0]; c.Stream != stream.Orders || c.Durable != "payment-orders" ||
		!slices.Equal(c.Subjects, []string{"order.created.>", "order.confirmed.>", "order.cancelled.>"}) || c.Handle == nil || c.HandleBatch == nil {
		t.Errorf("consumer 0 = %s %s %v", c.Stream, c.Durable, c.Subjects)
	}
	if c := cs[1]; c.Stream != stream.Inventory || c.Durable != "payment-inventory" ||
		!slices.Equal(c.Subjects, []string{"inventory.reserved.>"}) || c.Handle == nil || c.HandleBatch == nil {
		t.Errorf("consumer 1 = %s %s %v", c.Stream, c.Durable, c.Subjects)
	}
	spec := Spec(Config{})
	if spec.Name != "payment" || spec.Schema != "payment" || spec.Migrations == nil || spec.New == nil {
		t.Errorf("Spec = %+v", spec)
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

// The set-based handler charges each order of a batch once, as the one-by-one
// handler does: the same payments and the same events, duplicates in the
// batch and orders paid before included.
func TestHandleBatchMatchesHandle(t *testing.T) {
	t.Parallel()
	cfg := Config{DeclineRate: 0.5, Seed: 11}
	one, set := setup(t, cfg), setup(t, cfg)
	paidBefore := reserved(t, "o0", 100)
	one.apply(t, paidBefore)
	set.apply(t, paidBefore)

	var batch []event.Event
	for _, id := range []string{"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7"} {
		batch = append(batch, reserved(t, id, 100))
	}
	batch = append(batch, reserved(t, "o3", 100), reserved(t, "o5", 100)) // re-emitted: no-ops
	for _, e := range batch {
		set.learn(t, e.OrderID, 100)
	}
	for _, e := range batch {
		one.apply(t, e)
	}
	ctx := context.Background()
	tx, err := set.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	cctx, col := outbox.Collect(ctx)
	if err := set.svc.handleBatch(cctx, tx, batch); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// What it told the relay it wrote is what the outbox holds.
	var wroteIDs, heldIDs []string
	for _, r := range col.Rows() {
		wroteIDs = append(wroteIDs, fmt.Sprintf("%d %s", r.Seq, r.Event.ID))
	}
	rows, err := set.pool.Query(ctx, `SELECT seq::text || ' ' || event_id::text FROM outbox WHERE seq > 1 ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	if heldIDs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wroteIDs, heldIDs) {
		t.Errorf("rows reported written %v, outbox holds %v", wroteIDs, heldIDs)
	}

	po, ps := one.payments(t), set.payments(t)
	if len(po) != 8 || len(ps) != len(po) {
		t.Fatalf("%d payments one by one, %d set-based; want 8 each", len(po), len(ps))
	}
	for i := range po {
		if po[i].OrderID != ps[i].OrderID || po[i].Status != ps[i].Status || po[i].Reason != ps[i].Reason || po[i].AmountCents != ps[i].AmountCents {
			t.Errorf("payment %d: %+v one by one, %+v set-based", i, po[i], ps[i])
		}
	}
	oo, os := one.outbox(t), set.outbox(t)
	if len(oo) != 8 || len(os) != len(oo) {
		t.Fatalf("%d outbox rows one by one, %d set-based; want 8 each", len(oo), len(os))
	}
	causes := map[string]string{}
	for _, e := range batch[:8] {
		causes[e.OrderID] = e.ID
	}
	for i := range oo {
		if oo[i].Type != os[i].Type || oo[i].OrderID != os[i].OrderID {
			t.Errorf("outbox row %d: %s %s one by one, %s %s set-based", i, oo[i].Type, oo[i].OrderID, os[i].Type, os[i].OrderID)
		}
		if i > 0 && os[i].CausationID != causes[os[i].OrderID] {
			t.Errorf("outbox row %d (%s) caused by %s, want the batch's first inventory.reserved %s", i, os[i].OrderID, os[i].CausationID, causes[os[i].OrderID])
		}
	}
	total := counterValue(t, set.reg, "jetsaga_payments_total", "status", "completed") +
		counterValue(t, set.reg, "jetsaga_payments_total", "status", "failed")
	if total != 8 {
		t.Errorf("jetsaga_payments_total sums to %v set-based, want 8", total)
	}
}

// Every hop checks what it is told: payment charges only the total of the
// order as order.created told it (a forged inventory.reserved of 0 cents for
// a 100,000-cent order is refused, and charges nothing), waits for the
// order.created of an order it does not know yet, and refunds no charge of
// an order it saw confirmed (a forged order.cancelled is refused).
func TestChecksWhatItIsTold(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})

	b.learn(t, "big", 100_000)
	forged := reserved(t, "big", 0)
	if err := b.try(t, forged); !consume.IsPermanent(err) || !errors.Is(err, ErrDisagrees) {
		t.Fatalf("inventory.reserved of 0 cents for a 100,000-cent order: %v, want a permanent ErrDisagrees", err)
	}
	if got := b.payments(t); len(got) != 0 {
		t.Fatalf("payments after the forged reservation: %+v, want none", got)
	}
	b.applyOnly(t, reserved(t, "big", 100_000))
	if got := b.payments(t); len(got) != 1 || got[0].AmountCents != 100_000 {
		t.Fatalf("payments after the genuine reservation: %+v, want one of 100000", got)
	}

	early := reserved(t, "unknown", 100)
	if err := b.try(t, early); err == nil || consume.IsPermanent(err) || !errors.Is(err, errNoOrder) {
		t.Fatalf("inventory.reserved before its order.created: %v, want errNoOrder, retried", err)
	}

	confirmed, err := event.New(event.OrderConfirmed, "big", uuid.Must(uuid.NewV7()).String(),
		event.OrderConfirmedPayload{OrderID: "big", TotalCents: 100_000}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.applyOnly(t, confirmed)
	cancelled, err := event.New(event.OrderCancelled, "big", uuid.Must(uuid.NewV7()).String(),
		event.OrderCancelledPayload{OrderID: "big", Reason: event.ReasonTimeout}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.try(t, cancelled); !consume.IsPermanent(err) || !errors.Is(err, ErrDisagrees) {
		t.Fatalf("order.cancelled of a confirmed order: %v, want a permanent ErrDisagrees", err)
	}
	if got := b.payments(t); len(got) != 1 || got[0].Status != Completed {
		t.Fatalf("payments after the forged cancellation: %+v, want the charge COMPLETED", got)
	}
}

// A forged inventory.reserved in the same batch as the genuine one, after
// it, is not passed over as a repeat: the two ask for different amounts, so
// the batch is refused and, handled one by one, the forged one is refused
// on its own (dead-lettered) while the genuine one is charged.
func TestBatchWithADisagreeingRepeatIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.learn(t, "big", 100_000)
	genuine, forged := reserved(t, "big", 100_000), reserved(t, "big", 0)
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = b.svc.handleBatch(ctx, tx, []event.Event{genuine, forged})
	_ = tx.Rollback(ctx)
	var later *consume.Later
	if err == nil || errors.As(err, &later) {
		t.Fatalf("a batch of the genuine inventory.reserved then a forged one of 0 cents: %v, want it refused", err)
	}
	if err := b.try(t, forged); !consume.IsPermanent(err) || !errors.Is(err, ErrDisagrees) {
		t.Fatalf("the forged one alone: %v, want a permanent ErrDisagrees", err)
	}
	b.applyOnly(t, genuine)
	if got := b.payments(t); len(got) != 1 || got[0].AmountCents != 100_000 {
		t.Fatalf("payments: %+v, want one of 100000", got)
	}
}
