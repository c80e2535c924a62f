package check_test

import (
	"context"
	"encoding/json"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// The services' tables as docs/DESIGN.md and the services fix them. The check
// must not import the services, and neither do its tests: these are the
// same tables, written down again.
var migrations = map[string]fstest.MapFS{
	"orders": {"001_init.up.sql": {Data: []byte(`
CREATE TABLE orders (
  order_id        text PRIMARY KEY,
  customer_id     text NOT NULL,
  items           jsonb NOT NULL,
  total_cents     bigint NOT NULL CHECK (total_cents >= 0),
  status          text NOT NULL CHECK (status IN ('PENDING','RESERVED','CONFIRMED','CANCELLED')),
  reason          text NOT NULL DEFAULT '',
  payment_failed  boolean NOT NULL DEFAULT false,
  version         int NOT NULL DEFAULT 1,
  idempotency_key text UNIQUE,
  request_hash    text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);`)}},
	"inventory": {"001_init.up.sql": {Data: []byte(`
CREATE TABLE stock (
  sku        text PRIMARY KEY,
  available  int NOT NULL CHECK (available >= 0),
  reserved   int NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  sold       int NOT NULL DEFAULT 0 CHECK (sold >= 0),
  initial    int NOT NULL,
  adjusted   int NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE reservations (
  order_id   text PRIMARY KEY,
  status     text NOT NULL CHECK (status IN ('HELD','COMMITTED','RELEASED','REJECTED')),
  reason     text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE reservation_items (
  order_id text NOT NULL REFERENCES reservations(order_id),
  sku      text NOT NULL,
  qty      int NOT NULL CHECK (qty > 0),
  PRIMARY KEY (order_id, sku)
);`)}},
	"payment": {"001_init.up.sql": {Data: []byte(`
CREATE TABLE payments (
  order_id     text PRIMARY KEY,
  payment_id   text NOT NULL UNIQUE,
  amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
  status       text NOT NULL CHECK (status IN ('COMPLETED','FAILED')),
  reason       text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now()
);`)}},
	"readmodel": {"001_init.up.sql": {Data: []byte(`
CREATE TABLE order_views (
  order_id    text PRIMARY KEY,
  customer_id text NOT NULL,
  items       jsonb NOT NULL DEFAULT '[]',
  total_cents bigint NOT NULL,
  status      text NOT NULL,
  reason      text NOT NULL DEFAULT '',
  version     int NOT NULL DEFAULT 1,
  updated_at  timestamptz NOT NULL DEFAULT now()
);`)}},
}

// sagaOrder is one order of the test world and where its saga got to.
type sagaOrder struct {
	id, customer string
	items        []event.Item
	status       string // in the order service and the read model
	reason       string
	reservation  string // "", HELD, COMMITTED, RELEASED or REJECTED
	payment      string // "", COMPLETED or FAILED
	age          time.Duration
}

func (o sagaOrder) total() int64 {
	var sum int64
	for _, it := range o.items {
		sum += int64(it.Qty) * it.UnitPriceCents
	}
	return sum
}

// settled is how long ago the settled orders of the world were created;
// the checks run with a deadline between it and the in-flight order's age.
const (
	settled  = 2 * time.Hour
	deadline = time.Hour
)

// orders of the consistent world: every terminal path, and one order still
// in flight (RESERVED, stock held, younger than the deadline).
var orders = []sagaOrder{
	{id: "o-confirmed", customer: "c1", items: []event.Item{{SKU: "sku-a", Qty: 2, UnitPriceCents: 1000}},
		status: "CONFIRMED", reservation: "COMMITTED", payment: "COMPLETED", age: settled},
	{id: "o-confirmed-2", customer: "c2", items: []event.Item{{SKU: "sku-a", Qty: 1, UnitPriceCents: 1000}, {SKU: "sku-b", Qty: 2, UnitPriceCents: 250}},
		status: "CONFIRMED", reservation: "COMMITTED", payment: "COMPLETED", age: settled},
	{id: "o-declined", customer: "c1", items: []event.Item{{SKU: "sku-b", Qty: 1, UnitPriceCents: 500}},
		status: "CANCELLED", reason: event.ReasonPaymentFailed, reservation: "RELEASED", payment: "FAILED", age: settled},
	{id: "o-oos", customer: "c3", items: []event.Item{{SKU: "sku-c", Qty: 5, UnitPriceCents: 100}},
		status: "CANCELLED", reason: event.ReasonOutOfStock, reservation: "REJECTED", age: settled},
	{id: "o-unknown", customer: "c3", items: []event.Item{{SKU: "sku-x", Qty: 1, UnitPriceCents: 100}},
		status: "CANCELLED", reason: event.ReasonUnknownSKU, reservation: "REJECTED", age: settled},
	{id: "o-young", customer: "c4", items: []event.Item{{SKU: "sku-a", Qty: 3, UnitPriceCents: 1000}},
		status: "RESERVED", reservation: "HELD", age: 0},
}

// initialStock per SKU; available, reserved and sold follow from the orders.
var initialStock = map[string]int{"sku-a": 10, "sku-b": 5, "sku-c": 1}

// layout places the four service schemas in databases.
type layout string

const (
	oneDatabase        layout = "one database"           // all four schemas in one database (make up)
	databasePerService layout = "a database per service" // each schema in a database of its own
)

var layouts = []layout{oneDatabase, databasePerService}

// world is a consistent jetsaga: the four schemas in one database or in
// four, the streams holding every event of every order once.
type world struct {
	check  check.DBs                // each pool with search_path public, as `jetsaga check` may have it
	schema map[string]*pgxpool.Pool // one per service schema, search_path set
	js     jetstream.JetStream
	events map[string][]event.Event // per order, in causal order
	// legacy publishes the events on <type>.<order id>, as versions before
	// sharded subjects did.
	legacy bool
}

func newWorld(t *testing.T) *world { return newWorldIn(t, oneDatabase) }

func newWorldIn(t *testing.T, l layout) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	urls := map[string]string{} // schema → database
	one := testenv.DatabaseURL(t)
	for name := range migrations {
		urls[name] = one
		if l == databasePerService && name != "orders" {
			urls[name] = testenv.DatabaseURL(t)
		}
	}
	w := &world{schema: map[string]*pgxpool.Pool{}, events: map[string][]event.Event{}}
	for name, m := range migrations {
		w.schema[name] = testenv.PoolOn(t, urls[name], name, m)
	}
	// The checker's pool on each database has its own outbox and inbox in
	// public: one junk row there shows up if a query forgets its schema.
	checkers := map[string]*pgxpool.Pool{}
	for _, url := range urls {
		if checkers[url] != nil {
			continue
		}
		pool := testenv.PoolOn(t, url, "public", nil)
		if _, err := pool.Exec(ctx, `INSERT INTO outbox (event_id, event_type, order_id, occurred_at, body)
			VALUES ('01900000-0000-7000-8000-000000000000', 'order.created', 'not-a-service-row', now(), '{}')`); err != nil {
			t.Fatal(err)
		}
		checkers[url] = pool
	}
	w.check = check.DBs{Order: checkers[urls["orders"]], Inventory: checkers[urls["inventory"]],
		Payment: checkers[urls["payment"]], ReadModel: checkers[urls["readmodel"]]}

	nc := testenv.StartNATS(t).Connect(t)
	w.js = testenv.JetStream(t, nc)
	// A short duplicate window, so that a test can get an event id into a
	// stream twice.
	if err := stream.Ensure(ctx, w.js, stream.Config{Duplicates: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}

	held, sold := map[string]int{}, map[string]int{}
	for _, o := range orders {
		w.addOrder(t, o)
		for _, it := range o.items {
			switch o.reservation {
			case "HELD":
				held[it.SKU] += it.Qty
			case "COMMITTED":
				sold[it.SKU] += it.Qty
			}
		}
	}
	for sku, initial := range initialStock {
		w.exec(t, "inventory", `INSERT INTO stock (sku, available, reserved, sold, initial) VALUES ($1, $2, $3, $4, $5)`,
			sku, initial-held[sku]-sold[sku], held[sku], sold[sku], initial)
	}
	return w
}

// addOrder writes the order's rows in every schema and publishes its events.
func (w *world) addOrder(t *testing.T, o sagaOrder) {
	t.Helper()
	items, err := json.Marshal(o.items)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now().Add(-o.age)
	w.exec(t, "orders", `INSERT INTO orders (order_id, customer_id, items, total_cents, status, reason, payment_failed, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
		o.id, o.customer, items, o.total(), o.status, o.reason, o.payment == "FAILED", created)
	w.exec(t, "readmodel", `INSERT INTO order_views (order_id, customer_id, items, total_cents, status, reason)
		VALUES ($1, $2, $3, $4, $5, $6)`, o.id, o.customer, items, o.total(), o.status, o.reason)
	if o.reservation != "" {
		reason := ""
		if o.reservation == "REJECTED" {
			reason = o.reason
		}
		w.exec(t, "inventory", `INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3)`, o.id, o.reservation, reason)
		if o.reservation != "REJECTED" {
			for _, it := range o.items {
				w.exec(t, "inventory", `INSERT INTO reservation_items (order_id, sku, qty) VALUES ($1, $2, $3)`, o.id, it.SKU, it.Qty)
			}
		}
	}
	if o.payment != "" {
		reason := ""
		if o.payment == "FAILED" {
			reason = "declined_over_limit"
		}
		w.exec(t, "payment", `INSERT INTO payments (order_id, payment_id, amount_cents, status, reason) VALUES ($1, $2, $3, $4, $5)`,
			o.id, "pay-"+o.id, o.total(), o.payment, reason)
	}
	w.publishSaga(t, o, created)
}

// publishSaga publishes the events the order's saga produced, each caused
// by the one before, a millisecond apart.
func (w *world) publishSaga(t *testing.T, o sagaOrder, created time.Time) {
	t.Helper()
	id, total := o.id, o.total()
	payloads := []event.Payload{event.OrderCreatedPayload{OrderID: id, CustomerID: o.customer, Items: o.items, TotalCents: total}}
	switch {
	case o.reservation == "REJECTED":
		payloads = append(payloads,
			event.InventoryRejectedPayload{OrderID: id, Reason: o.reason},
			event.OrderCancelledPayload{OrderID: id, Reason: o.reason})
	case o.payment == "COMPLETED":
		payloads = append(payloads,
			event.InventoryReservedPayload{OrderID: id, Items: o.items, TotalCents: total},
			event.PaymentCompletedPayload{OrderID: id, PaymentID: "pay-" + id, AmountCents: total},
			event.OrderConfirmedPayload{OrderID: id, TotalCents: total})
	case o.payment == "FAILED":
		payloads = append(payloads,
			event.InventoryReservedPayload{OrderID: id, Items: o.items, TotalCents: total},
			event.PaymentFailedPayload{OrderID: id, Reason: "declined_over_limit", AmountCents: total},
			event.InventoryReleasedPayload{OrderID: id, Items: o.items},
			event.OrderCancelledPayload{OrderID: id, Reason: event.ReasonPaymentFailed})
	case o.reservation == "HELD":
		payloads = append(payloads, event.InventoryReservedPayload{OrderID: id, Items: o.items, TotalCents: total})
	}
	cause := ""
	for i, p := range payloads {
		e := newEvent(t, p, id, cause, created.Add(time.Duration(i)*time.Millisecond))
		w.publish(t, e)
		w.events[id] = append(w.events[id], e)
		cause = e.ID
	}
}

func newEvent(t *testing.T, p event.Payload, orderID, cause string, at time.Time) event.Event {
	t.Helper()
	e, err := event.New(p.EventType(), orderID, cause, p, at)
	if err != nil {
		t.Fatalf("new %s: %v", p.EventType(), err)
	}
	return e
}

func (w *world) publish(t *testing.T, e event.Event) *jetstream.PubAck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := e.Msg()
	if w.legacy {
		m.Subject = event.LegacySubject(e.Type, e.OrderID)
	}
	ack, err := w.js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatalf("publish %s: %v", e.Subject(), err)
	}
	return ack
}

// event returns the order's event of type typ.
func (w *world) event(t *testing.T, orderID string, typ event.Type) event.Event {
	t.Helper()
	for _, e := range w.events[orderID] {
		if e.Type == typ {
			return e
		}
	}
	t.Fatalf("order %s has no %s event", orderID, typ)
	return event.Event{}
}

// exec runs SQL in a service schema, unqualified, as that service would.
func (w *world) exec(t *testing.T, schema, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.schema[schema].Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %s: %v", schema, sql, err)
	}
}
