package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/access"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/inventory"
	"github.com/jetsaga/jetsaga/order"
	"github.com/jetsaga/jetsaga/payment"
	"github.com/jetsaga/jetsaga/readmodel"
)

func TestMain(m *testing.M) { testenv.Main(m, removeBinaries) }

// world is the saga in one test process: an embedded NATS server, one
// database with the four service schemas, and the four services run by the
// same runtime as their binaries.
type world struct {
	t       *testing.T
	nats    *testenv.NATS    // nil on a cluster
	cluster *testenv.Cluster // nil on one server
	natsURL string
	js      jetstream.JetStream // the operator's on a world with identities
	reader  jetstream.JetStream // the reader's (check, trace); js without identities
	dbURL   string
	db      *pgxpool.Pool // no search_path: queries name the schemas
	opts    worldOptions

	mu    sync.Mutex
	svcs  map[string]*running
	urlOf func(service string) string // set when the services are processes
}

type worldOptions struct {
	seedStock        map[string]int
	declineOverCents int64
	dupWindow        time.Duration
	ackWait          time.Duration
	faults           fault.Config            // on every service
	faultsFor        map[string]fault.Config // per service, instead of faults
	maxDeliver       int
	retryMax         time.Duration // the services' --retry-max (0: its default)
	sagaDeadline     time.Duration // the order service's --saga-deadline; 0: off
	dbURL            string        // default: a fresh database on the shared cluster
	// tracerProvider, when set, gives each service its tracer provider
	// (nil: tracing off, as by default).
	tracerProvider func(service string) trace.TracerProvider
	// identities runs NATS with the dev identities of
	// deploy/nats/identities: every service connects as itself, the
	// streams are provisioned by the operator, check reads as the reader.
	identities bool
	// pgRoles runs each service as its PostgreSQL role of
	// deploy/postgres/roles.sql (applied to dbURL already), check as
	// jetsaga_checker.
	pgRoles bool
	// cluster runs a 3-node JetStream cluster, streams R3.
	cluster bool
	// instances of each service (default 1); instance i > 1 of order is
	// named "order#i" in start and stop.
	instances int
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	addr   string
}

var serviceNames = []string{"order", "inventory", "payment", "readmodel"}

func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	w := &world{t: t, dbURL: o.dbURL, opts: o, svcs: map[string]*running{}}
	no := testenv.NATSOptions{}
	if o.identities {
		no.Auth = devIdentity(t, access.AuthFile)
	}
	var connect func(opts ...nats.Option) *nats.Conn
	if o.cluster {
		w.cluster = testenv.StartCluster(t, 3, no)
		w.natsURL = w.cluster.URL()
		connect = func(opts ...nats.Option) *nats.Conn { return w.cluster.Connect(t, opts...) }
	} else {
		w.nats = testenv.StartNATSWith(t, no)
		w.natsURL = w.nats.URL()
		connect = func(opts ...nats.Option) *nats.Conn { return w.nats.Connect(t, opts...) }
	}
	if o.identities {
		w.js = testenv.JetStream(t, connect(identityOptions(t, access.Operator)...))
		w.reader = testenv.JetStream(t, connect(identityOptions(t, access.Reader)...))
	} else {
		w.js = testenv.JetStream(t, connect())
		w.reader = w.js
	}
	if o.identities || o.cluster {
		w.provision()
	}
	if w.dbURL == "" {
		w.dbURL = testenv.DatabaseURL(t)
	}
	db, err := pgxpool.New(t.Context(), w.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	w.db = db
	t.Cleanup(func() {
		for _, name := range w.instanceNames() {
			w.stop(name)
		}
	})
	for _, name := range w.instanceNames() {
		w.start(name)
	}
	return w
}

// instanceNames are the names of every service instance: "order",
// "order#2", ...
func (w *world) instanceNames() []string {
	var out []string
	for _, name := range serviceNames {
		out = append(out, name)
		for i := 2; i <= w.opts.instances; i++ {
			out = append(out, fmt.Sprintf("%s#%d", name, i))
		}
	}
	return out
}

// provision creates the streams as jetsaga provision does: under the
// operator identity, R3 on a cluster.
func (w *world) provision() {
	w.t.Helper()
	cfg := stream.Config{Replicas: 1, Duplicates: w.opts.dupWindow}
	if w.opts.cluster {
		cfg.Replicas = 3
	}
	testenv.WaitFor(w.t, 30*time.Second, "the streams provisioned", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return stream.Ensure(ctx, w.js, cfg) == nil
	})
}

// devIdentity is a file of deploy/nats/identities.
func devIdentity(t *testing.T, file string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "deploy", "nats", "identities", file))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// identityOptions connect as a dev identity (its nkey seed, its inbox prefix).
func identityOptions(t *testing.T, identity string) []nats.Option {
	t.Helper()
	opts, err := identityClient(t, identity).Options()
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

func identityClient(t *testing.T, identity string) access.Client {
	return access.Client{NkeySeedFile: devIdentity(t, access.SeedFile(identity)), InboxPrefix: access.InboxPrefix(identity)}
}

func (w *world) spec(name string) service.Spec {
	name, _, _ = strings.Cut(name, "#")
	switch name {
	case "order":
		return order.Spec(order.Config{SagaDeadline: w.opts.sagaDeadline})
	case "inventory":
		return inventory.Spec(inventory.Config{SeedStock: w.opts.seedStock})
	case "payment":
		return payment.Spec(payment.Config{DeclineOverCents: w.opts.declineOverCents, Seed: 1})
	case "readmodel":
		return readmodel.Spec(readmodel.Config{})
	}
	w.t.Fatalf("unknown service %s", name)
	return service.Spec{}
}

// start runs a service and waits until it is ready.
func (w *world) start(name string) {
	w.t.Helper()
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	faults := w.opts.faults
	if f, ok := w.opts.faultsFor[name]; ok {
		faults = f
	}
	svc, _, _ := strings.Cut(name, "#")
	if f, ok := w.opts.faultsFor[svc]; ok {
		faults = f
	}
	dbURL := w.dbURL
	if w.opts.pgRoles {
		dbURL = asRole(dbURL, "jetsaga_"+svc)
	}
	cfg := service.Config{
		Name: svc, NATSURL: w.natsURL, DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0",
		StreamsByOperator: w.opts.identities || w.opts.cluster,
		Workers:           2, DupWindow: w.opts.dupWindow, AckWait: w.opts.ackWait, Faults: faults, MaxDeliver: w.opts.maxDeliver,
		RetryMax: w.opts.retryMax,
		Exit:     func(code int) { w.t.Errorf("%s: injected crash (exit %d) in an in-process world", name, code) },
		Logger:   zaptest.NewLogger(w.t, zaptest.Level(zap.WarnLevel)),
		OnReady:  func(addr string) { ready <- addr },
	}
	if w.opts.tracerProvider != nil {
		cfg.TracerProvider = w.opts.tracerProvider(name)
	}
	if w.opts.identities {
		cfg.NATS = identityClient(w.t, svc)
	}
	if w.opts.cluster {
		cfg.Replicas = 3
	}
	go func() { r.done <- service.Run(ctx, cfg, w.spec(name)) }()
	select {
	case r.addr = <-ready:
	case err := <-r.done:
		w.t.Fatalf("%s stopped before it was ready: %v", name, err)
	case <-time.After(60 * time.Second):
		w.t.Fatalf("%s not ready after 60s", name)
	}
	w.mu.Lock()
	w.svcs[name] = r
	w.mu.Unlock()
}

// stop drains a service as SIGTERM would and waits for it.
func (w *world) stop(name string) {
	w.mu.Lock()
	r := w.svcs[name]
	delete(w.svcs, name)
	w.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			w.t.Errorf("%s: %v", name, err)
		}
	case <-time.After(30 * time.Second):
		w.t.Errorf("%s did not drain within 30s", name)
	}
}

func (w *world) url(name string) string {
	if w.urlOf != nil {
		return w.urlOf(name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return "http://" + w.svcs[name].addr
}

type item struct {
	SKU            string `json:"sku"`
	Qty            int    `json:"qty"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// place posts an order and returns its id.
func (w *world) place(customer string, items ...item) string {
	w.t.Helper()
	id, err := w.post("", customer, items)
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

// placeRetrying posts with an Idempotency-Key until the order service
// accepts it (it may be reconnecting), so the order is placed once.
func (w *world) placeRetrying(key, customer string, items ...item) string {
	w.t.Helper()
	var id string
	testenv.WaitFor(w.t, 30*time.Second, "the order service to accept "+key, func() bool {
		var err error
		id, err = w.post(key, customer, items)
		return err == nil
	})
	return id
}

func (w *world) post(key, customer string, items []item) (string, error) {
	body, _ := json.Marshal(map[string]any{"customer_id": customer, "items": items})
	req, err := http.NewRequest(http.MethodPost, w.url("order")+"/orders", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /orders: %s %s", resp.Status, raw)
	}
	var out struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", err
	}
	return out.OrderID, nil
}

func (w *world) scalar(sql string, args ...any) string {
	w.t.Helper()
	var s string
	if err := w.db.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		w.t.Fatalf("%s: %v", strings.Join(strings.Fields(sql), " "), err)
	}
	return s
}

func (w *world) orderStatus(id string) string {
	return w.scalar(`SELECT status || '/' || reason FROM orders.orders WHERE order_id = $1`, id)
}

// viewStatus is the read model's status/reason, or "" before it has the order.
func (w *world) viewStatus(id string) string {
	var s string
	err := w.db.QueryRow(context.Background(), `SELECT status || '/' || reason FROM readmodel.order_views WHERE order_id = $1`, id).Scan(&s)
	if err != nil {
		return ""
	}
	return s
}

// waitTerminal waits until the order service and the read model both hold a
// terminal status for every id.
func (w *world) waitTerminal(ids ...string) {
	w.t.Helper()
	w.waitTerminalWithin(60*time.Second, ids...)
}

// waitTerminalWithin is waitTerminal with a deadline of its own.
func (w *world) waitTerminalWithin(d time.Duration, ids ...string) {
	w.t.Helper()
	testenv.WaitFor(w.t, d, fmt.Sprintf("%d orders terminal in the order service and the read model", len(ids)), func() bool {
		var n int
		err := w.db.QueryRow(context.Background(), `
			SELECT count(*) FROM orders.orders o JOIN readmodel.order_views v USING (order_id)
			WHERE o.order_id = ANY($1) AND o.status IN ('CONFIRMED','CANCELLED') AND v.status = o.status`, ids).Scan(&n)
		return err == nil && n == len(ids)
	})
}

// quiesce waits for empty outboxes and caught-up consumers, then asserts
// docs/DESIGN.md's invariants with jetsaga check.
func (w *world) checkInvariants() {
	w.t.Helper()
	ctx := context.Background()
	db := w.db
	if w.opts.pgRoles {
		checker, err := pgxpool.New(ctx, asRole(w.dbURL, "jetsaga_checker"))
		if err != nil {
			w.t.Fatal(err)
		}
		defer checker.Close()
		db = checker
	}
	if err := check.Quiesce(ctx, check.OneDB(db), w.reader, 60*time.Second); err != nil {
		w.t.Fatalf("not quiescent: %v", err)
	}
	rep, err := check.Run(ctx, check.OneDB(db), w.reader, check.Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Write(&b)
		w.t.Fatalf("invariants violated:\n%s", b.String())
	}
}

// events returns the order's events per stream, in stream order.
func (w *world) events(orderID string) map[string][]event.Event {
	w.t.Helper()
	out := map[string][]event.Event{}
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		for _, m := range w.streamMsgs(name) {
			// The subject names the order's shard, which other orders
			// share: the header names the order.
			if m.Header.Get(event.HeaderOrderID) != orderID {
				continue
			}
			e, err := event.FromMsg(m.Subject, m.Header, m.Data)
			if err != nil {
				w.t.Fatalf("%s seq %d breaks the contract: %v", name, m.Sequence, err)
			}
			out[name] = append(out[name], e)
		}
	}
	return out
}

func (w *world) streamMsgs(name string) []*jetstream.RawStreamMsg {
	w.t.Helper()
	ctx := context.Background()
	s, err := w.js.Stream(ctx, name)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, m)
	}
	return out
}

func types(es []event.Event) []event.Type {
	var ts []event.Type
	for _, e := range es {
		ts = append(ts, e.Type)
	}
	return ts
}

// wantSequence asserts the exact events per stream and that each event's
// causation id names the event that caused it.
func (w *world) wantSequence(orderID string, want map[string][]event.Type) {
	w.t.Helper()
	got := w.events(orderID)
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		if !slices.Equal(types(got[name]), want[name]) {
			w.t.Errorf("order %s: %s holds %v, want %v", orderID, name, types(got[name]), want[name])
		}
	}
	byID := map[string]event.Event{}
	for _, es := range got {
		for _, e := range es {
			byID[e.ID] = e
		}
	}
	causes := map[event.Type][]event.Type{
		event.InventoryReserved: {event.OrderCreated},
		event.InventoryRejected: {event.OrderCreated},
		event.PaymentCompleted:  {event.InventoryReserved},
		event.PaymentFailed:     {event.InventoryReserved},
		event.InventoryReleased: {event.PaymentFailed, event.OrderCancelled},
		event.OrderConfirmed:    {event.PaymentCompleted},
		event.OrderCancelled:    {event.InventoryRejected, event.InventoryReleased, event.OrderCreated},
		event.PaymentRefunded:   {event.OrderCancelled},
	}
	for _, e := range byID {
		if e.Type == event.OrderCreated {
			if e.CausationID != "" {
				w.t.Errorf("order.created has causation id %q", e.CausationID)
			}
			continue
		}
		cause, ok := byID[e.CausationID]
		if !ok || !slices.Contains(causes[e.Type], cause.Type) {
			w.t.Errorf("%s %s: caused by %q (%s), want one of %v", e.Type, e.ID, e.CausationID, cause.Type, causes[e.Type])
		}
	}
}
