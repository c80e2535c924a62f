package readmodel

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// Name is the service name; Schema is the Postgres schema it owns.
const (
	Name   = "readmodel"
	Schema = "readmodel"
)

// Durable consumer names: the read model consumes every event of the three
// saga streams.
const (
	ConsumerOrders    = "readmodel-orders"
	ConsumerInventory = "readmodel-inventory"
	ConsumerPayments  = "readmodel-payments"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the readmodel's migrations (NNN_name.up.sql at the root).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	return sub
}

// Config holds the readmodel's own options. Zero values take the defaults.
type Config struct {
	// EventRetention is how long the events of a terminal order are kept
	// after its last event occurred; then they are deleted and its view
	// stands for them (pruned). Default 24h.
	EventRetention time.Duration
	PruneEvery     time.Duration // how often to look for prunable orders; default 1m
	PruneBatch     int           // orders pruned per transaction; default 500
	PrunePause     time.Duration // between two transactions of one pass; default 20ms
	// StuckAfter is the age past which a saga not terminal yet is stuck
	// (GET /sagas?state=stuck, /stats); default DefaultStuckAfter.
	StuckAfter time.Duration
	// MaxWatchers bounds the watch streams (GET /orders/{id}/watch) open at
	// once; beyond it a watch is answered 503 with Retry-After. Default 1000.
	MaxWatchers int
}

// withDefaults fills the zero fields and checks the others.
func (c Config) withDefaults() (Config, error) {
	c.EventRetention = cmp.Or(c.EventRetention, 24*time.Hour)
	c.PruneEvery = cmp.Or(c.PruneEvery, time.Minute)
	c.PruneBatch = cmp.Or(c.PruneBatch, 500)
	c.PrunePause = cmp.Or(c.PrunePause, 20*time.Millisecond)
	c.StuckAfter = cmp.Or(c.StuckAfter, DefaultStuckAfter)
	c.MaxWatchers = cmp.Or(c.MaxWatchers, DefaultMaxWatchers)
	if c.MaxWatchers < 0 {
		return c, fmt.Errorf("readmodel: max watchers %d: must be > 0", c.MaxWatchers)
	}
	if c.EventRetention < 0 || c.PruneEvery < 0 || c.PruneBatch < 0 || c.PrunePause < 0 || c.StuckAfter < 0 {
		return c, fmt.Errorf("readmodel: event retention %s, prune every %s, batch %d, pause %s, stuck after %s: none may be negative",
			c.EventRetention, c.PruneEvery, c.PruneBatch, c.PrunePause, c.StuckAfter)
	}
	return c, nil
}

// Spec returns the readmodel service for the runtime.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name:       Name,
		Schema:     Schema,
		Migrations: Migrations(),
		New: func(rt *service.Runtime) (service.Participant, error) {
			return newReadModel(rt, cfg)
		},
	}
}

// DefaultMaxWatchers is --max-watchers' default.
const DefaultMaxWatchers = 1000

// watchPoll is how often a watch stream reads its order's view.
const watchPoll = 200 * time.Millisecond

// readModel is the readmodel participant: the projecting handler, the query
// API and the in-memory lag statistics.
type readModel struct {
	cfg   Config
	store *store
	js    jetstream.JetStream // for /stats "behind"; may be nil
	log   *zap.Logger
	now   func() time.Time

	lags       lagRing
	lagSeconds prometheus.Histogram
	projected  atomic.Int64 // events this process recorded for the first time
	duplicates atomic.Int64 // events it had recorded already

	dash dashCounters // what the dashboard counts on the projection path
	hub  *dashHub     // samples dash, pushes it to the dashboard's streams

	rebuilding sync.Mutex // held by the running rebuild

	admin    *service.AdminGuard
	watchers atomic.Int64 // watch streams open

	watchPoll      time.Duration
	watchHeartbeat time.Duration
	watchGrace     time.Duration // how long a watch waits for an unknown order before 404
}

func newReadModel(rt *service.Runtime, cfg Config) (*readModel, error) {
	if rt == nil || rt.Pool == nil {
		return nil, errors.New("readmodel: runtime with a pool is required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rm := &readModel{
		cfg:   cfg,
		store: &store{pool: rt.Pool},
		js:    rt.JS,
		log:   rt.Log,
		now:   rt.Now,
		admin: rt.Admin,
		lagSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jetsaga_readmodel_lag_seconds",
			Help:    "Time from an event's occurrence to its projection into the read model.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1ms to ~33s
		}),
		watchPoll:      watchPoll,
		watchHeartbeat: 15 * time.Second,
		watchGrace:     3 * time.Second,
	}
	if rm.log == nil {
		rm.log = zap.NewNop()
	}
	if rm.now == nil {
		rm.now = time.Now
	}
	rm.hub = newDashHub(rm)
	if rt.Registry != nil {
		if err := rt.Registry.Register(rm.lagSeconds); err != nil {
			return nil, fmt.Errorf("readmodel: register metrics: %w", err)
		}
	}
	return rm, nil
}

// consumerRef names one of the read model's consumers.
type consumerRef struct{ stream, durable, subject string }

var consumers = []consumerRef{
	{stream.Orders, ConsumerOrders, "order.>"},
	{stream.Inventory, ConsumerInventory, "inventory.>"},
	{stream.Payments, ConsumerPayments, "payment.>"},
}

// Consumers returns the three consumers, all with the same handler.
func (rm *readModel) Consumers() []service.Consumer {
	out := make([]service.Consumer, 0, len(consumers))
	for _, c := range consumers {
		out = append(out, service.Consumer{
			Stream: c.stream, Durable: c.durable, Subjects: []string{c.subject},
			Handle: rm.handle, Silent: true,
		})
	}
	return out
}

// ApplyBatch projects the new events of a batch, from all three consumers,
// in one set-based pass (service.BatchApplier): an order's events of the
// three streams are projected together.
func (rm *readModel) ApplyBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	return rm.handleBatch(ctx, tx, events)
}

// Routes adds the query API.
func (rm *readModel) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /orders", rm.listOrders)
	mux.HandleFunc("GET /orders/{id}", rm.getOrder)
	mux.HandleFunc("GET /orders/{id}/watch", rm.watchOrder)
	mux.HandleFunc("GET /stats", rm.stats)
	mux.HandleFunc("GET /sagas", rm.listSagas)
	mux.HandleFunc("POST /admin/rebuild", rm.admin.Wrap(rm.postRebuild))
	rm.routeDashboard(mux)
}
