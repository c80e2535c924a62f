package consume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// Run consumes until ctx is done. One goroutine per source receives
// messages from JetStream (a pull subscription that keeps up to Prefetch
// messages requested ahead); Workers goroutines take what has arrived, from
// any source, up to Batch messages at a time, and handle each such batch in
// one transaction. On cancellation it stops receiving, finishes every
// message it holds, and returns nil.
func (l *Loop) Run(ctx context.Context) error {
	msgs := make(chan arrival, l.cfg.Batch*l.cfg.Workers)
	var wg sync.WaitGroup
	for range l.cfg.Workers {
		// Messages in hand are finished even after ctx is cancelled.
		wg.Go(func() { l.work(context.WithoutCancel(ctx), msgs) })
	}
	var receivers sync.WaitGroup
	for _, src := range l.srcs {
		receivers.Go(func() { l.receive(ctx, src, msgs) })
	}
	receivers.Wait()
	close(msgs)
	wg.Wait()
	return nil
}

// arrival is a message and the source it came from.
type arrival struct {
	msg jetstream.Msg
	src *source
}

// receive hands every message JetStream delivers from src to msgs until ctx
// is done, restarting the subscription if it ends (the consumer was deleted
// and recreated, say). It blocks while msgs is full, so the workers set the
// pace.
func (l *Loop) receive(ctx context.Context, src *source, msgs chan<- arrival) {
	var failures int
	log := l.base.With(zap.String("consumer", src.name))
	for ctx.Err() == nil {
		cc, err := src.cons.Consume(func(m jetstream.Msg) { msgs <- arrival{m, src} },
			jetstream.PullMaxMessages(l.cfg.Prefetch),
			jetstream.PullExpiry(max(l.cfg.FetchWait, time.Second)),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				log.Debug("consume", zap.Error(err))
			}))
		if err != nil {
			failures++
			wait := min(time.Duration(1<<min(failures, 8))*50*time.Millisecond, 5*time.Second)
			log.Warn("consume failed", zap.Error(err), zap.Duration("retry_in", wait))
			sleep(ctx, wait)
			continue
		}
		failures = 0
		select {
		case <-ctx.Done():
			// Drain hands what was already received to msgs; then we stop.
			cc.Drain()
			select {
			case <-cc.Closed():
			case <-time.After(l.cfg.AckWait):
				cc.Stop()
			}
			return
		case <-cc.Closed():
			log.Warn("consuming stopped; starting again")
			sleep(ctx, 250*time.Millisecond)
		}
	}
}

// work takes whatever has arrived, up to Batch messages, and handles it as
// one batch; it never waits to fill a batch, so a lone message goes at once.
// Events found too early are held for the next rounds (see heldRounds):
// while it holds some, it waits for new messages only briefly, and tries
// them again when none came.
func (l *Loop) work(ctx context.Context, msgs <-chan arrival) {
	batch := make([]arrival, 0, l.cfg.Batch)
	var held []*delivery
	for {
		batch = batch[:0]
		if len(held) == 0 {
			m, ok := <-msgs
			if !ok {
				return
			}
			batch = append(batch, m)
		} else {
			wait := time.NewTimer(heldWait(held))
			select {
			case m, ok := <-msgs:
				wait.Stop()
				if !ok {
					l.letGo(held)
					return
				}
				batch = append(batch, m)
			case <-wait.C:
			}
		}
	fill:
		for len(batch) > 0 && len(batch) < l.cfg.Batch {
			select {
			case m, ok := <-msgs:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		held = l.handleBatch(ctx, batch, held)
	}
}

// heldRounds is how many rounds of its worker (a batch, or a short wait
// when nothing arrives) an event found too early is held for and tried
// again, unacked, before it is sent back to JetStream to be redelivered
// after a delay. What it waits for is mostly a message a few milliseconds
// behind it, from another stream; a redelivery would queue behind
// everything that arrived meanwhile.
const heldRounds = 6

// heldWait is how long a worker holding early events waits for a new
// message before it tries them again alone: NotYetFirst, doubled with each
// round the longest held one has been held, up to 16 times.
func heldWait(held []*delivery) time.Duration {
	rounds := 0
	for _, d := range held {
		rounds = max(rounds, d.held)
	}
	return NotYetFirst << min(rounds-1, 4)
}

// letGo sends held events back to JetStream, to be redelivered soon: the
// loop is stopping.
func (l *Loop) letGo(held []*delivery) {
	for _, d := range held {
		if err := d.msg.NakWithDelay(NotYetFirst); err != nil {
			l.eventLog(d).Warn("nak failed; the message is redelivered after AckWait", zap.Error(err))
		}
	}
}

// delivery is one message of a batch and what became of it.
type delivery struct {
	msg  jetstream.Msg
	src  *source
	md   *jetstream.MsgMetadata
	e    event.Event
	dup  bool  // the inbox held the event already: done before
	err  error // nil: applied (or dup) and committed
	held int   // rounds it has been held for, too early each time

	replay *replayed  // a replay loop's: the consumer it is for and the original message
	span   trace.Span // the message's consumer span; nil when tracing is off
}

// handleBatch decodes every message, applies the decodable ones in one
// transaction (set-based, or one by one behind a savepoint each, so that a
// failing message is rolled back alone), commits, hands the outbox rows
// written to the relay, and only then acks what committed; failed messages
// are retried with backoff or dead-lettered one by one. Events held from
// earlier rounds (too early then) are tried again after the batch
// committed; it returns those to hold for the next round.
func (l *Loop) handleBatch(ctx context.Context, batch []arrival, held []*delivery) (holdOn []*delivery) {
	start := time.Now()
	// From the start: injected delays before handling count too.
	inHand := make([]jetstream.Msg, 0, len(batch)+len(held))
	for _, a := range batch {
		inHand = append(inHand, a.msg)
	}
	for _, d := range held {
		inHand = append(inHand, d.msg)
		if l.tracer != nil {
			d.span = l.startProcess(ctx, d)
		}
	}
	stopKeep := keepInProgress(inHand, max(l.cfg.AckWait/3, 100*time.Millisecond))
	defer stopKeep()
	ds := make([]*delivery, 0, len(batch))
	for _, a := range batch {
		msg, src := a.msg, a.src
		md, err := msg.Metadata()
		if err != nil {
			// Not a JetStream message: nothing to ack.
			l.log.Error("message without JetStream metadata", zap.String("subject", msg.Subject()), zap.Error(err))
			continue
		}
		// A replay is the original message wrapped: unwrap it first (an
		// unroutable one is dead-lettered as it is).
		var rp *replayed
		subject, header := msg.Subject(), msg.Headers()
		if l.routes != nil {
			if rp, err = l.unwrap(msg); err != nil {
				l.deadLetter(ctx, src, msg, md, nil, "", err)
				continue
			}
			subject, header = rp.subject, rp.header
		}
		// Limits first: an over-long subject or an oversized message is
		// dead-lettered in its cut form before anything reads it.
		if err := admit(subject, header, msg.Data()); err != nil {
			l.deadLetter(ctx, src, msg, md, rp, "", err)
			continue
		}
		e, err := event.FromMsg(subject, header, msg.Data())
		if err != nil {
			l.deadLetter(ctx, src, msg, md, rp, "", fmt.Errorf("decode %s: %w", subject, err))
			continue
		}
		if rp == nil {
			// Where the event sits in its own stream (a replay sits in
			// REPLAY: it carries no sequence, its id deduplicates it).
			e.Stream, e.Seq = md.Stream, md.Sequence.Stream
		}
		d := &delivery{msg: msg, src: src, md: md, e: e, replay: rp}
		if l.tracer != nil {
			d.span = l.startProcess(ctx, d)
		}
		if l.cfg.Faults.BeforeHandle != nil {
			if err := l.cfg.Faults.BeforeHandle(ctx, e); err != nil {
				d.err = fmt.Errorf("before handle %s %s: %w", e.Type, e.ID, err)
			}
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 && len(held) == 0 {
		return nil
	}
	// Handlers lock per order (a row, an advisory lock): taking those locks
	// in one order across every batch of every consumer of the service
	// means two batches never wait for each other in a cycle. The sort is
	// stable, so one order's events keep the order they arrived in.
	slices.SortStableFunc(ds, func(a, b *delivery) int { return strings.Compare(a.e.OrderID, b.e.OrderID) })

	actx := ctx
	var batchSpan trace.Span
	if l.tracer != nil {
		actx, batchSpan = l.startBatch(ctx, append(ds[:len(ds):len(ds)], held...))
	}
	written, err := l.apply(actx, ds, held)
	if batchSpan != nil {
		if err != nil {
			batchSpan.RecordError(err)
			batchSpan.SetStatus(codes.Error, "batch transaction failed")
		}
		batchSpan.End()
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", errBatch, err)
		// Nothing of the batch committed: whatever was applied (or seen as
		// a duplicate of an event applied earlier in this very
		// transaction) is retried.
		for _, d := range ds {
			if d.err == nil {
				d.err, d.dup = err, false
			}
		}
	}
	l.cfg.Metrics.observeBatch(l.cfg.Consumer, len(ds), time.Since(start))

	if err == nil && len(written) > 0 && l.cfg.Handoff != nil {
		l.cfg.Handoff(written)
	}
	for _, d := range append(ds, held...) {
		if l.settle(ctx, d, time.Since(start)) {
			holdOn = append(holdOn, d)
		}
	}
	return holdOn
}

// keepInProgress tells JetStream every interval that msgs are still being
// worked on, so a slow batch keeps its messages past AckWait. The returned
// func stops it and waits for it.
func keepInProgress(msgs []jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

var (
	// errNoDatabase marks a failure to begin the transaction: the
	// service's database cannot be reached.
	errNoDatabase = errors.New("database unavailable")
	// errBatch marks a failure of the batch's transaction as a whole (a
	// broken transaction, a failed commit).
	errBatch = errors.New("batch transaction failed")
)

// apply runs the batch: set-based first when the loop can (applyAll), one
// message at a time if the set-based pass refuses the batch. A delivery
// whose handler fails keeps its error; the others commit together. It
// returns the outbox rows the committed handlers wrote; the error says the
// transaction as a whole failed (begin, a broken transaction, commit).
//
// Events the handlers found too early, in this batch or held from earlier
// rounds, are tried once more, in a transaction of their own, after the
// rest of the batch committed (or alone, when the batch is empty: its
// worker waited for new messages in vain): the step one waits for is
// often in the same batch, from another source (inventory.released after
// the payment.failed that the payments source applies after the inventory
// source's events), and is there now. Those still too early keep their
// error.
func (l *Loop) apply(ctx context.Context, ds, held []*delivery) ([]outbox.Row, error) {
	var written []outbox.Row
	if len(ds) > 0 {
		var err error
		if written, err = l.applyOnce(ctx, ds); err != nil || !l.batched() {
			return written, err
		}
	}
	again := held[:len(held):len(held)]
	progress := len(ds) == 0
	for _, d := range ds {
		switch {
		case d.err == nil && !d.dup:
			progress = true
		case d.err != nil && IsNotYet(d.err):
			again = append(again, d)
		}
	}
	if !progress || len(again) == 0 {
		return written, nil
	}
	// In order id order, as every batch takes its locks (handleBatch).
	slices.SortStableFunc(again, func(a, b *delivery) int { return strings.Compare(a.e.OrderID, b.e.OrderID) })
	errs := make([]error, len(again))
	for i, d := range again {
		errs[i], d.err = d.err, nil
	}
	more, err := l.applyOnce(ctx, again)
	if err != nil {
		// Nothing of this pass committed: they wait for their retry, as
		// they would have without it. The first pass's commit stands.
		for i, d := range again {
			d.err, d.dup = errs[i], false
		}
		l.log.Debug("second pass of early events failed", zap.Int("events", len(again)), zap.Error(err))
		return written, nil
	}
	return append(written, more...), nil
}

// applyOnce runs ds set-based until no handler finds an event too early
// (each pass without the early ones), or one by one when the set-based
// pass refuses them.
func (l *Loop) applyOnce(ctx context.Context, ds []*delivery) ([]outbox.Row, error) {
	if l.batched() {
		for {
			written, outcome, err := l.applyAll(ctx, ds)
			if err != nil {
				return nil, err
			}
			switch outcome {
			case setApplied:
				return written, nil
			case setRetry:
				continue // fewer live deliveries each time
			}
			break
		}
	}
	return l.applyEach(ctx, ds)
}

// applyEach runs the batch in one transaction, one message at a time: for
// each delivery not failed already, a savepoint and the inbox insert (sent
// together, one round trip), then the handler. A delivery whose handler
// fails is rolled back to its savepoint and keeps its error.
func (l *Loop) applyEach(ctx context.Context, ds []*delivery) ([]outbox.Row, error) {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w: %w", errNoDatabase, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if l.cfg.Prepare != nil {
		events := make([]event.Event, 0, len(ds))
		for _, d := range ds {
			if d.err == nil {
				events = append(events, d.e)
			}
		}
		if err := l.cfg.Prepare(ctx, tx, events); err != nil {
			return nil, fmt.Errorf("prepare batch: %w", err)
		}
	}
	var written []outbox.Row
	pending := 0
	for _, d := range ds {
		if d.err != nil {
			continue
		}
		var rows []outbox.Row
		d.dup, rows, d.err = l.applyOne(ctx, tx, d)
		if d.err == nil {
			pending++
			written = append(written, rows...)
			continue
		}
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT message`); err != nil {
			return nil, fmt.Errorf("roll back %s %s: %w", d.e.Type, d.e.ID, err)
		}
	}
	if pending == 0 {
		return nil, nil // nothing to commit; the deferred rollback ends it
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit %d events: %w", pending, err)
	}
	return written, nil
}

// setOutcome is how a set-based pass ended.
type setOutcome int

const (
	setApplied setOutcome = iota // committed (or nothing was left to apply)
	setRetry                     // some events came too early: they were taken out; try the rest again
	setRefused                   // the batch handler refused the batch: go one by one
)

// applyAll tries the batch set-based, in a transaction of its own whose
// BEGIN travels with the switch to generic plans (pg.GenericPlans) and the
// inbox insert (one round trip): one inbox insert
// for every delivery not failed already, telling the new events from the
// duplicates, then Prepare (for the sources' handlers, see Config.Prepare)
// and the batch handlers on the new ones, then the commit. When a handler
// reports events that come too early (a
// *Later), those deliveries get their error and the transaction is rolled
// back, for the caller to try the rest again; when it refuses the batch,
// the transaction is rolled back and the caller goes message by message.
// An error means the transaction itself failed.
func (l *Loop) applyAll(ctx context.Context, ds []*delivery) (written []outbox.Row, outcome setOutcome, err error) {
	var live []*delivery
	for _, d := range ds {
		if d.err == nil {
			live = append(live, d)
		}
	}
	if len(live) == 0 {
		return nil, setApplied, nil
	}
	consumers := make([]string, len(live))
	ids := make([]string, len(live))
	types := make([]string, len(live))
	orders := make([]string, len(live))
	for i, d := range live {
		consumers[i], ids[i], types[i], orders[i] = d.src.name, d.e.ID, string(d.e.Type), d.e.OrderID
	}
	b := &pgx.Batch{}
	b.Queue(pg.GenericPlans)
	b.Queue(`
		INSERT INTO inbox (consumer, event_id, event_type, order_id)
		SELECT t.cons, t.id, t.typ, t.ord FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[]) AS t(cons, id, typ, ord)
		ON CONFLICT DO NOTHING
		RETURNING consumer, event_id::text`, consumers, ids, types, orders)
	tx, br, err := pg.BeginWith(ctx, l.pool, b)
	if err != nil {
		return nil, 0, fmt.Errorf("begin: %w: %w", errNoDatabase, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var fresh []inboxKey
	_, err = br.Exec()
	var rows pgx.Rows
	if err == nil {
		rows, err = br.Query()
	}
	if err == nil {
		fresh, err = pgx.CollectRows(rows, pgx.RowToStructByPos[inboxKey])
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		l.log.Debug("inbox insert failed; handling the batch's messages one by one", zap.Int("messages", len(live)), zap.Error(err))
		return nil, setRefused, nil
	}
	isNew := make(map[inboxKey]bool, len(fresh))
	for _, k := range fresh {
		isNew[k] = true
	}
	var events []event.Event
	bySource := make(map[*source][]event.Event, len(l.srcs))
	for _, d := range live {
		// The first delivery of a new id is new; another copy of it in the
		// same batch is a duplicate.
		k := inboxKey{d.src.name, d.e.ID}
		d.dup = !isNew[k]
		if !d.dup {
			events = append(events, d.e)
			bySource[d.src] = append(bySource[d.src], d.e)
			delete(isNew, k)
		}
	}
	if len(bySource) > 1 && l.cfg.BatchHandler == nil && l.cfg.Prepare != nil {
		if err := l.cfg.Prepare(ctx, tx, events); err != nil {
			return nil, 0, fmt.Errorf("prepare batch: %w", err)
		}
	}
	// The handlers' outbox inserts wait for the commit and go in its round
	// trip (outbox.Defer): the batch commits whole or not at all.
	hctx, col := outbox.Collect(l.withCauses(ctx, live))
	hctx, deferred := outbox.Defer(hctx)
	if len(events) > 0 {
		err = l.applySet(hctx, tx, events, bySource)
	}
	for _, e := range events {
		if err == nil && l.cfg.Faults.BeforeCommit != nil {
			err = l.cfg.Faults.BeforeCommit(ctx, e)
		}
	}
	if err == nil {
		err = outbox.Commit(hctx, tx, deferred)
		if err == nil {
			return col.Rows(), setApplied, nil
		}
		if !errors.Is(err, outbox.ErrDeferred) {
			return nil, 0, fmt.Errorf("commit %d events: %w", len(live), err)
		}
	}
	for _, d := range live {
		d.dup = false
	}
	if rerr := tx.Rollback(ctx); rerr != nil {
		return nil, 0, fmt.Errorf("roll back batch of %d: %w", len(live), rerr)
	}
	if later := (*Later)(nil); errors.As(err, &later) && len(later.IDs) > 0 && !IsPermanent(err) {
		early := make(map[string]bool, len(later.IDs))
		for _, id := range later.IDs {
			early[id] = true
		}
		taken := 0
		for _, d := range live {
			if early[d.e.ID] {
				d.err = fmt.Errorf("%s %s: %w", d.e.Type, d.e.ID, NotYet(later.Err))
				taken++
			}
		}
		if taken > 0 {
			l.log.Debug("events too early taken out of the batch", zap.Int("early", taken), zap.Int("messages", len(live)), zap.Error(later.Err))
			return nil, setRetry, nil
		}
	}
	l.log.Debug("batch refused set-based; handling its messages one by one", zap.Int("messages", len(live)), zap.Error(err))
	trace.SpanFromContext(ctx).AddEvent("batch refused set-based; one by one", trace.WithAttributes(
		telemetry.AttrSetBased.Bool(false)))
	return nil, setRefused, nil
}

// inboxKey is an inbox row's key.
type inboxKey struct {
	Consumer string
	EventID  string
}

// applySet applies the new events of a batch set-based: all of them with
// the loop's BatchHandler, or each source's with its own, in the order of
// the sources. It stops at the first source that reports events coming too
// early (a *Later) and returns that: such a handler keeps nothing of its
// pass, so the sources after it would find its other events unapplied and
// take what follows them for early too (an order's payment.completed for
// one whose inventory.reserved is in the same batch), and those would wait
// for a redelivery. The loop runs the batch again without the early ones.
// Any other error stops it too.
func (l *Loop) applySet(ctx context.Context, tx pgx.Tx, events []event.Event, bySource map[*source][]event.Event) error {
	if l.cfg.BatchHandler != nil {
		return l.cfg.BatchHandler(ctx, tx, events)
	}
	for _, src := range l.srcs {
		es := bySource[src]
		if len(es) == 0 {
			continue
		}
		if err := src.bh(ctx, tx, es); err != nil {
			return err
		}
	}
	return nil
}

// applyOne handles one event inside tx, behind a savepoint named message.
// dup is true when the inbox already held the event.
// A replay goes to the handler of the consumer it is for, under that
// consumer's inbox key, and resolves its dead_letters row.
func (l *Loop) applyOne(ctx context.Context, tx pgx.Tx, d *delivery) (dup bool, written []outbox.Row, err error) {
	e, consumer, h := d.e, d.src.name, d.src.h
	if d.replay != nil {
		consumer, h = d.replay.consumer, d.replay.route.Handle
	}
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT message`)
	b.Queue(`
		INSERT INTO inbox (consumer, event_id, event_type, order_id)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, consumer, e.ID, string(e.Type), e.OrderID)
	if rp := d.replay; rp != nil {
		b.Queue(`DELETE FROM dead_letters WHERE consumer = $1 AND stream = $2 AND stream_seq = $3`,
			rp.consumer, rp.stream, int64(rp.seq))
	}
	tags, err := pg.ExecBatch(ctx, tx, b)
	if err != nil {
		return false, nil, fmt.Errorf("inbox insert %s %s: %w", e.Type, e.ID, err)
	}
	if tags[1].RowsAffected() == 0 {
		return true, nil, nil
	}
	if d.replay != nil && d.replay.route.Prepare != nil {
		if err := d.replay.route.Prepare(ctx, tx, []event.Event{e}); err != nil {
			return false, nil, fmt.Errorf("prepare %s %s: %w", e.Type, e.ID, err)
		}
	}
	hctx, col := outbox.Collect(l.withCause(ctx, d))
	if err := h(hctx, tx, e); err != nil {
		return false, nil, fmt.Errorf("handle %s %s: %w", e.Type, e.ID, err)
	}
	if l.cfg.Faults.BeforeCommit != nil {
		if err := l.cfg.Faults.BeforeCommit(ctx, e); err != nil {
			return false, nil, fmt.Errorf("before commit %s %s: %w", e.Type, e.ID, err)
		}
	}
	return false, col.Rows(), nil
}

// settle acks, retries or dead-letters one delivery after its batch ended,
// and ends its span. It returns true for an event too early that its
// worker holds for its next round (see heldRounds) instead of sending it
// back to JetStream.
func (l *Loop) settle(ctx context.Context, d *delivery, took time.Duration) (hold bool) {
	msg, md, e := d.msg, d.md, d.e
	if d.span != nil {
		defer d.span.End()
		ctx = trace.ContextWithSpan(ctx, d.span) // the dead letter's log has the trace id
	}
	switch {
	case d.err == nil:
		l.failures.forget(md.Stream, md.Sequence.Stream)
		action := Ack
		if l.cfg.Faults.AfterCommit != nil && !d.dup {
			action = l.cfg.Faults.AfterCommit(ctx, e)
		}
		switch action {
		case NoAck:
		case Redeliver:
			_ = msg.Nak()
		default:
			if err := msg.Ack(); err != nil {
				// The commit stands; a redelivery will hit the inbox.
				l.eventLog(d).Warn("ack failed after commit", zap.Error(err))
			}
		}
		outcome := outcomeHandled
		if d.dup {
			outcome = outcomeDuplicate
		}
		l.cfg.Metrics.observe(d.src.name, e.Type, outcome, took)
		if d.span != nil {
			d.span.SetAttributes(telemetry.AttrOutcome.String(outcome))
		}
		if rp := d.replay; rp != nil {
			l.eventLog(d).Info("dead letter replayed", zap.String("outcome", outcome), zap.String("for_consumer", rp.consumer),
				zap.Uint64("dlq_seq", rp.dlqSeq), zap.String("stream", rp.stream), zap.Uint64("stream_seq", rp.seq))
		}
		if ce := l.log.Check(zap.DebugLevel, "event "+outcome); ce != nil {
			ce.Write(zap.String("order_id", e.OrderID), zap.String("event_id", e.ID),
				zap.String("event_type", string(e.Type)), zap.Duration("took", took), l.traceID(d))
		}
	case IsPermanent(d.err):
		l.failures.forget(md.Stream, md.Sequence.Stream)
		spanFailed(d.span, outcomeDeadLettered, d.err)
		l.deadLetter(ctx, d.src, msg, md, d.replay, e.Type, d.err)
	default:
		notYet := IsNotYet(d.err)
		fault := messageFault(d.err) && (!notYet || time.Since(e.OccurredAt) > NotYetGrace)
		failures := l.failures.count(md.Stream, md.Sequence.Stream, fault)
		if l.cfg.MaxDeliver > 0 && failures >= l.cfg.MaxDeliver {
			l.failures.forget(md.Stream, md.Sequence.Stream)
			err := fmt.Errorf("gave up after %d failures in %d deliveries: %w", failures, md.NumDelivered, d.err)
			spanFailed(d.span, outcomeDeadLettered, err)
			l.deadLetter(ctx, d.src, msg, md, d.replay, e.Type, err)
			return
		}
		spanFailed(d.span, outcomeRetried, d.err)
		delay := l.backoff(md.NumDelivered)
		l.cfg.Metrics.observe(d.src.name, e.Type, outcomeRetried, took)
		if notYet && d.held < heldRounds && l.batched() {
			d.held++
			if ce := l.log.Check(zap.DebugLevel, "event comes before the step it follows; held for the next round"); ce != nil {
				ce.Write(zap.String("consumer", d.src.name), zap.String("order_id", e.OrderID), zap.String("event_id", e.ID),
					zap.String("event_type", string(e.Type)), zap.Int("round", d.held), zap.Error(d.err), l.traceID(d))
			}
			return true
		}
		log := l.eventLog(d).With(zap.Uint64("delivery", md.NumDelivered))
		if notYet {
			// Normal when consumers race (the step it waits for is
			// usually milliseconds away): retried soon, logged quietly.
			delay = min(NotYetFirst<<min(md.NumDelivered-1, 16), NotYetRetry)
			log.Info("event comes before the step it follows; retrying", zap.Error(d.err), zap.Int("failures", failures),
				zap.Duration("retry_in", delay))
		} else {
			log.Warn("handling failed; retrying", zap.Error(d.err), zap.Int("failures", failures),
				zap.Duration("retry_in", delay))
		}
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("nak failed; the message is redelivered after AckWait", zap.Error(err))
		}
	}
	return false
}

func (l *Loop) eventLog(d *delivery) *zap.Logger {
	e := d.e
	return l.base.With(zap.String("consumer", d.src.name), zap.String("order_id", e.OrderID), zap.String("event_id", e.ID),
		zap.String("event_type", string(e.Type)), l.traceID(d))
}

// messageFault reports whether a failure to handle a message is the
// message's own doing (its handler refused it, a constraint it violates,
// an injected handler fault) rather than the infrastructure's (the database
// unreachable, the connection lost, a deadlock or serialization conflict
// with another transaction, a timeout). Only the former count towards
// MaxDeliver: however long Postgres is away, a good message is never
// dead-lettered for it.
func messageFault(err error) bool {
	if errors.Is(err, errNoDatabase) || errors.Is(err, errBatch) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"40", // transaction rollback: serialization failure, deadlock
			"53", // insufficient resources
			"57", // operator intervention: shutdown, cannot connect now
			"58": // system error
			return false
		}
		return true
	}
	var connErr *pgconn.ConnectError
	return !errors.As(err, &connErr)
}

// failureCounts counts, per stream message, the failures of messages that
// are still being retried, so that only the message's own failures (see
// messageFault) count towards MaxDeliver. The counts live in memory: a
// restart starts them again (a message is then retried a little longer,
// never dead-lettered early).
type failureCounts struct {
	mu sync.Mutex
	n  map[streamSeq]int
}

// streamSeq names a stream message: a loop's sources read several streams.
type streamSeq struct {
	stream string
	seq    uint64
}

// maxTracked bounds the map: entries of messages that went to another
// instance are never forgotten one by one.
const maxTracked = 100_000

// count records a failure of the message at seq of stream (one that counts
// when counted is true) and returns how many of its failures counted so far.
func (f *failureCounts) count(stream string, seq uint64, counted bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil || len(f.n) >= maxTracked {
		f.n = make(map[streamSeq]int)
	}
	k := streamSeq{stream, seq}
	if counted {
		f.n[k]++
	}
	return f.n[k]
}

func (f *failureCounts) forget(stream string, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.n, streamSeq{stream, seq})
}
