// Package consume runs the idempotent consumer loop every service uses: fetch
// from a durable pull consumer, and for each message run one Postgres
// transaction that first records (consumer, event id) in the inbox and then
// calls the handler; ack only after the commit.
//
// Outcomes per message:
//   - inbox conflict: handled before; ack, no effect;
//   - undecodable or contract-violating message, or a handler error wrapped
//     with Permanent: published to dlq.<service>.<stream>.<sequence> with the
//     original subject, headers and the error, then terminated;
//   - any other handler error: NakWithDelay with exponential backoff, and
//     dead-lettered the same way once MaxDeliver deliveries are used up;
//   - the database cannot be reached (the transaction cannot begin):
//     NakWithDelay with backoff until it is back, never dead-lettered.
package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Handler applies one event inside tx. It returns nil when the event was
// applied (or was a no-op), Permanent(err) when the event can never be
// applied, and any other error for a transient failure worth retrying.
type Handler func(ctx context.Context, tx pgx.Tx, e event.Event) error

// Permanent marks err as one retrying cannot fix: the message goes to the
// dead-letter stream at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return "permanent: " + p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// IsPermanent reports whether err was marked with Permanent or violates the
// event contract.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) || errors.Is(err, event.ErrContract)
}

// JetStream is what the loop needs besides the consumer: publishing to DLQ.
type JetStream interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Config tunes a Loop. Zero values take the defaults.
type Config struct {
	Service    string        // service name, the <service> of dlq.<service>.<stream>.<sequence>
	Consumer   string        // inbox key; default: the durable consumer's name
	Workers    int           // concurrent fetch-and-handle loops; default 1
	Batch      int           // messages per fetch; default 16
	FetchWait  time.Duration // longest a fetch waits for messages; default 5s
	MaxDeliver int           // deliveries before dead-lettering; default: the consumer's
	AckWait    time.Duration // the consumer's AckWait; default: the consumer's
	RetryBase  time.Duration // first Nak delay after a transient error; default 250ms
	RetryMax   time.Duration // cap on the Nak delay; default 30s
	Logger     *zap.Logger
	Metrics    *Metrics // nil records nothing
	MaxPayload int64    // the server's max_payload when the JetStream given to New does not expose its connection: dead letters are cut to fit; default 1 MiB

	// AfterCommit runs after a transaction that applied an event committed
	// (not for duplicates): e.g. wake the outbox relay.
	AfterCommit func()

	// Faults reach into the delivery windows for failure injection and
	// crash-window tests; nil fields do nothing.
	Faults Faults
}

// AckAction says what the loop does with a message whose transaction committed.
type AckAction int

const (
	Ack       AckAction = iota // acknowledge: the normal path
	NoAck                      // do nothing, as if the ack were lost: redelivered after AckWait
	Redeliver                  // Nak at once: redelivered now
)

// Faults are the hooks failure injection uses.
type Faults struct {
	// BeforeHandle runs before the transaction (e.g. an injected delay or a
	// transient error).
	BeforeHandle func(ctx context.Context, e event.Event) error
	// BeforeCommit runs inside the transaction after the handler; an error
	// rolls it back and counts as a transient failure.
	BeforeCommit func(ctx context.Context, e event.Event) error
	// AfterCommit runs between the commit and the ack and chooses the ack.
	AfterCommit func(ctx context.Context, e event.Event) AckAction
}

// Loop consumes one durable consumer. Build it with New, run it with Run.
type Loop struct {
	pool *pgxpool.Pool
	js   JetStream
	cons jetstream.Consumer
	h    Handler
	cfg  Config
	log  *zap.Logger
}

// New returns a loop over cons. It reads the consumer's info once to learn
// its AckWait and MaxDeliver when cfg does not set them.
func New(ctx context.Context, pool *pgxpool.Pool, js JetStream, cons jetstream.Consumer, h Handler, cfg Config) (*Loop, error) {
	if pool == nil || js == nil || cons == nil || h == nil {
		return nil, errors.New("consume: pool, jetstream, consumer and handler are required")
	}
	if cfg.Service == "" {
		return nil, errors.New("consume: service name is required")
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consume: consumer info: %w", err)
	}
	cfg.Consumer = cmp.Or(cfg.Consumer, info.Config.Durable, info.Name)
	cfg.Workers = cmp.Or(cfg.Workers, 1)
	cfg.Batch = cmp.Or(cfg.Batch, 16)
	cfg.FetchWait = cmp.Or(cfg.FetchWait, 5*time.Second)
	cfg.MaxDeliver = cmp.Or(cfg.MaxDeliver, info.Config.MaxDeliver)
	cfg.AckWait = cmp.Or(cfg.AckWait, info.Config.AckWait, 30*time.Second)
	cfg.RetryBase = cmp.Or(cfg.RetryBase, 250*time.Millisecond)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 30*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Loop{
		pool: pool, js: js, cons: cons, h: h, cfg: cfg,
		log: cfg.Logger.With(zap.String("consumer", cfg.Consumer)),
	}, nil
}

// Run fetches and handles messages until ctx is done. On cancellation it
// stops fetching, finishes the messages it holds, and returns nil.
func (l *Loop) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range l.cfg.Workers {
		wg.Go(func() { l.work(ctx) })
	}
	wg.Wait()
	return nil
}

func (l *Loop) work(ctx context.Context) {
	var failures int
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, l.cfg.FetchWait)
		batch, err := l.cons.Fetch(l.cfg.Batch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := min(time.Duration(1<<min(failures, 8))*50*time.Millisecond, 5*time.Second)
			l.log.Warn("fetch failed", zap.Error(err), zap.Duration("retry_in", wait))
			sleep(ctx, wait)
			continue
		}
		failures = 0
		// Messages are handled as they arrive; in-flight ones are finished
		// even when ctx is cancelled meanwhile.
		for msg := range batch.Messages() {
			l.handle(context.WithoutCancel(ctx), msg)
		}
		cancel()
		if err := batch.Error(); err != nil && ctx.Err() == nil &&
			!errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			l.log.Debug("fetch ended", zap.Error(err))
		}
	}
}

// keepInProgress tells JetStream every interval that msg is still being
// worked on, so a slow handler keeps its message past AckWait. The returned
// func stops it and waits for it.
func keepInProgress(msg jetstream.Msg, every time.Duration) (stop func()) {
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
				_ = msg.InProgress()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle runs one message to an ack, a Nak or a Term. ctx is not cancelled
// by shutdown: a message in hand is finished.
func (l *Loop) handle(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack.
		l.log.Error("message without JetStream metadata", zap.String("subject", msg.Subject()), zap.Error(err))
		return
	}
	if err := l.admit(msg); err != nil {
		l.deadLetter(ctx, msg, md, "", err)
		return
	}
	e, err := event.FromMsg(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		l.deadLetter(ctx, msg, md, "", fmt.Errorf("decode %s: %w", msg.Subject(), err))
		return
	}
	log := l.log.With(zap.String("order_id", e.OrderID), zap.String("event_id", e.ID),
		zap.String("event_type", string(e.Type)), zap.Uint64("delivery", md.NumDelivered))

	stopKeep := keepInProgress(msg, max(l.cfg.AckWait/3, 100*time.Millisecond))
	dup, err := l.apply(ctx, e)
	stopKeep()

	switch {
	case err == nil:
		action := Ack
		if l.cfg.Faults.AfterCommit != nil && !dup {
			action = l.cfg.Faults.AfterCommit(ctx, e)
		}
		switch action {
		case NoAck:
		case Redeliver:
			_ = msg.Nak()
		default:
			if err := msg.Ack(); err != nil {
				// The commit stands; a redelivery will hit the inbox.
				log.Warn("ack failed after commit", zap.Error(err))
			}
		}
		if dup {
			l.cfg.Metrics.observe(l.cfg.Consumer, e.Type, outcomeDuplicate, time.Since(start))
			log.Debug("duplicate event skipped")
			return
		}
		l.cfg.Metrics.observe(l.cfg.Consumer, e.Type, outcomeHandled, time.Since(start))
		if l.cfg.AfterCommit != nil {
			l.cfg.AfterCommit()
		}
		log.Debug("event handled", zap.Duration("took", time.Since(start)))
	case IsPermanent(err):
		l.deadLetter(ctx, msg, md, e.Type, err)
	case l.cfg.MaxDeliver > 0 && int(md.NumDelivered) >= l.cfg.MaxDeliver && !errors.Is(err, errNoDatabase):
		l.deadLetter(ctx, msg, md, e.Type, fmt.Errorf("gave up after %d deliveries: %w", md.NumDelivered, err))
	default:
		delay := l.backoff(md.NumDelivered)
		l.cfg.Metrics.observe(l.cfg.Consumer, e.Type, outcomeRetried, time.Since(start))
		log.Warn("handler failed; retrying", zap.Error(err), zap.Duration("retry_in", delay))
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("nak failed; the message is redelivered after AckWait", zap.Error(err))
		}
	}
}

// errNoDatabase marks a failure to begin the transaction: the service's
// database cannot be reached. That is never the message's fault, so it does
// not use up MaxDeliver: the message is retried with backoff until the
// database is back, however many deliveries it has had (crashes and kills
// of the consumer use up deliveries too). Otherwise a Postgres outage would
// dead-letter every message that arrives during it.
var errNoDatabase = errors.New("database unavailable")

// apply runs the inbox insert and the handler in one transaction. dup is true
// when the inbox already held the event.
func (l *Loop) apply(ctx context.Context, e event.Event) (dup bool, err error) {
	if l.cfg.Faults.BeforeHandle != nil {
		if err := l.cfg.Faults.BeforeHandle(ctx, e); err != nil {
			return false, fmt.Errorf("before handle %s %s: %w", e.Type, e.ID, err)
		}
	}
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w: %w", errNoDatabase, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `
		INSERT INTO inbox (consumer, event_id, event_type, order_id)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, l.cfg.Consumer, e.ID, string(e.Type), e.OrderID)
	if err != nil {
		return false, fmt.Errorf("inbox insert: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return true, nil
	}
	if err := l.h(ctx, tx, e); err != nil {
		return false, fmt.Errorf("handle %s %s: %w", e.Type, e.ID, err)
	}
	if l.cfg.Faults.BeforeCommit != nil {
		if err := l.cfg.Faults.BeforeCommit(ctx, e); err != nil {
			return false, fmt.Errorf("before commit %s %s: %w", e.Type, e.ID, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit %s %s: %w", e.Type, e.ID, err)
	}
	return false, nil
}

func (l *Loop) backoff(delivered uint64) time.Duration {
	shift := min(delivered, 16)
	if shift > 0 {
		shift--
	}
	return min(l.cfg.RetryBase<<shift, l.cfg.RetryMax)
}
