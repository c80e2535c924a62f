package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// Publisher is the part of jetstream.JetStream the relay needs.
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	Batch        int           // rows locked and published per round; default 256
	Window       int           // publishers in flight at once (each waiting for its acks); default 4
	PollInterval time.Duration // fallback poll for rows nobody woke us for; default 1s
	AckTimeout   time.Duration // how long to wait for the stream's acks; default 10s
	RetryMax     time.Duration // cap on the wait after a failed round; default 5s
	// AtomicMin is how many events for one stream a publisher must hold
	// to send them as one atomic batch (one fsync and one ack for all,
	// where the stream allows it) rather than one by one; default 16, -1
	// never. Below it a batch costs nats-server more than it saves
	// (BenchmarkPublishDurable).
	AtomicMin int
	// DeleteEvery is how long the rows of handed events wait, once the
	// stream acked them, to be deleted together with every other row acked
	// meanwhile, in one statement; default 50ms, -1 at once. Each delete is
	// a commit Postgres makes durable (a WAL fsync) and a round trip:
	// deleting as each publish is acked costs one per publish, which at
	// moderate rates is a third of a service's commits. An acked row
	// waiting for its delete is never published again by this relay; one
	// left by a crash is republished, as after a crash between the ack and
	// the delete.
	DeleteEvery time.Duration
	Logger      *zap.Logger

	// BeforeDelete runs after JetStream acked a round and before its rows are
	// deleted. An error abandons the round (the rows stay and are published
	// again), as a crash at that moment would. It exists for fault injection
	// and crash-window tests.
	BeforeDelete func(ctx context.Context, published []event.Event) error
	// Duplicate, when it returns true for an event, makes the relay publish
	// that event a second time (same id): fault injection.
	Duplicate func(e event.Event) bool
	// OnPublished is called with the events of each publisher's batch
	// the stream acked, once their rows are deleted (a round) or left to
	// the deleter (rows handed over), for metrics.
	OnPublished func(published []event.Event)
	// OnAtomicBatch is called after each atomic batch the relay sent, with
	// its size and whether the stream stored it (false: refused or not
	// acked, its events then published one by one), for metrics.
	OnAtomicBatch func(events int, stored bool)

	// TracerProvider, when set and not a no-op, traces each publish: a
	// producer span, child of the trace context stored with the event,
	// whose own context the message carries. Nil: events are published
	// with the trace context stored with them, as they are.
	TracerProvider trace.TracerProvider
}

// Relay moves committed outbox rows of one schema to JetStream. Several
// relays on one schema are safe: each locks its rows with FOR UPDATE SKIP
// LOCKED, so no row is published by two relays at once.
type Relay struct {
	pool *pgxpool.Pool
	pub  Publisher
	conn *nats.Conn // pub's connection, for atomic batches; nil: none
	cfg  RelayConfig
	log  *zap.Logger
	wake chan struct{}

	handed chan struct{} // rows wait in pending: cap 1, a signal, never blocks
	tracer trace.Tracer  // nil: tracing off

	noAtomic atomic.Bool // the stream or server refused atomic batches: one by one from then on

	mu       sync.Mutex
	inFlight map[int64]struct{} // seqs this relay is publishing, holds in pending, or waits to delete
	pending  []Row              // rows handed over by Hand, not taken by a publisher yet
	acked    []int64            // seqs of handed rows the stream acked, waiting for the deleter
	toDelete chan struct{}      // rows wait in acked: cap 1, a signal, never blocks
}

// NewRelay returns a relay over pool's outbox publishing through pub.
func NewRelay(pool *pgxpool.Pool, pub Publisher, cfg RelayConfig) (*Relay, error) {
	if pool == nil || pub == nil {
		return nil, errors.New("outbox: relay needs a pool and a publisher")
	}
	cfg.Batch = cmp.Or(cfg.Batch, 256)
	cfg.Window = cmp.Or(cfg.Window, 4)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, time.Second)
	cfg.AckTimeout = cmp.Or(cfg.AckTimeout, 10*time.Second)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 5*time.Second)
	cfg.AtomicMin = cmp.Or(cfg.AtomicMin, 16)
	cfg.DeleteEvery = cmp.Or(cfg.DeleteEvery, 50*time.Millisecond)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	r := &Relay{pool: pool, pub: pub, cfg: cfg, log: cfg.Logger.Named("relay"), wake: make(chan struct{}, 1),
		handed: make(chan struct{}, 1), toDelete: make(chan struct{}, 1), inFlight: make(map[int64]struct{}), tracer: telemetry.Tracer(cfg.TracerProvider)}
	if c, ok := pub.(conner); ok {
		r.conn = c.Conn()
	}
	return r, nil
}

// Notify wakes the relay; call it after committing a transaction that added
// events. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx is done, then makes a last attempt to flush the
// outbox (bounded by AckTimeout) and returns nil. Up to Window publishers
// are in flight at once, each waiting for the stream's acks of what it
// sent: a publisher of rows handed over (Hand), which takes every row
// handed since and goes on until none is left, or a round, which reads
// rows back from the outbox. While they wait, rows handed meanwhile gather
// into the next one's batch, so one slow ack does not stall the rest and
// a busy relay publishes in larger batches.
func (r *Relay) Run(ctx context.Context) error {
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	slots := make(chan struct{}, r.cfg.Window)
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		missed   atomic.Bool // a wake came while every slot was busy
	)
	deleterDone := make(chan struct{})
	go func() {
		defer close(deleterDone)
		r.deleteLoop(ctx)
	}()
	// release frees a slot, for the rows handed or the wake that came
	// while every slot was busy.
	release := func() {
		<-slots
		if r.pendingRows() > 0 {
			r.signalHanded()
		}
		if missed.Swap(false) {
			r.Notify()
		}
	}
	startHanded := func() {
		select {
		case slots <- struct{}{}:
		default:
			return // a busy publisher's release signals again
		}
		wg.Go(func() {
			defer release()
			for ctx.Err() == nil {
				rows := r.take()
				if len(rows) == 0 {
					return
				}
				if err := r.publishHanded(ctx, rows); err != nil && ctx.Err() == nil {
					r.log.Warn("publishing handed rows failed; a round takes them", zap.Error(err))
					r.Notify()
					return
				}
			}
		})
	}
	start := func() {
		select {
		case slots <- struct{}{}:
		default:
			missed.Store(true)
			return
		}
		wg.Go(func() {
			defer release()
			n, err := r.round(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				f := failures.Add(1)
				wait := min(time.Duration(1<<min(f, 10))*50*time.Millisecond, r.cfg.RetryMax)
				r.log.Warn("outbox relay round failed", zap.Error(err), zap.Duration("retry_in", wait))
				sleep(ctx, wait) // holding the slot: a failing relay slows down
				r.Notify()
			case err == nil:
				failures.Store(0)
				if n > 0 || missed.Swap(false) {
					r.Notify() // there may be more
				}
			}
		})
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			<-deleterDone
			for rows := r.take(); len(rows) > 0; rows = r.take() {
				r.unholdRows(rows) // the final flush takes them
			}
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.AckTimeout)
			defer cancel()
			if err := r.deleteAcked(final); err != nil {
				r.log.Warn("published outbox rows not deleted at shutdown; the next start publishes them again", zap.Error(err))
			}
			if n, err := r.Flush(final); err != nil {
				r.log.Warn("outbox not flushed at shutdown; rows stay for the next start", zap.Error(err))
			} else if n > 0 {
				r.log.Info("outbox flushed at shutdown", zap.Int("events", n))
			}
			return nil
		case <-r.handed:
			startHanded()
			continue
		case <-r.wake:
		case <-poll.C:
		}
		start()
	}
}

func (r *Relay) unholdRows(rows []Row) {
	seqs := make([]int64, len(rows))
	for i, row := range rows {
		seqs[i] = row.Seq
	}
	r.unhold(seqs)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Flush publishes rounds until the outbox is empty (of rows not locked by
// another relay) and returns how many events it published.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := r.round(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if n < r.cfg.Batch {
			return total, nil
		}
	}
}

// round locks up to Batch rows (none that this relay has in flight already),
// publishes them, waits for every ack, and deletes the acked rows in the
// same transaction. It first looks, outside any transaction, whether there
// is a row that no round of this relay holds, and opens none when there is
// not.
func (r *Relay) round(ctx context.Context) (int, error) {
	if ok, err := r.anyToPublish(ctx); err != nil || !ok {
		return 0, err
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("relay begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	events, seqs, err := lockBatch(ctx, tx, r.cfg.Batch, r.held())
	if err != nil || len(events) == 0 {
		return 0, err
	}
	r.hold(seqs)
	defer r.unhold(seqs)
	n, err := r.publishAndDelete(ctx, tx, events, seqs)
	if n == 0 {
		return 0, err
	}
	if cerr := tx.Commit(ctx); cerr != nil {
		return 0, fmt.Errorf("relay commit: %w", cerr)
	}
	r.published(events[:n])
	if err != nil {
		return n, err
	}
	// Report a full batch only when every row went, so Flush loops on.
	return len(events), nil
}

// Row is one outbox row a transaction wrote: its seq and its event.
type Row struct {
	Seq   int64
	Event event.Event
}

// Hand gives the relay rows that a transaction wrote and has committed, so
// that it publishes them without reading them back, and then deletes them:
// at once when a publisher is free, else with every row handed meanwhile,
// in one batch, when one is. It never blocks. Past Batch×Window rows
// waiting (the stream is slow or away) it takes no more: those rows are
// left to the relay's rounds, which read them back. Rows handed and also
// found by another relay's round are published twice at worst, which the
// stream's duplicate window absorbs, as it absorbs a republish after a
// crash.
func (r *Relay) Hand(rows []Row) {
	if len(rows) == 0 {
		return
	}
	r.mu.Lock()
	full := len(r.pending)+len(rows) > r.cfg.Batch*r.cfg.Window
	if !full {
		for _, row := range rows {
			r.inFlight[row.Seq] = struct{}{}
		}
		r.pending = append(r.pending, rows...)
	}
	r.mu.Unlock()
	if full {
		r.Notify()
		return
	}
	r.signalHanded()
}

func (r *Relay) signalHanded() {
	select {
	case r.handed <- struct{}{}:
	default:
	}
}

// take removes up to Batch rows from those handed over and returns them.
func (r *Relay) take() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(len(r.pending), r.cfg.Batch)
	if n == 0 {
		return nil
	}
	rows := make([]Row, n)
	copy(rows, r.pending)
	r.pending = append(r.pending[:0], r.pending[n:]...)
	return rows
}

func (r *Relay) pendingRows() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// publishHanded publishes rows handed over by Hand and leaves those acked
// to the deleter (deleteLoop), still held so that no round takes them.
func (r *Relay) publishHanded(ctx context.Context, rows []Row) error {
	events := make([]event.Event, len(rows))
	seqs := make([]int64, len(rows))
	for i, row := range rows {
		events[i], seqs[i] = row.Event, row.Seq
	}
	n, err := r.publishAcked(ctx, events, seqs)
	r.unhold(seqs[n:])
	if n > 0 {
		r.mu.Lock()
		r.acked = append(r.acked, seqs[:n]...)
		r.mu.Unlock()
		select {
		case r.toDelete <- struct{}{}:
		default:
		}
		r.published(events[:n])
	}
	return err
}

// deleteLoop deletes the rows of handed events the stream acked, every
// DeleteEvery at most, all of those acked meanwhile in one statement,
// until ctx is done (Run then deletes what is left). A failed delete keeps
// the rows held and tries again, backing off.
func (r *Relay) deleteLoop(ctx context.Context) {
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.toDelete:
		}
		if r.cfg.DeleteEvery > 0 {
			sleep(ctx, r.cfg.DeleteEvery) // rows acked meanwhile go in the same delete
		}
		if ctx.Err() != nil {
			return
		}
		if err := r.deleteAcked(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := min(time.Duration(1<<min(failures, 10))*50*time.Millisecond, r.cfg.RetryMax)
			r.log.Warn("deleting published outbox rows failed; trying again", zap.Error(err), zap.Duration("retry_in", wait))
			sleep(ctx, wait)
			select {
			case r.toDelete <- struct{}{}:
			default:
			}
			continue
		}
		failures = 0
	}
}

// deleteAcked deletes the rows waiting in acked, in one statement, and
// stops holding them. On failure they wait for the next attempt.
func (r *Relay) deleteAcked(ctx context.Context) error {
	r.mu.Lock()
	seqs := r.acked
	r.acked = nil
	r.mu.Unlock()
	if len(seqs) == 0 {
		return nil
	}
	if _, err := r.pool.Exec(ctx, `DELETE FROM outbox WHERE seq = ANY($1)`, seqs); err != nil {
		r.mu.Lock()
		r.acked = append(seqs, r.acked...)
		r.mu.Unlock()
		return fmt.Errorf("relay delete %d rows: %w", len(seqs), err)
	}
	r.unhold(seqs)
	return nil
}

func (r *Relay) published(events []event.Event) {
	if r.cfg.OnPublished != nil {
		r.cfg.OnPublished(events)
	}
}

// publishAndDelete publishes events (seqs are their rows), waits for the
// stream's acks, and deletes the acked rows in tx (a round's). It reorders events
// and seqs so that the n acked ones come first, and returns n; err is the
// first failure, if any. Rows not acked stay for a later round.
func (r *Relay) publishAndDelete(ctx context.Context, tx pgx.Tx, events []event.Event, seqs []int64) (n int, err error) {
	n, err = r.publishAcked(ctx, events, seqs)
	if n == 0 {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE seq = ANY($1)`, seqs[:n]); err != nil {
		return 0, fmt.Errorf("relay delete %d rows: %w", n, err)
	}
	return n, err
}

// publishAcked publishes events (seqs are their rows) and waits for the
// stream's acks, then runs BeforeDelete on the acked ones. It reorders
// events and seqs so that the n acked ones come first, and returns n (0
// when BeforeDelete failed); err is the first failure, if any.
func (r *Relay) publishAcked(ctx context.Context, events []event.Event, seqs []int64) (n int, err error) {
	batched := r.publishAtomic(ctx, events, seqs)
	n, err = r.publishEach(ctx, events[batched:], seqs[batched:])
	n += batched
	if n == 0 {
		return 0, err
	}
	if r.cfg.BeforeDelete != nil {
		if err := r.cfg.BeforeDelete(ctx, events[:n]); err != nil {
			return 0, fmt.Errorf("relay before delete: %w", err)
		}
	}
	return n, err
}

// publishEach publishes events one by one (seqs are their rows) and waits
// for the stream's acks. It reorders events and seqs so that the n acked
// ones come first, and returns n; err is the first failure, if any.
func (r *Relay) publishEach(ctx context.Context, events []event.Event, seqs []int64) (n int, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	var extra []jetstream.PubAckFuture // duplicates: waited for, outcome ignored
	var spans []trace.Span             // spans[i] is futures[i]'s; nil when tracing is off
	if r.tracer != nil {
		spans = make([]trace.Span, 0, len(events))
		defer func() {
			// The acked ones ended already (ending again does nothing): end
			// the rest, with the error if any.
			for _, s := range spans[n:] {
				if err != nil {
					s.SetStatus(codes.Error, err.Error())
				}
				s.End()
			}
		}()
	}
	for _, e := range events {
		msg := e.Msg()
		if r.tracer != nil {
			span := r.startPublish(ctx, e)
			spans = append(spans, span)
			e.Trace = telemetry.Inject(span.SpanContext())
			msg.Header = e.Header()
		}
		f, err := r.pub.PublishMsgAsync(msg, jetstream.WithExpectStream(e.Type.Stream()))
		if err != nil {
			// Wait for what was sent: rows after a failed send stay.
			r.log.Warn("publish failed", zap.String("event_id", e.ID), zap.String("event_type", string(e.Type)),
				zap.String("order_id", e.OrderID), zap.Error(err))
			if spans != nil {
				s := spans[len(spans)-1]
				spans = spans[:len(spans)-1]
				s.SetStatus(codes.Error, err.Error())
				s.End()
			}
			break
		}
		futures = append(futures, f)
		if r.cfg.Duplicate != nil && r.cfg.Duplicate(e) {
			if d, err := r.pub.PublishMsgAsync(msg, jetstream.WithExpectStream(e.Type.Stream())); err == nil {
				extra = append(extra, d)
			}
		}
	}

	timeout := time.NewTimer(r.cfg.AckTimeout)
	defer timeout.Stop()
	var firstErr error
	for i, f := range futures {
		select {
		case <-f.Ok():
			// A duplicate ack (PubAck.Duplicate) is a success too: the stream
			// has the event.
			events[n], events[i] = events[i], events[n]
			seqs[n], seqs[i] = seqs[i], seqs[n]
			if spans != nil {
				spans[n], spans[i] = spans[i], spans[n]
				spans[n].End()
			}
			n++
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish %s %s: %w", events[i].Type, events[i].ID, err)
			}
			if spans != nil {
				spans[i].SetStatus(codes.Error, err.Error())
			}
		case <-timeout.C:
			return 0, fmt.Errorf("relay: no ack within %s for %d events", r.cfg.AckTimeout, len(futures)-i)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	for _, f := range extra {
		select {
		case <-f.Ok():
		case <-f.Err():
		case <-timeout.C:
		case <-ctx.Done():
		}
	}
	if firstErr == nil && len(futures) < len(events) {
		firstErr = fmt.Errorf("relay: %d events not sent", len(events)-len(futures))
	}
	return n, firstErr
}

// startPublish starts the producer span of publishing e: a child of the
// trace context stored with e (a new trace when it has none).
func (r *Relay) startPublish(ctx context.Context, e event.Event) trace.Span {
	ctx = telemetry.Extract(ctx, e.Trace)
	_, span := r.tracer.Start(ctx, "publish "+string(e.Type), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", e.Subject()),
			attribute.String("messaging.message.id", e.ID),
			telemetry.AttrOrderID.String(e.OrderID),
			telemetry.AttrEventID.String(e.ID),
			telemetry.AttrEventType.String(string(e.Type)),
			telemetry.AttrCausationID.String(e.CausationID),
		))
	return span
}

// anyToPublish reports whether the outbox holds a row that no round of this
// relay has locked.
func (r *Relay) anyToPublish(ctx context.Context) (bool, error) {
	var ok bool
	if err := r.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox WHERE seq <> ALL($1) ORDER BY seq LIMIT 1)`, r.held()).Scan(&ok); err != nil {
		return false, fmt.Errorf("relay look: %w", err)
	}
	return ok, nil
}

// held returns the seqs this relay has in flight.
func (r *Relay) held() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := make([]int64, 0, len(r.inFlight))
	for seq := range r.inFlight {
		held = append(held, seq)
	}
	return held
}

func (r *Relay) hold(seqs []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range seqs {
		r.inFlight[s] = struct{}{}
	}
}

func (r *Relay) unhold(seqs []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range seqs {
		delete(r.inFlight, s)
	}
}

func lockBatch(ctx context.Context, tx pgx.Tx, limit int, held []int64) ([]event.Event, []int64, error) {
	rows, err := tx.Query(ctx, `
		SELECT seq, event_id::text, event_type, order_id, causation_id, occurred_at, body,
			coalesce(trace_parent, ''), coalesce(trace_state, '')
		FROM outbox
		WHERE seq <> ALL($2)
		ORDER BY seq
		LIMIT $1
		FOR UPDATE SKIP LOCKED`, limit, held)
	if err != nil {
		return nil, nil, fmt.Errorf("relay select: %w", err)
	}
	defer rows.Close()
	var (
		events []event.Event
		seqs   []int64
	)
	for rows.Next() {
		var (
			e   event.Event
			seq int64
			typ string
		)
		if err := rows.Scan(&seq, &e.ID, &typ, &e.OrderID, &e.CausationID, &e.OccurredAt, &e.Body,
			&e.Trace.Parent, &e.Trace.State); err != nil {
			return nil, nil, fmt.Errorf("relay scan: %w", err)
		}
		e.Type = event.Type(typ)
		e.OccurredAt = e.OccurredAt.UTC()
		events = append(events, e)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("relay rows: %w", err)
	}
	return events, seqs, nil
}
