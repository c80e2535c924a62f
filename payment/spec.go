package payment

import (
	"cmp"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// Name is the service's name; Schema is the PostgreSQL schema it owns.
const (
	Name   = "payment"
	Schema = "payment"
)

// The service's durable consumers, also its inbox keys: inventory.reserved
// on INVENTORY (charge); order.created, order.confirmed (what charges and
// refunds are checked against) and order.cancelled (refund) on ORDERS.
const (
	ConsumerInventory = "payment-inventory"
	ConsumerOrders    = "payment-orders"
)

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

// Config holds the payment service's own options: the simulated gateway's.
type Config struct {
	DeclineOverCents int64   // --decline-over-cents: decline charges above this; 0 = off
	DeclineRate      float64 // --decline-rate: share of the other charges declined at random, 0 to 1
	Seed             int64   // --seed: seeds the random declines, so runs repeat
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

// Service is the payment service's participant: its consumer's handler and
// its HTTP API.
type Service struct {
	pool    *pgxpool.Pool
	log     *zap.Logger
	now     func() time.Time
	gateway Gateway
	metrics metrics
}

// New validates cfg and returns the service.
func New(rt *service.Runtime, cfg Config) (*Service, error) {
	if rt == nil || rt.Pool == nil {
		return nil, errors.New("payment: runtime with a pool is required")
	}
	g := Gateway(cfg)
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("payment: %w", err)
	}
	s := &Service{
		pool:    rt.Pool,
		log:     cmp.Or(rt.Log, zap.NewNop()),
		now:     rt.Now,
		gateway: g,
		metrics: newMetrics(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if rt.Registry != nil {
		if err := s.metrics.register(rt.Registry); err != nil {
			return nil, fmt.Errorf("payment: %w", err)
		}
	}
	s.log.Info("card gateway", zap.Int64("decline_over_cents", g.DeclineOverCents),
		zap.Float64("decline_rate", g.DeclineRate), zap.Int64("seed", g.Seed))
	return s, nil
}

// Consumers returns the service's two durable consumers: the order events
// first, so that in a batch that holds an order's order.created and its
// inventory.reserved, the total the charge is checked against is learnt
// before the charge.
func (s *Service) Consumers() []service.Consumer {
	return []service.Consumer{{
		Stream:      stream.Orders,
		Durable:     ConsumerOrders,
		Subjects:    []string{event.Filter(event.OrderCreated), event.Filter(event.OrderConfirmed), event.Filter(event.OrderCancelled)},
		Handle:      s.handleCancelled,
		HandleBatch: s.handleCancelledBatch,
	}, {
		Stream:      stream.Inventory,
		Durable:     ConsumerInventory,
		Subjects:    []string{event.Filter(event.InventoryReserved)},
		Handle:      s.handle,
		HandleBatch: s.handleBatch,
	}}
}

// Routes adds the payment API to mux.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /payments/{order_id}", s.getPayment)
}

// metrics are the service's own Prometheus metrics.
type metrics struct {
	payments *prometheus.CounterVec
}

func newMetrics() metrics {
	m := metrics{
		payments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsaga_payments_total",
			Help: "Payments decided, by status (completed, failed, refunded; cancelled: an order cancelled before it was charged). Counted in the handler's transaction, so a transaction that then fails to commit may count once more when it is retried.",
		}, []string{"status"}),
	}
	for _, st := range []Status{Completed, Failed, Refunded, Cancelled} {
		m.payments.WithLabelValues(metricStatus(st)) // export zeros from the start
	}
	return m
}

func (m metrics) register(r prometheus.Registerer) error {
	if err := r.Register(m.payments); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	return nil
}

// metricStatus is the status label value: "completed" or "failed".
func metricStatus(s Status) string { return strings.ToLower(string(s)) }
