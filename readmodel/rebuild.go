package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/pg"
)

// The schemas of a rebuild: the new read model is built in rebuildSchema
// while Schema keeps serving; at the switch Schema becomes retiredSchema
// (dropped right after) and rebuildSchema becomes Schema.
const (
	rebuildSchema = Schema + "_rebuild"
	retiredSchema = Schema + "_retired"
)

// rebuildBatch is how many events the rebuild projects per transaction.
const rebuildBatch = 512

// deliveryTables are the runtime's tables in the service schema; the switch
// moves the live ones into the new schema, so that the inbox (and the dead
// letters) carry over.
var deliveryTables = []string{"inbox", "dead_letters", "outbox"}

// ErrRebuildRunning is returned when a rebuild is asked for while one runs.
var ErrRebuildRunning = errors.New("a rebuild is running already")

// StreamReplay is what a rebuild read from one stream.
type StreamReplay struct {
	Stream   string `json:"stream"`
	FirstSeq uint64 `json:"first_seq"` // the stream's first sequence when the rebuild began
	LastSeq  uint64 `json:"last_seq"`  // the last one projected
	Events   int64  `json:"events"`    // messages projected
	Skipped  int64  `json:"skipped"`   // messages that are no valid event (the consumers dead-letter them)
}

// RebuildReport is the outcome of a rebuild.
type RebuildReport struct {
	Streams []StreamReplay `json:"streams"`
	Events  int64          `json:"events"` // over every stream
	Views   int64          `json:"views"`  // in the new read model
	// TookMS is the whole rebuild; SwitchMS the switch, during which the
	// consumers wait (readers never do).
	TookMS   float64 `json:"took_ms"`
	SwitchMS float64 `json:"switch_ms"`
}

// RebuildProgress is one step of a rebuild, as POST /admin/rebuild streams it.
type RebuildProgress struct {
	Phase  string `json:"phase"` // replay, catch-up, switch
	Stream string `json:"stream,omitempty"`
	Events int64  `json:"events"`           // projected from Stream so far
	Target uint64 `json:"target,omitempty"` // the sequence this phase reads Stream up to
}

// RebuildOptions tune a rebuild.
type RebuildOptions struct {
	// Force rebuilds even when a stream no longer holds its history from
	// sequence 1 (its max age or a purge dropped events): the views of the
	// orders whose events are gone would be partial.
	Force bool
	// Progress, when set, is told each step.
	Progress func(RebuildProgress)
}

// rebuilder is the state of one rebuild.
type rebuilder struct {
	rm      *readModel
	pool    *pgxpool.Pool // search_path = rebuildSchema
	opt     RebuildOptions
	readers []*streamReader
}

// streamReader reads one stream from its first sequence with an ordered
// consumer.
type streamReader struct {
	report  StreamReplay
	cons    jetstream.Consumer
	pending uint64 // messages after the last one read, as JetStream said
}

// rebuild builds the read model anew from the streams in rebuildSchema
// while Schema keeps serving, then switches the two in one transaction (see
// docs/DESIGN.md, "Rebuilding the read model").
func (rm *readModel) rebuild(ctx context.Context, opt RebuildOptions) (RebuildReport, error) {
	if !rm.rebuilding.TryLock() {
		return RebuildReport{}, ErrRebuildRunning
	}
	defer rm.rebuilding.Unlock()
	if rm.js == nil {
		return RebuildReport{}, errors.New("rebuild: no JetStream")
	}
	start := time.Now()
	log := rm.log.With(zap.String("schema", rebuildSchema))
	log.Info("rebuild started")

	// Another instance's rebuild: one at a time per database.
	conn, err := rm.store.pool.Acquire(ctx)
	if err != nil {
		return RebuildReport{}, fmt.Errorf("rebuild: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, 0)`, rebuildLockClass).Scan(&locked); err != nil {
		return RebuildReport{}, fmt.Errorf("rebuild: lock: %w", err)
	}
	if !locked {
		return RebuildReport{}, ErrRebuildRunning
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, 0)`, rebuildLockClass)
	}()

	b := &rebuilder{rm: rm, opt: opt}
	defer b.close(context.WithoutCancel(ctx))
	if err := b.prepare(ctx); err != nil {
		return RebuildReport{}, err
	}

	// Replay each stream up to its last sequence at the start, then catch up
	// with what arrived meanwhile (a few rounds: each is shorter), so that
	// the switch, which holds the consumers, has little left to read.
	for _, r := range b.readers {
		if err := b.readTo(ctx, nil, r, "replay", r.target(ctx, b.rm.js)); err != nil {
			return RebuildReport{}, err
		}
	}
	for range 3 {
		for _, r := range b.readers {
			if err := b.readTo(ctx, nil, r, "catch-up", r.target(ctx, b.rm.js)); err != nil {
				return RebuildReport{}, err
			}
		}
	}
	switchStart := time.Now()
	views, err := b.switchOver(ctx)
	if err != nil {
		return RebuildReport{}, err
	}
	rep := RebuildReport{Views: views, SwitchMS: ms(time.Since(switchStart)), TookMS: ms(time.Since(start))}
	for _, r := range b.readers {
		rep.Streams = append(rep.Streams, r.report)
		rep.Events += r.report.Events
	}
	log.Info("rebuild done", zap.Int64("events", rep.Events), zap.Int64("views", rep.Views),
		zap.Float64("took_ms", rep.TookMS), zap.Float64("switch_ms", rep.SwitchMS))

	// The retired schema waits for readers still in it; nobody new goes there.
	if _, err := rm.store.pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+retiredSchema+` CASCADE`); err != nil {
		log.Warn("rebuild: drop the retired schema", zap.Error(err))
	}
	return rep, nil
}

// close deletes the rebuild's ordered consumers (they would linger in
// /stats and in the quiescence checks until their inactivity threshold) and
// closes its pool.
func (b *rebuilder) close(ctx context.Context) {
	for _, r := range b.readers {
		if info := r.cons.CachedInfo(); info != nil {
			if err := b.rm.js.DeleteConsumer(ctx, r.report.Stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				b.rm.log.Warn("rebuild: delete ordered consumer", zap.String("stream", r.report.Stream), zap.Error(err))
			}
		}
	}
	if b.pool != nil {
		b.pool.Close()
	}
}

// rebuildLockClass keys the session advisory lock one rebuild holds.
const rebuildLockClass = int32(0x7262) // "rb"

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// prepare makes an empty, migrated rebuildSchema, a pool bound to it, and
// an ordered consumer per stream from its first sequence.
func (b *rebuilder) prepare(ctx context.Context) error {
	live := b.rm.store.pool
	for _, s := range []string{rebuildSchema, retiredSchema} {
		if _, err := live.Exec(ctx, `DROP SCHEMA IF EXISTS `+s+` CASCADE`); err != nil {
			return fmt.Errorf("rebuild: drop %s: %w", s, err)
		}
	}
	pc := live.Config().Copy()
	pc.ConnConfig.RuntimeParams["search_path"] = rebuildSchema
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("rebuild: pool: %w", err)
	}
	b.pool = pool
	if err := pg.Migrate(ctx, pool, rebuildSchema, Migrations()); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	for _, c := range consumers {
		s, err := b.rm.js.Stream(ctx, c.stream)
		if err != nil {
			return fmt.Errorf("rebuild: stream %s: %w", c.stream, err)
		}
		st := s.CachedInfo().State
		if st.FirstSeq > 1 && !b.opt.Force {
			return fmt.Errorf("rebuild: stream %s holds its history from sequence %d only (a max age or a purge dropped the rest): "+
				"the views of older orders would be partial; force to rebuild anyway", c.stream, st.FirstSeq)
		}
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{c.subject}, DeliverPolicy: jetstream.DeliverAllPolicy,
			InactiveThreshold: time.Minute, // gone soon should this process die mid-rebuild
		})
		if err != nil {
			return fmt.Errorf("rebuild: consumer on %s: %w", c.stream, err)
		}
		b.readers = append(b.readers, &streamReader{
			report: StreamReplay{Stream: c.stream, FirstSeq: st.FirstSeq}, cons: cons, pending: st.Msgs,
		})
	}
	return nil
}

// target returns the stream's last sequence now; 0 if JetStream cannot say
// (then the reader reads what there is).
func (r *streamReader) target(ctx context.Context, js jetstream.JetStream) uint64 {
	s, err := js.Stream(ctx, r.report.Stream)
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.LastSeq
}

// readTo projects r's stream from where it stands up to sequence target, a
// batch per transaction, or all of it inside tx when tx is given (the
// switch). It stops early at the end of the stream.
func (b *rebuilder) readTo(ctx context.Context, tx pgx.Tx, r *streamReader, phase string, target uint64) error {
	if target > r.report.LastSeq {
		r.pending = max(r.pending, 1) // the last message read was the last then; no more
	}
	for r.report.LastSeq < target && r.pending > 0 {
		// Ask for no more than there is up to target, so that the fetch
		// returns at once rather than waiting to fill.
		n := int(min(uint64(rebuildBatch), target-r.report.LastSeq))
		batch, err := r.cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("rebuild: fetch %s: %w", r.report.Stream, err)
		}
		events := make([]event.Event, 0, rebuildBatch)
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("rebuild: %s: message without metadata: %w", r.report.Stream, err)
			}
			r.report.LastSeq, r.pending = md.Sequence.Stream, md.NumPending
			e, err := event.FromMsg(msg.Subject(), msg.Headers(), msg.Data())
			if err == nil {
				err = e.Validate()
			}
			if err != nil {
				r.report.Skipped++
				b.rm.log.Warn("rebuild: skipped a message that is no valid event", zap.String("stream", r.report.Stream),
					zap.Uint64("seq", md.Sequence.Stream), zap.String("subject", msg.Subject()), zap.Error(err))
				continue
			}
			e.Stream, e.Seq = md.Stream, md.Sequence.Stream
			events = append(events, e)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("rebuild: fetch %s: %w", r.report.Stream, err)
		}
		if got == 0 {
			// Nothing within the wait: the stream ends before target
			// (messages at its end were deleted).
			return nil
		}
		if len(events) > 0 {
			if err := b.apply(ctx, tx, events); err != nil {
				return err
			}
			r.report.Events += int64(len(events))
		}
		if b.opt.Progress != nil {
			b.opt.Progress(RebuildProgress{Phase: phase, Stream: r.report.Stream, Events: r.report.Events, Target: target})
		}
	}
	return nil
}

// apply projects events into the rebuild schema: in tx, or in a transaction
// of their own.
func (b *rebuilder) apply(ctx context.Context, tx pgx.Tx, events []event.Event) error {
	now := b.rm.now().UTC()
	if tx != nil {
		_, _, err := project(ctx, tx, events, now, false)
		return err
	}
	return pg.InTx(ctx, b.pool, func(tx pgx.Tx) error {
		_, _, err := project(ctx, tx, events, now, false)
		return err
	})
}

// switchOver holds the live consumers' writes, projects what arrived since
// the last catch-up, moves the live delivery tables (the inbox above all)
// into the new schema and swaps the schemas, all in one transaction: readers
// see the old read model until it commits and the new one after; a consumer
// transaction held at the lock goes on in the new schema once it commits. It
// returns the number of views of the new read model.
func (b *rebuilder) switchOver(ctx context.Context) (int64, error) {
	var views int64
	err := pg.InTx(ctx, b.pool, func(tx pgx.Tx) error {
		// In the order a consumer's transaction takes them (inbox first),
		// so that the two never wait for each other in a cycle. EXCLUSIVE
		// lets readers read on.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '30s'`); err != nil {
			return fmt.Errorf("rebuild switch: %w", err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+Schema+`.inbox, `+Schema+`.events, `+Schema+`.order_views IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("rebuild switch: hold the consumers: %w", err)
		}
		for _, r := range b.readers {
			if b.opt.Progress != nil {
				b.opt.Progress(RebuildProgress{Phase: "switch", Stream: r.report.Stream, Events: r.report.Events})
			}
			if err := b.readTo(ctx, tx, r, "switch", r.target(ctx, b.rm.js)); err != nil {
				return err
			}
		}
		stmts := []string{}
		for _, t := range deliveryTables {
			stmts = append(stmts,
				`DROP TABLE `+rebuildSchema+`.`+t,
				`ALTER TABLE `+Schema+`.`+t+` SET SCHEMA `+rebuildSchema)
		}
		stmts = append(stmts,
			`ALTER SCHEMA `+Schema+` RENAME TO `+retiredSchema,
			`ALTER SCHEMA `+rebuildSchema+` RENAME TO `+Schema)
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("rebuild switch: %s: %w", q, err)
			}
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+Schema+`.order_views`).Scan(&views); err != nil {
			return fmt.Errorf("rebuild switch: count views: %w", err)
		}
		return nil
	})
	return views, err
}

// postRebuild serves POST /admin/rebuild[?force=true]: it rebuilds the read
// model and streams its progress as JSON lines ({"progress": …}), ending
// with {"report": …} or {"error": "…"}. The rebuild stops (and nothing
// switches) if the client goes away.
func (rm *readModel) postRebuild(w http.ResponseWriter, r *http.Request) {
	// A rebuild streams its progress for as long as it takes: the server's
	// read and write timeouts must not end it (the read deadline would
	// cancel its context). It is an operator endpoint, behind the token.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	send := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(v)
		if flusher != nil {
			flusher.Flush()
		}
	}
	last := time.Time{}
	opt := RebuildOptions{
		Force: r.URL.Query().Get("force") == "true",
		Progress: func(p RebuildProgress) {
			// At most a few lines a second, and every phase change.
			if p.Phase == "replay" && time.Since(last) < 500*time.Millisecond {
				return
			}
			last = time.Now()
			send(map[string]any{"progress": p})
		},
	}
	rep, err := rm.rebuild(r.Context(), opt)
	switch {
	case errors.Is(err, ErrRebuildRunning):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		rm.log.Error("rebuild failed", zap.Error(err))
		send(map[string]string{"error": err.Error()})
	default:
		send(map[string]any{"report": rep})
	}
}
