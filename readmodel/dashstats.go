package readmodel

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// The dashboard's figures. The projection path only bumps counters and
// keeps a few summaries in memory (dashCounters.observe); a sampler turns
// them into one point per second (dashPoint), kept for dashHistory seconds,
// and, while someone watches, adds what costs a query: views per status,
// the consumers' backlog, the dead letters. Everything is per process: a
// second readmodel instance counts what it projects.

// dashHistory is how many per-second points the dashboard keeps: 5 minutes.
const dashHistory = 300

// dashLatest is how many of the latest sagas the dashboard lists.
const dashLatest = 12

// Outcomes are the terminal outcomes the dashboard counts, in its legend's
// order: confirmed, then cancelled by reason ("other" for a reason it does
// not know).
var Outcomes = []string{"confirmed", event.ReasonOutOfStock, event.ReasonUnknownSKU,
	event.ReasonPaymentFailed, event.ReasonTimeout, "other"}

// outcomeIndex returns the index in Outcomes of a terminal view's outcome.
func outcomeIndex(status Status, reason string) int {
	if status == Confirmed {
		return 0
	}
	if i := slices.Index(Outcomes, reason); i > 0 {
		return i
	}
	return len(Outcomes) - 1
}

// dashCounters is what the projection path records for the dashboard.
type dashCounters struct {
	placed   atomic.Int64 // order.created projected for the first time
	outcomes [6]atomic.Int64
	latency  lagRing // accepted→terminal of the last lagWindow sagas, ms

	mu     sync.Mutex
	latest map[string]LatestSaga // at most 2*dashLatest, the latest placed
}

// LatestSaga is one of the latest sagas the dashboard lists.
type LatestSaga struct {
	OrderID    string    `json:"order_id"`
	Status     Status    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	TotalCents int64     `json:"total_cents"`
	Events     int       `json:"events"`
	CreatedAt  time.Time `json:"created_at"` // order.created's occurred_at
	UpdatedAt  time.Time `json:"updated_at"` // the latest event's occurred_at
}

// observe records a projected batch: the events handled, which of them were
// new (fresh) and the views computed. It touches no database and allocates
// only for a batch that ends sagas.
func (d *dashCounters) observe(events []event.Event, fresh map[string]bool, views []View) {
	var ended map[string]event.Event // order id → its fresh terminal event
	for _, e := range events {
		if !fresh[e.ID] {
			continue
		}
		switch e.Type {
		case event.OrderCreated:
			d.placed.Add(1)
		case event.OrderConfirmed, event.OrderCancelled:
			if ended == nil {
				ended = make(map[string]event.Event)
			}
			ended[e.OrderID] = e
		}
	}
	for _, v := range views {
		if e, ok := ended[v.OrderID]; ok {
			status := Confirmed
			if e.Type == event.OrderCancelled {
				status = Cancelled
			}
			d.outcomes[outcomeIndex(status, v.Reason)].Add(1)
			if i := slices.IndexFunc(v.Timeline, func(s Step) bool { return s.EventType == event.OrderCreated }); i >= 0 {
				d.latency.add(lagMS(e.OccurredAt, v.Timeline[i].OccurredAt))
			}
		}
	}
	d.noteLatest(views)
}

// noteLatest keeps the latest placed sagas among views, with their status.
func (d *dashCounters) noteLatest(views []View) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.latest == nil {
		d.latest = make(map[string]LatestSaga, 2*dashLatest+1)
	}
	for _, v := range views {
		if len(v.Timeline) == 0 || v.Timeline[0].EventType != event.OrderCreated {
			continue // not placed yet as far as the read model knows
		}
		s := LatestSaga{OrderID: v.OrderID, Status: v.Status, Reason: v.Reason, TotalCents: v.TotalCents,
			Events: v.Version, CreatedAt: v.Timeline[0].OccurredAt, UpdatedAt: v.LastOccurredAt}
		if _, ok := d.latest[v.OrderID]; !ok && len(d.latest) >= 2*dashLatest {
			oldest := ""
			for id, l := range d.latest {
				if oldest == "" || l.CreatedAt.Before(d.latest[oldest].CreatedAt) {
					oldest = id
				}
			}
			if !s.CreatedAt.After(d.latest[oldest].CreatedAt) {
				continue
			}
			delete(d.latest, oldest)
		}
		d.latest[v.OrderID] = s
	}
}

// latestSagas returns the dashLatest latest placed sagas, newest first.
func (d *dashCounters) latestSagas() []LatestSaga {
	d.mu.Lock()
	out := make([]LatestSaga, 0, len(d.latest))
	for _, l := range d.latest {
		out = append(out, l)
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b LatestSaga) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out[:min(len(out), dashLatest)]
}

// DashPoint is one second of the dashboard's history: rates over the
// interval that ended at T, and the percentiles as they stood then.
type DashPoint struct {
	T         int64     `json:"t"`          // unix milliseconds
	Placed    float64   `json:"placed"`     // sagas placed per second (order.created projected)
	Completed float64   `json:"completed"`  // sagas ended per second, all outcomes
	Outcomes  []float64 `json:"outcomes"`   // per second, in Outcomes' order
	LatencyMS Quantiles `json:"latency_ms"` // accepted→terminal, last 1,000 sagas
	LagMS     Quantiles `json:"lag_ms"`     // read-model lag, last 1,000 events
}

// Quantiles are a p50 and a p99 in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// DashTotals are counts since the process started.
type DashTotals struct {
	Placed    int64            `json:"placed"`
	Completed int64            `json:"completed"`
	Outcomes  map[string]int64 `json:"outcomes"`
	Projected int64            `json:"events_projected"`
}

// ConsumerBacklog is how far one durable consumer is behind.
type ConsumerBacklog struct {
	Name       string `json:"name"`
	Stream     string `json:"stream"`
	Pending    int64  `json:"pending"`     // not delivered yet
	AckPending int64  `json:"ack_pending"` // delivered, not acknowledged yet
}

// DashSagas counts the sagas not terminal yet and those stuck (GET /sagas'
// counts); Stuck is nil when it could not be read.
type DashSagas struct {
	InFlight   int64  `json:"in_flight"`
	Stuck      *int64 `json:"stuck,omitempty"`
	StuckAfter string `json:"stuck_after,omitempty"`
}

// DashSnapshot is what the dashboard shows at one moment: the newest point,
// the totals, and (while someone watches) what needs a query.
type DashSnapshot struct {
	Point       DashPoint         `json:"point"`
	Totals      DashTotals        `json:"totals"`
	Latency     LagSummary        `json:"latency_ms"`
	Lag         LagSummary        `json:"lag_ms"`
	Orders      map[Status]int64  `json:"orders,omitempty"`
	Sagas       *DashSagas        `json:"sagas,omitempty"`
	Consumers   []ConsumerBacklog `json:"consumers,omitempty"`
	DeadLetters *int64            `json:"dead_letters,omitempty"` // messages in the DLQ stream
	Latest      []LatestSaga      `json:"latest"`
	Errors      map[string]string `json:"errors,omitempty"` // what could not be read this time
	StartedAt   time.Time         `json:"started_at"`
}

// sampler turns the counters into points; it is driven by the hub's Run.
type sampler struct {
	rm      *readModel
	started time.Time

	last      time.Time
	lastCount [7]int64 // placed, then the outcomes

	mu      sync.Mutex
	history []DashPoint // ring of dashHistory points, oldest first once full
	next    int
}

// sample reads the counters and appends one point, at now.
func (s *sampler) sample(now time.Time) DashPoint {
	c := &s.rm.dash
	cur := [7]int64{c.placed.Load()}
	for i := range c.outcomes {
		cur[1+i] = c.outcomes[i].Load()
	}
	secs := now.Sub(s.last).Seconds()
	if s.last.IsZero() || secs <= 0 {
		secs = 1
	}
	rate := func(i int) float64 { return round1(float64(cur[i]-s.lastCount[i]) / secs) }
	lat, lag := c.latency.summary(), s.rm.lags.summary()
	p := DashPoint{
		T: now.UnixMilli(), Placed: rate(0), Outcomes: make([]float64, len(Outcomes)),
		LatencyMS: Quantiles{lat.P50, lat.P99}, LagMS: Quantiles{lag.P50, lag.P99},
	}
	if s.last.IsZero() {
		p.Placed = 0 // no interval yet: what came before the first sample is in the totals
	}
	for i := range Outcomes {
		if !s.last.IsZero() {
			p.Outcomes[i] = rate(1 + i)
		}
		p.Completed += p.Outcomes[i]
	}
	p.Completed = round1(p.Completed)
	s.last, s.lastCount = now, cur

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.history) < dashHistory {
		s.history = append(s.history, p)
	} else {
		s.history[s.next] = p
		s.next = (s.next + 1) % dashHistory
	}
	return p
}

// points returns the history, oldest first.
func (s *sampler) points() []DashPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(slices.Clone(s.history[s.next:]), s.history[:s.next]...)
}

// snapshot puts together what the page shows after point p; withQueries
// adds the figures that cost a query (only while someone watches).
func (s *sampler) snapshot(ctx context.Context, p DashPoint, withQueries bool) DashSnapshot {
	c := &s.rm.dash
	snap := DashSnapshot{
		Point:     p,
		Latency:   c.latency.summary(),
		Lag:       s.rm.lags.summary(),
		Latest:    c.latestSagas(),
		StartedAt: s.started,
		Totals:    DashTotals{Placed: c.placed.Load(), Outcomes: map[string]int64{}, Projected: s.rm.projected.Load()},
	}
	for i, o := range Outcomes {
		n := c.outcomes[i].Load()
		snap.Totals.Outcomes[o] = n
		snap.Totals.Completed += n
	}
	if !withQueries {
		return snap
	}
	ctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
	defer cancel()
	fail := func(what string, err error) {
		if snap.Errors == nil {
			snap.Errors = map[string]string{}
		}
		snap.Errors[what] = err.Error()
		if ctx.Err() == nil {
			s.rm.log.Warn("dashboard: "+what, zap.Error(err))
		}
	}
	if byStatus, err := s.rm.store.statusCounts(ctx); err != nil {
		fail("orders", err)
	} else {
		snap.Orders = byStatus
		snap.Sagas = &DashSagas{InFlight: byStatus[Pending] + byStatus[Reserved]}
	}
	if counts, err := s.rm.store.sagaCounts(ctx, s.rm.now().Add(-s.rm.cfg.StuckAfter)); err != nil {
		fail("sagas", err)
	} else if snap.Sagas != nil {
		snap.Sagas.InFlight, snap.Sagas.Stuck, snap.Sagas.StuckAfter = counts.InFlight, &counts.Stuck, s.rm.cfg.StuckAfter.String()
	}
	if s.rm.js != nil {
		cons, dead, err := s.backlog(ctx)
		if err != nil {
			fail("consumers", err)
		}
		snap.Consumers, snap.DeadLetters = cons, dead
	}
	return snap
}

// backlog reads every durable consumer of the event streams (every
// service's) and the number of dead letters.
func (s *sampler) backlog(ctx context.Context) ([]ConsumerBacklog, *int64, error) {
	var out []ConsumerBacklog
	var errs []error
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		st, err := s.rm.js.Stream(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", name, err))
			continue
		}
		list := st.ListConsumers(ctx)
		for info := range list.Info() {
			out = append(out, ConsumerBacklog{Name: info.Name, Stream: name,
				Pending: int64(info.NumPending), AckPending: int64(info.NumAckPending)})
		}
		if err := list.Err(); err != nil {
			errs = append(errs, fmt.Errorf("consumers of %s: %w", name, err))
		}
	}
	slices.SortFunc(out, func(a, b ConsumerBacklog) int {
		if a.Stream != b.Stream {
			return streamRank(a.Stream) - streamRank(b.Stream)
		}
		return cmp.Compare(a.Name, b.Name)
	})
	var dead *int64
	if st, err := s.rm.js.Stream(ctx, stream.DLQ); err != nil {
		errs = append(errs, fmt.Errorf("stream %s: %w", stream.DLQ, err))
	} else if info, err := st.Info(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stream %s: %w", stream.DLQ, err))
	} else {
		n := int64(info.State.Msgs)
		dead = &n
	}
	if len(errs) > 0 {
		return out, dead, errs[0]
	}
	return out, dead, nil
}

func streamRank(s string) int {
	return slices.Index([]string{stream.Orders, stream.Inventory, stream.Payments}, s)
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// statusCounts returns the number of views per status, every status
// present, as counts does (a few index entries and rows, whatever the
// history).
func (s *store) statusCounts(ctx context.Context) (map[Status]int64, error) {
	byStatus, _, err := s.counts(ctx)
	if err != nil {
		return nil, fmt.Errorf("count orders by status: %w", err)
	}
	return byStatus, nil
}
