package order

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// Names the service runs under.
const (
	Name   = "order"  // service name: logs, dlq.order.<stream>.<seq>
	Schema = "orders" // Postgres schema
)

// Durable consumer names, also the inbox keys.
const (
	ConsumerInventory = "order-inventory"
	ConsumerPayments  = "order-payments"
	// ConsumerOrders reads back the service's own order.created, to cancel
	// one it never wrote (HandleCreated).
	ConsumerOrders = "order-orders"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's migrations: NNN_name.up.sql at the root.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded: fs.Sub cannot fail on it
	}
	return sub
}

// Config holds the order service's own options.
type Config struct {
	// SagaDeadline is how long an order may stay PENDING or RESERVED:
	// past it the deadline scheduler cancels it with reason timeout.
	// Zero turns deadlines off. cmd/order defaults it to DefaultSagaDeadline.
	SagaDeadline time.Duration
	// DeadlineEvery is how often the scheduler looks for orders past their
	// deadline; default min(1s, SagaDeadline/10), at least 10ms.
	DeadlineEvery time.Duration
}

// DefaultSagaDeadline is --saga-deadline's default.
const DefaultSagaDeadline = 30 * time.Second

// Spec returns the order service for service.Main.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name:       Name,
		Schema:     Schema,
		Migrations: Migrations(),
		New: func(rt *service.Runtime) (service.Participant, error) {
			return NewService(rt, cfg)
		},
	}
}

// Service is the order service's part in the saga: it takes orders over HTTP
// and moves them along as inventory and payment events arrive.
type Service struct {
	pool   *pgxpool.Pool
	log    *zap.Logger
	notify func()
	hand   func([]outbox.Row)
	now    func() time.Time
	newID  func() (string, error)
	placed prometheus.Counter

	combine   combiner
	perCommit prometheus.Histogram

	deadline      time.Duration // 0: none
	deadlineEvery time.Duration
	timeouts      prometheus.Counter
	unknown       prometheus.Counter
}

// NewService builds the service on rt. rt.Pool is required; a nil Log, Notify or
// Now take a no-op logger, a no-op and the UTC wall clock, and a nil
// Registry leaves the metrics unregistered.
func NewService(rt *service.Runtime, cfg Config) (*Service, error) {
	if rt == nil || rt.Pool == nil {
		return nil, errors.New("order: runtime with a Postgres pool is required")
	}
	s := &Service{
		pool:   rt.Pool,
		log:    rt.Log,
		notify: rt.Notify,
		hand:   rt.Hand,
		now:    rt.Now,
		newID:  newOrderID,
		placed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetsaga_orders_placed_total",
			Help: "Orders accepted by POST /orders (idempotent replays not counted).",
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetsaga_orders_timed_out_total",
			Help: "Orders the deadline scheduler cancelled with reason timeout (--saga-deadline).",
		}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetsaga_orders_unknown_total",
			Help: "order.created events of orders this service never placed (forged, or a bug), cancelled with reason unknown_order.",
		}),
	}
	if cfg.SagaDeadline < 0 {
		return nil, fmt.Errorf("order: saga deadline %v: must be >= 0 (0 turns deadlines off)", cfg.SagaDeadline)
	}
	s.deadline = cfg.SagaDeadline
	s.deadlineEvery = cmp.Or(cfg.DeadlineEvery, max(min(time.Second, cfg.SagaDeadline/10), 10*time.Millisecond))
	s.perCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "jetsaga_orders_per_commit",
		Help:    "Orders that POST /orders requests arriving together placed in one transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.notify == nil {
		s.notify = func() {}
	}
	if s.hand == nil {
		s.hand = func([]outbox.Row) {}
	}
	if s.now == nil {
		s.now = func() time.Time { return time.Now().UTC() }
	}
	if rt.Registry != nil {
		if err := errors.Join(rt.Registry.Register(s.placed), rt.Registry.Register(s.perCommit),
			rt.Registry.Register(s.timeouts), rt.Registry.Register(s.unknown)); err != nil {
			return nil, fmt.Errorf("order: register metrics: %w", err)
		}
	}
	return s, nil
}

// Consumers returns the service's durable consumers: its own
// order.created, checked by HandleCreated; inventory outcomes and payment
// outcomes, both run by Handle. The order is the saga's: in a batch that
// holds an order's order.created and what follows it, the order is checked
// first, and its inventory outcome applied before its payment's.
func (s *Service) Consumers() []service.Consumer {
	return []service.Consumer{
		{
			Stream:      stream.Orders,
			Durable:     ConsumerOrders,
			Subjects:    []string{event.Filter(event.OrderCreated)},
			Handle:      s.handleCreated,
			HandleBatch: s.HandleCreated,
		},
		{
			Stream:  stream.Inventory,
			Durable: ConsumerInventory,
			Subjects: []string{
				event.Filter(event.InventoryReserved),
				event.Filter(event.InventoryRejected),
				event.Filter(event.InventoryReleased),
			},
			Handle:      s.Handle,
			HandleBatch: s.HandleBatch,
		},
		{
			Stream:  stream.Payments,
			Durable: ConsumerPayments,
			Subjects: []string{
				event.Filter(event.PaymentCompleted),
				event.Filter(event.PaymentFailed),
				event.Filter(event.PaymentRefunded),
			},
			Handle:      s.Handle,
			HandleBatch: s.HandleBatch,
		},
	}
}

// PrepareBatch locks every order of a batch, in order id order, before its
// consumers' handlers run (service.Preparer). Each handler locks the orders
// of its own events, in order; without this a transaction holding events of
// two consumers would take its locks in two runs, and two such
// transactions (--workers 2, or two instances) could wait for each other.
func (s *Service) PrepareBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.OrderID
	}
	return lockAll(ctx, tx, ids)
}

// Routes adds POST /orders and GET /orders/{id}.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /orders", s.handlePlace)
	mux.HandleFunc("GET /orders/{id}", s.handleGet)
}
