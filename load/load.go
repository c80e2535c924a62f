package load

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/event"
)

// Defaults of Config.
const (
	DefaultDeclinePriceCents = 2_000_000 // over the dev stack's payment limit (stack.PaymentLimitCents)
	DefaultSKUs              = 64
	DefaultDrain             = 10 * time.Second
	// maxOpenRequests bounds the POSTs in flight in the open loop; past it
	// the schedule waits, which the latency from the scheduled time shows.
	maxOpenRequests = 4096
	// stockPerSKU is what the load sets each confirmable SKU to before the
	// run: inventory's maximum, so that no run sells it out.
	stockPerSKU = 1_000_000_000
)

// Config says where the stack is and what load to put on it.
type Config struct {
	OrderURL, InventoryURL, ReadmodelURL, NATSURL string
	// NATSOptions are the load's connection options: its identity (the
	// reader's may subscribe to the events) and TLS files.
	NATSOptions []nats.Option

	Rate        float64       // orders per second, sent on a fixed schedule (open loop); 0: closed loop
	Concurrency int           // closed loop: sagas in flight (a new order when one ends)
	Duration    time.Duration // place orders for this long (0: until Orders are placed)
	Orders      int           // place this many orders (0: until Duration is over)
	Mix         Mix           // default confirm=80,decline=10,oos=10
	// DeclinePriceCents is the price of an order meant to be declined:
	// over the payment service's --decline-over-cents.
	DeclinePriceCents int64
	SKUs              int           // confirmable SKUs the orders spread over
	SKUPrefix         string        // SKU names: <prefix>-0 … and <prefix>-oos; default "load"
	Drain             time.Duration // after the last order, wait this long for sagas to end
	// RunDir is the stack's run folder (pid files, Postgres data): the CPU
	// and memory of its processes are measured from it. "" skips them.
	RunDir string
	// AdminToken is the bearer token of inventory's PUT /stock (the
	// services' --admin-token-file); "" sends none.
	AdminToken string
	HTTP       *http.Client // default: one with enough idle connections for the load
	// Progress, when set, is called about once a second while the load
	// runs, and once at the end.
	Progress func(Progress)
}

// Progress is the state of a run, for a progress bar or a log line.
type Progress struct {
	Elapsed   time.Duration
	Placed    int64
	Completed int64
	InFlight  int
	Errors    int64
	Draining  bool
	// Fraction of the placing done, 0..1 (of Orders, or of Duration).
	Fraction float64
}

func (c *Config) defaults() error {
	if c.Mix.total() == 0 {
		c.Mix = Mix{Confirm: 80, Decline: 10, OOS: 10}
	}
	c.DeclinePriceCents = cmp.Or(c.DeclinePriceCents, DefaultDeclinePriceCents)
	c.SKUs = cmp.Or(c.SKUs, DefaultSKUs)
	c.SKUPrefix = cmp.Or(c.SKUPrefix, "load")
	var errs []error
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate must be >= 0, got %v", c.Rate))
	}
	if c.Rate == 0 && c.Concurrency <= 0 {
		errs = append(errs, errors.New("closed loop (rate 0) needs concurrency > 0"))
	}
	if c.Duration <= 0 && c.Orders <= 0 {
		errs = append(errs, errors.New("give a duration or a number of orders"))
	}
	if c.Duration < 0 || c.Orders < 0 || c.Drain < 0 {
		errs = append(errs, errors.New("duration, orders and drain must not be negative"))
	}
	if c.OrderURL == "" || c.NATSURL == "" {
		errs = append(errs, errors.New("the order service's URL and the NATS URL are required"))
	}
	if c.Mix[Confirm]+c.Mix[Decline]+c.Mix[OOS] > 0 && c.InventoryURL == "" {
		errs = append(errs, errors.New("the inventory service's URL is required to seed stock"))
	}
	if c.HTTP == nil {
		conns := max(c.Concurrency, 256)
		if c.Rate > 0 {
			conns = max(conns, min(maxOpenRequests, int(c.Rate)))
		}
		c.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return errors.Join(errs...)
}

// run is the state of one Run.
type run struct {
	cfg    Config
	client *client.Client
	cycle  []Class
	track  *tracker

	placed, errs atomic.Int64
	lastSend     atomic.Int64 // UnixNano of the latest POST sent
	errMu        sync.Mutex
	errSamples   map[string]int64 // error text (trimmed) → count

	// Guarded by track.mu (the tracker calls record with it held).
	latency, fromScheduled *hdrhistogram.Histogram
	outcomes               map[string]map[string]int64
	unexpected             int64
	completed              int64
	lastTerminal           time.Time
}

// Run puts the load on the stack and reports what it saw. It returns an
// error when it cannot start (NATS unreachable, stock not seeded); failed
// orders during the run are counted in Result.Errors.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	r := &run{
		cfg:           cfg,
		client:        &client.Client{HTTP: cfg.HTTP, OrderURL: cfg.OrderURL, ReadmodelURL: cfg.ReadmodelURL},
		cycle:         cfg.Mix.cycle(),
		errSamples:    map[string]int64{},
		latency:       newHistogram(),
		fromScheduled: newHistogram(),
		outcomes:      map[string]map[string]int64{},
	}
	r.track = newTracker(r.record)

	nc, err := nats.Connect(cfg.NATSURL, append(cfg.NATSOptions, nats.Name("jetsaga-load"), nats.Timeout(5*time.Second))...)
	if err != nil {
		return Result{}, fmt.Errorf("connect to NATS at %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	for _, t := range []event.Type{event.OrderConfirmed, event.OrderCancelled} {
		sub, err := nc.Subscribe(event.Filter(t), r.onTerminal)
		if err != nil {
			return Result{}, fmt.Errorf("subscribe to %s.>: %w", t, err)
		}
		// Never drop a terminal event for a slow handler: they are small.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return Result{}, err
		}
	}
	if err := nc.Flush(); err != nil {
		return Result{}, fmt.Errorf("subscribe: %w", err)
	}
	if err := r.seedStock(ctx); err != nil {
		return Result{}, err
	}

	cpuStart := sampleCPU(cfg.RunDir)
	start := time.Now()
	stopProgress := r.progress(ctx, start)
	if cfg.Rate > 0 {
		r.openLoop(ctx, start)
	} else {
		r.closedLoop(ctx, start)
	}
	placingEnd := start
	if ns := r.lastSend.Load(); ns > 0 {
		placingEnd = time.Unix(0, ns)
	}
	r.drain(ctx)
	cpuEnd := sampleCPU(cfg.RunDir)
	stopProgress()

	return r.result(ctx, start, placingEnd, cpuStart, cpuEnd), nil
}

func newHistogram() *hdrhistogram.Histogram {
	// Microseconds, 1µs to 1h, 3 significant digits.
	return hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
}

// onTerminal handles an order.confirmed or order.cancelled message.
func (r *run) onTerminal(m *nats.Msg) {
	at := time.Now()
	// The subject names the type and the order's shard, not the order: the
	// header names it. A message without one is no saga's event.
	id := m.Header.Get(event.HeaderOrderID)
	if id == "" {
		return
	}
	o := outcome{confirmed: strings.HasPrefix(m.Subject, string(event.OrderConfirmed)+"."), at: at}
	if !o.confirmed {
		var p event.OrderCancelledPayload
		if json.Unmarshal(m.Data, &p) == nil {
			o.reason = p.Reason
		}
	}
	r.track.terminal(id, o)
}

// record is called by the tracker, with its lock held, once per saga.
func (r *run) record(f finished) {
	r.completed++
	r.lastTerminal = f.at
	_ = r.latency.RecordValue(max(1, f.at.Sub(f.accepted).Microseconds()))
	_ = r.fromScheduled.RecordValue(max(1, f.at.Sub(f.scheduled).Microseconds()))
	name := "confirmed"
	if !f.confirmed {
		name = "cancelled:" + f.reason
	}
	byClass := r.outcomes[f.class.String()]
	if byClass == nil {
		byClass = map[string]int64{}
		r.outcomes[f.class.String()] = byClass
	}
	byClass[name]++
	if !f.expected(f.class) {
		r.unexpected++
	}
}

// seedStock gives every confirmable SKU plenty of stock and the
// out-of-stock SKU none, through the inventory API.
func (r *run) seedStock(ctx context.Context) error {
	set := map[string]int{r.oosSKU(): 0}
	if r.cfg.Mix[Confirm]+r.cfg.Mix[Decline] > 0 {
		for i := range r.cfg.SKUs {
			set[r.sku(i)] = stockPerSKU
		}
	}
	for sku, n := range set {
		if err := putStock(ctx, r.cfg.HTTP, r.cfg.InventoryURL, r.cfg.AdminToken, sku, n); err != nil {
			return err
		}
	}
	return nil
}

func putStock(ctx context.Context, hc *http.Client, inventoryURL, token, sku string, n int) error {
	body := fmt.Sprintf(`{"available":%d}`, n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, inventoryURL+"/stock/"+sku, bytes.NewReader([]byte(body)))
	if err != nil {
		return fmt.Errorf("seed stock %s: %w", sku, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("seed stock %s at %s: %w", sku, inventoryURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("seed stock %s: %s: %s", sku, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

func (r *run) sku(i int) string { return fmt.Sprintf("%s-%d", r.cfg.SKUPrefix, i) }
func (r *run) oosSKU() string   { return r.cfg.SKUPrefix + "-oos" }

// order is order number i of the load.
func (r *run) order(i int) (Class, client.Order) {
	c := r.cycle[i%len(r.cycle)]
	o := client.Order{CustomerID: fmt.Sprintf("%s-c%d", r.cfg.SKUPrefix, i%1000)}
	switch c {
	case Confirm:
		o.Items = []client.Item{{SKU: r.sku(i % r.cfg.SKUs), Qty: 1, UnitPriceCents: int64(100 + i%900)}}
	case Decline:
		o.Items = []client.Item{{SKU: r.sku(i % r.cfg.SKUs), Qty: 1, UnitPriceCents: r.cfg.DeclinePriceCents}}
	case OOS:
		o.Items = []client.Item{{SKU: r.oosSKU(), Qty: 1, UnitPriceCents: 500}}
	}
	return c, o
}

// place sends order i; due is when it was scheduled. It returns the saga,
// or nil when the order was not accepted (counted as an error).
func (r *run) place(ctx context.Context, i int, due time.Time) *saga {
	class, o := r.order(i)
	r.placed.Add(1)
	r.lastSend.Store(time.Now().UnixNano())
	p, err := r.client.Place(ctx, o, "")
	if err != nil {
		if ctx.Err() == nil {
			r.countError(err)
		}
		return nil
	}
	s := &saga{class: class, scheduled: due, accepted: time.Now()}
	r.track.placed(p.OrderID, s)
	return s
}

func (r *run) countError(err error) {
	r.errs.Add(1)
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if _, ok := r.errSamples[msg]; ok || len(r.errSamples) < 10 {
		r.errSamples[msg]++
	}
}

// done reports whether placing is over: n orders placed, or the duration
// passed.
func (r *run) done(n int, start time.Time) bool {
	return (r.cfg.Orders > 0 && n >= r.cfg.Orders) || (r.cfg.Duration > 0 && time.Since(start) >= r.cfg.Duration)
}

// closedLoop keeps Concurrency sagas in flight: each worker places an
// order, waits until its saga ended, and places the next. Once placing is
// over (Orders sent or Duration passed) the workers stop waiting: the drain
// waits for the last sagas.
func (r *run) closedLoop(ctx context.Context, start time.Time) {
	over := make(chan struct{})
	if r.cfg.Duration > 0 {
		t := time.AfterFunc(r.cfg.Duration-time.Since(start), func() { close(over) })
		defer t.Stop()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if r.done(i, start) {
					return
				}
				s := r.place(ctx, i, time.Now())
				if s == nil {
					// Do not spin on a failing service.
					sleep(ctx, 10*time.Millisecond)
					continue
				}
				if r.done(int(next.Load()), start) {
					return
				}
				select {
				case <-s.done:
				case <-over:
					return
				case <-ctx.Done():
				}
			}
		})
	}
	wg.Wait()
}

// openLoop sends order i at start + i/Rate, whatever the stack's answers:
// a slow stack does not slow the load (no coordinated omission).
func (r *run) openLoop(ctx context.Context, start time.Time) {
	sem := make(chan struct{}, maxOpenRequests)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		due := scheduled(start, r.cfg.Rate, i)
		if r.done(i, start) || (r.cfg.Duration > 0 && due.Sub(start) >= r.cfg.Duration) {
			return
		}
		if !sleepUntil(ctx, due) {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r.place(ctx, i, due)
		})
	}
}

// scheduled is when order i of an open loop at rate orders/s is due.
func scheduled(start time.Time, rate float64, i int) time.Time {
	return start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
}

// drain waits until every placed saga ended, or Drain passed.
func (r *run) drain(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.Drain)
	for r.track.notTerminal() > 0 && time.Now().Before(deadline) {
		if !sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleep(ctx, d)
}

// progress calls cfg.Progress every second until the returned stop is
// called; stop reports once more and waits for the goroutine.
func (r *run) progress(ctx context.Context, start time.Time) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				r.cfg.Progress(r.snapshot(start))
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		p := r.snapshot(start)
		p.Fraction = 1
		r.cfg.Progress(p)
	}
}

func (r *run) snapshot(start time.Time) Progress {
	elapsed := time.Since(start)
	p := Progress{Elapsed: elapsed, Placed: r.placed.Load(), Errors: r.errs.Load()}
	r.track.mu.Lock()
	p.Completed = r.completed
	p.InFlight = len(r.track.pending)
	r.track.mu.Unlock()
	switch {
	case r.cfg.Orders > 0:
		p.Fraction = float64(p.Placed) / float64(r.cfg.Orders)
	case r.cfg.Duration > 0:
		p.Fraction = float64(elapsed) / float64(r.cfg.Duration)
	}
	if p.Fraction >= 1 {
		p.Fraction, p.Draining = 1, true
	}
	return p
}
