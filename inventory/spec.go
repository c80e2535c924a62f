package inventory

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
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// Name is the service's name; Schema is the PostgreSQL schema it owns.
const (
	Name   = "inventory"
	Schema = "inventory"
)

// The durable consumers of the service, also its inbox keys.
const (
	ConsumerOrders   = "inventory-orders"   // ORDERS: order.created, order.confirmed
	ConsumerPayments = "inventory-payments" // PAYMENTS: payment.failed
)

// seedTimeout bounds seeding stock at start.
const seedTimeout = 30 * time.Second

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's migrations (NNN_name.up.sql at the root).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil { // only for an invalid path, which "migrations" is not
		panic(err)
	}
	return sub
}

// Config holds the inventory service's own options.
type Config struct {
	// SeedStock gives SKUs that have no stock row yet their initial stock
	// when the service starts (--seed-stock, see ParseSeedStock). SKUs that
	// have one keep it.
	SeedStock map[string]int
}

// Spec returns the service's description for the runtime.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name:       Name,
		Schema:     Schema,
		Migrations: Migrations(),
		New: func(rt *service.Runtime) (service.Participant, error) {
			return New(rt, cfg)
		},
	}
}

// Service is the inventory service's participant: its consumers' handler and
// its HTTP API.
type Service struct {
	pool    *pgxpool.Pool
	log     *zap.Logger
	now     func() time.Time
	metrics metrics
	admin   *service.AdminGuard // PUT /stock/{sku} is an operator endpoint
}

// New validates cfg, seeds stock for the SKUs of cfg.SeedStock that have
// none, and returns the service.
func New(rt *service.Runtime, cfg Config) (*Service, error) {
	if rt == nil || rt.Pool == nil {
		return nil, errors.New("inventory: runtime with a pool is required")
	}
	if err := validSeed(cfg.SeedStock); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	s := &Service{
		pool:    rt.Pool,
		log:     cmp.Or(rt.Log, zap.NewNop()),
		now:     rt.Now,
		metrics: newMetrics(),
		admin:   rt.Admin,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if rt.Registry != nil {
		if err := s.metrics.register(rt.Registry); err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), seedTimeout)
	defer cancel()
	created, err := seedStock(ctx, s.pool, cfg.SeedStock)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if len(cfg.SeedStock) > 0 {
		s.log.Info("stock seeded", zap.Strings("created", created), zap.Int("kept", len(cfg.SeedStock)-len(created)))
	}
	return s, nil
}

// Consumers returns the service's two durable consumers. Both run the same
// handler, which dispatches on the event type.
func (s *Service) Consumers() []service.Consumer {
	return []service.Consumer{
		{
			Stream:   stream.Orders,
			Durable:  ConsumerOrders,
			Subjects: []string{event.Filter(event.OrderCreated), event.Filter(event.OrderConfirmed), event.Filter(event.OrderCancelled)},
			Handle:   s.handle,
		},
		{
			Stream:   stream.Payments,
			Durable:  ConsumerPayments,
			Subjects: []string{event.Filter(event.PaymentFailed)},
			Handle:   s.handle,
		},
	}
}

// ApplyBatch applies the new events of a batch, from both consumers, in
// one set-based pass (service.BatchApplier).
func (s *Service) ApplyBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	return s.handleBatch(ctx, tx, events)
}

// PrepareBatch locks the stock rows a batch may move, in SKU order, before a
// batch is handled one event at a time (service.Preparer); handleBatch
// takes the same locks first in its own read.
func (s *Service) PrepareBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	return s.prepare(ctx, tx, events)
}

// Routes adds the stock API to mux.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /stock", s.listStock)
	mux.HandleFunc("GET /stock/{sku}", s.getStock)
	mux.HandleFunc("PUT /stock/{sku}", s.admin.Wrap(s.putStock))
}

// metrics are the service's own Prometheus metrics.
type metrics struct {
	reservations *prometheus.CounterVec
}

func newMetrics() metrics {
	return metrics{
		reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsaga_reservations_total",
			Help: "Reservation decisions and transitions written, by outcome (held, rejected, released, committed, cancelled: an order cancelled before its order.created was handled). Counted in the handler's transaction, so a transaction that then fails to commit may count once more when it is retried.",
		}, []string{"outcome"}),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	if err := r.Register(m.reservations); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	return nil
}
