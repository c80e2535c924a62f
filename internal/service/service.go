// Package service is the runtime every jetsaga service binary shares: it
// connects to NATS and Postgres, migrates the service schema, provisions the
// streams and the service's consumers, runs the consumer loops and the outbox
// relay, serves the service's HTTP API with /healthz, /readyz and /metrics,
// and drains on shutdown. A service plugs in through a Spec.
package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/access"
	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// Runtime is what a service's constructor gets.
type Runtime struct {
	Pool     *pgxpool.Pool // search_path = the service schema; migrated
	JS       jetstream.JetStream
	Log      *zap.Logger // named for the service
	Registry *prometheus.Registry
	// Notify wakes the outbox relay; call it after committing a
	// transaction that added outbox rows outside a consumer handler.
	Notify func()
	// Hand gives the relay rows a committed transaction wrote outside a
	// consumer handler (outbox.Relay.Hand): it publishes them at once,
	// without reading them back.
	Hand func([]outbox.Row)
	Now  func() time.Time
	// TracerProvider is the service's (nil: tracing off), for work of its
	// own beside the consumer loops, the relay and the HTTP API, which the
	// runtime traces already.
	TracerProvider trace.TracerProvider
	// Admin guards the service's operator endpoints (--admin-token-file):
	// wrap their handlers with Admin.Wrap.
	Admin *AdminGuard
}

// Consumer is one durable consumer of a service and its handler. A
// service's consumers share one loop (consume.NewSources): a batch holds
// what arrived from any of them, in one transaction.
type Consumer struct {
	Stream   string
	Durable  string   // durable name, also the inbox key
	Subjects []string // filter subjects
	Handle   consume.Handler
	// Silent says the handlers never write outbox rows (the read model's):
	// their commits do not wake the outbox relay.
	Silent bool
	// HandleBatch, when set, applies this consumer's events of a batch
	// set-based (consume.Source.BatchHandler), in the order Consumers lists
	// them; Handle stays the fallback. Unused when the participant is a
	// BatchApplier.
	HandleBatch consume.BatchHandler
}

// Participant is a service's part: its consumers and its HTTP routes.
type Participant interface {
	Consumers() []Consumer
	Routes(mux *http.ServeMux)
}

// BatchApplier is implemented by a participant that applies the new events
// of a batch, whatever consumer they came from, in one set-based call (it
// dispatches on the event type): consume.Config.BatchHandler.
type BatchApplier interface {
	ApplyBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error
}

// Preparer is implemented by a participant that runs something first in a
// batch's transaction, with the batch's events sorted by order id
// (consume.Config.Prepare; not before a BatchApplier, which sees the whole
// batch): inventory locks the stock rows the batch may move, in SKU order;
// the order service locks every order of the batch. The replay loop runs it
// for each replay too.
type Preparer interface {
	PrepareBatch(ctx context.Context, tx pgx.Tx, events []event.Event) error
}

// Runner is implemented by a participant with background work of its own
// (the order service's deadline scheduler, the read model's event pruner):
// the runtime runs it beside the consumer loops and stops it with them, Run
// returning once ctx is done.
type Runner interface {
	Run(ctx context.Context) error
}

// Spec names a service and builds its participant.
type Spec struct {
	Name       string
	Schema     string
	Migrations fs.FS
	New        func(rt *Runtime) (Participant, error)
}

// Main runs the service until SIGTERM or SIGINT and returns the process exit
// code: 0 after a clean drain, 1 on a start-up or run error. It first gives
// the garbage collector the services' defaults where GOGC and GOMEMLIMIT
// are unset (tuneGC).
func Main(cfg Config, spec Spec) int {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.TracerProvider == nil {
		tel, err := telemetry.FromEnv(ctx, cmp.Or(cfg.Name, spec.Name), os.Getenv, os.Stderr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Name, err)
			return 1
		}
		// After the drain: the last spans are flushed before exiting.
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tel.Shutdown(sctx); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Name, err)
			}
		}()
		cfg.TracerProvider = tel.TracerProvider
		cfg.tracing = tel.Exporters
	}
	if err := Run(ctx, cfg, spec); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Name, err)
		return 1
	}
	return 0
}

// Run starts the service and blocks until ctx is done, then drains: stop
// fetching, finish in-flight messages, flush the outbox, close the HTTP
// server and the connections. It returns nil after a clean drain.
func Run(ctx context.Context, cfg Config, spec Spec) error {
	if cfg.Name == "" {
		cfg.Name = spec.Name
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		var err error
		if log, err = NewLogger(cfg.LogLevel, cfg.LogFormat); err != nil {
			return err
		}
		defer func() { _ = log.Sync() }()
	}
	log = log.Named(cfg.Name)

	// A NATS connection closed for good (a fatal error from the server,
	// such as -ERR 'maximum control line exceeded', after which nats.go
	// never reconnects) cancels the run with ErrNATSClosed: the service
	// drains what it can and exits non-zero, so that its supervisor
	// restarts it rather than leaving it up and deaf.
	ctx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// HTTP first, so /healthz answers (and /readyz says "not yet") while we
	// wait for NATS and Postgres.
	var ready atomic.Bool
	var nc atomic.Pointer[nats.Conn]
	mux := http.NewServeMux()
	// disconnectedAt is when the NATS connection was lost (unix nanos), 0
	// while connected.
	var disconnectedAt atomic.Int64
	grace := cmp.Or(cfg.DisconnectGrace, 30*time.Second)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		c := nc.Load()
		switch since := disconnectedAt.Load(); {
		case c != nil && c.IsClosed():
			http.Error(w, "NATS connection closed", http.StatusServiceUnavailable)
		case since != 0 && time.Since(time.Unix(0, since)) > grace:
			http.Error(w, fmt.Sprintf("disconnected from NATS for %v", time.Since(time.Unix(0, since)).Round(time.Second)),
				http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		c := nc.Load()
		switch {
		case !ready.Load():
			http.Error(w, "starting or draining", http.StatusServiceUnavailable)
		case c == nil || !c.IsConnected():
			http.Error(w, "not connected to NATS", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.PProf {
		mountPProf(mux)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	// The service routes join the mux once the participant exists; until
	// then they answer 503.
	var api atomic.Pointer[http.Handler]
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if h := api.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "starting", http.StatusServiceUnavailable)
	})
	// Long-lived requests (the read model's watch streams) end when the
	// server shuts down: their context is cancelled as Shutdown begins.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: HTTPReadHeaderTimeout,
		ReadTimeout:       cmp.Or(cfg.HTTPReadTimeout, HTTPReadTimeout),
		WriteTimeout:      cmp.Or(cfg.HTTPWriteTimeout, HTTPWriteTimeout),
		IdleTimeout:       cmp.Or(cfg.HTTPIdleTimeout, HTTPIdleTimeout),
		MaxHeaderBytes:    HTTPMaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}
	srv.RegisterOnShutdown(cancelBase)
	var httpWG sync.WaitGroup
	httpWG.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", zap.Error(err))
		}
	})
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		httpWG.Wait()
	}()
	log.Info("http listening", zap.String("addr", ln.Addr().String()))

	cfg.NATS.InboxPrefix = cmp.Or(cfg.NATS.InboxPrefix, access.InboxPrefix(cfg.Name))
	credOpts, err := cfg.NATS.Options()
	if err != nil {
		return err
	}
	conn, err := nats.Connect(cfg.NATSURL, append(credOpts,
		nats.Name("jetsaga-"+cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		// An authorization error seen twice in a row on reconnect would
		// otherwise end the reconnects for good (credentials being
		// rotated, say): keep trying.
		nats.IgnoreAuthErrorAbort(),
		// Ping every 10s, so a dead connection is noticed (and reconnected)
		// within about 30s rather than nats.go's default of minutes.
		nats.PingInterval(10*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			disconnectedAt.CompareAndSwap(0, time.Now().UnixNano())
			log.Warn("nats disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			disconnectedAt.Store(0)
			log.Info("nats reconnected", zap.String("url", c.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats error", zap.Error(err)) }),
		nats.ClosedHandler(func(c *nats.Conn) {
			if ctx.Err() != nil {
				return // closed by our own drain
			}
			disconnectedAt.CompareAndSwap(0, time.Now().UnixNano())
			log.Error("nats connection closed for good; exiting", zap.Error(c.LastError()))
			cancelRun(fmt.Errorf("%w: %w", ErrNATSClosed, cmp.Or(c.LastError(), nats.ErrConnectionClosed)))
		}),
	)...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", cfg.NATSURL, err)
	}
	nc.Store(conn)
	defer func() {
		if err := conn.Drain(); err != nil {
			conn.Close()
		}
	}()
	js, err := jetstream.New(conn)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	pool, err := retry(ctx, log, "connect to Postgres", func() (*pgxpool.Pool, error) {
		p, err := pg.Open(ctx, pg.Config{URL: cfg.DatabaseURL, Schema: spec.Schema, MaxConns: int32(cfg.DBMaxConns)})
		if perr := permanent(err, cfg.DatabaseURL); perr != nil {
			return nil, stop{perr}
		}
		return p, err
	})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := retry(ctx, log, "migrate", func() (struct{}, error) {
		return struct{}{}, pg.Migrate(ctx, pool, spec.Schema, spec.Migrations)
	}); err != nil {
		return err
	}
	if !cfg.StreamsByOperator {
		if _, err := retry(ctx, log, "provision streams", func() (struct{}, error) {
			return struct{}{}, stream.Ensure(ctx, js, stream.Config{Replicas: cfg.Replicas, MaxAge: cfg.MaxAge, MaxMsgs: cfg.MaxMsgs, Duplicates: cfg.DupWindow})
		}); err != nil {
			return err
		}
	}

	exit := cfg.Exit
	if exit == nil {
		exit = os.Exit
	}
	inj, err := fault.New(cfg.Faults, log, reg, exit)
	if err != nil {
		return err
	}
	relayMetrics := newRelayMetrics(reg, pool)
	rc := outbox.RelayConfig{Logger: log, OnPublished: relayMetrics.published, OnAtomicBatch: relayMetrics.atomicBatch,
		Batch: cfg.RelayBatch, Window: cfg.RelayWindow,
		AtomicMin: cfg.RelayAtomicMin, DeleteEvery: cfg.RelayDeleteEvery, TracerProvider: cfg.TracerProvider}
	if rc.DeleteEvery == 0 {
		rc.DeleteEvery = -1 // the flag's 0: at once (the relay's 0 is its default)
	}
	if inj != nil {
		rc.BeforeDelete, rc.Duplicate = relayFaults(inj)
	}
	relay, err := outbox.NewRelay(pool, js, rc)
	if err != nil {
		return err
	}
	admin, err := NewAdminGuard(cfg.AdminTokenFile)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Name, err)
	}
	if admin.Open() {
		log.Warn("operator endpoints are open: no --admin-token-file (JETSAGA_ADMIN_TOKEN_FILE) given")
	}
	part, err := spec.New(&Runtime{
		Pool: pool, JS: js, Log: log, Registry: reg, Notify: relay.Notify, Hand: relay.Hand,
		Now: func() time.Time { return time.Now().UTC() }, TracerProvider: cfg.TracerProvider,
		Admin: admin,
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", cfg.Name, err)
	}
	cm := consume.NewMetrics(reg)
	var loops []*consume.Loop
	if len(part.Consumers()) > 0 {
		l, err := consumerLoop(ctx, log, pool, js, cfg, part, cm, relay, inj)
		if err != nil {
			return err
		}
		r, err := replayLoop(ctx, log, pool, js, cfg, part, cm, relay, inj)
		if err != nil {
			return err
		}
		loops = append(loops, l, r)
	}
	apiMux := http.NewServeMux()
	part.Routes(apiMux)
	apiHandler := telemetry.HTTPHandler(cfg.TracerProvider, apiMux)
	api.Store(&apiHandler)

	// Run: loops and relay own goroutines stopped by their contexts. The
	// relay outlives the loops so that it flushes what their last messages
	// wrote.
	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	var loopWG, relayWG sync.WaitGroup
	pruner, err := consume.NewInboxPruner(pool, consume.PrunerConfig{Retention: cfg.InboxKeep, Logger: log})
	if err != nil {
		return err
	}
	for _, l := range loops {
		loopWG.Go(func() { _ = l.Run(loopCtx) })
	}
	if len(loops) > 0 {
		loopWG.Go(func() { _ = pruner.Run(loopCtx) })
	}
	if r, ok := part.(Runner); ok {
		loopWG.Go(func() {
			if err := r.Run(loopCtx); err != nil {
				log.Error("background work stopped", zap.Error(err))
			}
		})
	}
	relayWG.Go(func() { _ = relay.Run(relayCtx) })

	ready.Store(true)
	log.Info("ready", zap.String("http_addr", ln.Addr().String()), zap.String("schema", spec.Schema),
		zap.Int("consumers", len(loops)), zap.Bool("tracing", telemetry.Tracer(cfg.TracerProvider) != nil),
		zap.Strings("trace_exporters", cfg.tracing))
	if cfg.OnReady != nil {
		cfg.OnReady(ln.Addr().String())
	}

	<-ctx.Done()
	ready.Store(false)
	log.Info("draining")
	loopWG.Wait()
	stopRelay()
	relayWG.Wait()
	if cause := context.Cause(ctx); errors.Is(cause, ErrNATSClosed) {
		log.Error("drained after losing NATS for good", zap.Error(cause))
		return cause
	}
	log.Info("drained")
	return nil
}

// mountPProf serves Go's runtime profiles under /debug/pprof/, e.g.
// go tool pprof http://127.0.0.1:8081/debug/pprof/profile?seconds=20.
func mountPProf(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves heap, goroutine, block, mutex, allocs
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// ErrNATSClosed is returned, wrapped, by Run when the NATS connection was
// closed for good while the service ran.
var ErrNATSClosed = errors.New("NATS connection closed")

// stop wraps an error that retrying cannot cure: retry returns it at once.
type stop struct{ err error }

func (s stop) Error() string { return s.err.Error() }
func (s stop) Unwrap() error { return s.err }

// retry calls fn until it succeeds, returns a stop error, or ctx is done,
// backing off up to 5s.
func retry[T any](ctx context.Context, log *zap.Logger, what string, fn func() (T, error)) (T, error) {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		if s, ok := errors.AsType[stop](err); ok {
			return v, fmt.Errorf("%s: %w", what, s.err)
		}
		if ctx.Err() != nil {
			return v, fmt.Errorf("%s: %w", what, err)
		}
		log.Warn(what+" failed; retrying", zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, fmt.Errorf("%s: %w", what, err)
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}

type relayMetrics struct {
	events  *prometheus.CounterVec
	batches *prometheus.CounterVec // atomic batches by outcome
	batched prometheus.Counter     // events in atomic batches stored
}

func newRelayMetrics(reg *prometheus.Registry, pool *pgxpool.Pool) *relayMetrics {
	m := &relayMetrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jetsaga_outbox_published_total",
		Help: "Events the outbox relay published (acked by JetStream), by event type.",
	}, []string{"event_type"})}
	backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jetsaga_outbox_backlog",
		Help: "Outbox rows waiting to be published (read at scrape).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := outbox.Backlog(ctx, pool)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	m.batches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jetsaga_outbox_atomic_batches_total",
		Help: "Atomic batches the outbox relay sent, by outcome: stored, or refused (its events then published one by one).",
	}, []string{"outcome"})
	m.batched = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jetsaga_outbox_atomic_batched_events_total",
		Help: "Events the outbox relay published in atomic batches that the stream stored.",
	})
	reg.MustRegister(m.events, backlog, m.batches, m.batched)
	return m
}

func (m *relayMetrics) atomicBatch(events int, stored bool) {
	if !stored {
		m.batches.WithLabelValues("refused").Inc()
		return
	}
	m.batches.WithLabelValues("stored").Inc()
	m.batched.Add(float64(events))
}

func (m *relayMetrics) published(events []event.Event) {
	for _, e := range events {
		m.events.WithLabelValues(string(e.Type)).Inc()
	}
}
