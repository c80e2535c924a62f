// Package consume runs the idempotent consumer loop every service uses: pull
// subscriptions on one or more durable consumers (a service's sources) feed
// workers that handle what has arrived, from any of them, in batches, one
// Postgres transaction per batch. Inside it each message records (consumer,
// event id) in the inbox and is applied by its source's handler, set-based
// or behind a savepoint of its own; the batch commits once, and only then
// are its messages acked.
//
// Outcomes per message:
//   - inbox conflict: handled before; ack, no effect;
//   - undecodable or contract-violating message, or a handler error wrapped
//     with Permanent: published to dlq.<service>.<stream>.<sequence> with the
//     original subject, headers and the error, then terminated;
//   - any other handler error: rolled back to its savepoint (the rest of the
//     batch commits), NakWithDelay with exponential backoff, and
//     dead-lettered the same way once MaxDeliver failures that are the
//     message's own are used up;
//   - the database cannot be reached, the connection breaks, a deadlock:
//     NakWithDelay with backoff until it works, never dead-lettered.
package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// Handler applies one event inside tx. It returns nil when the event was
// applied (or was a no-op), Permanent(err) when the event can never be
// applied, and any other error for a transient failure worth retrying.
// tx is shared by the batch: the handler runs behind the message's own
// savepoint and must neither commit nor roll back tx.
type Handler func(ctx context.Context, tx pgx.Tx, e event.Event) error

// BatchHandler applies several events at once inside tx, set-based (a
// statement for all of them rather than one each). The events are new: the
// loop recorded them in the inbox first and left out the duplicates. It
// returns nil when every event was applied; on any error the loop rolls the
// whole batch back and applies the events one by one with the Handler, so
// that the failing one is found and retried or dead-lettered alone.
type BatchHandler func(ctx context.Context, tx pgx.Tx, events []event.Event) error

// Permanent marks err as one retrying cannot fix: the message goes to the
// dead-letter stream at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

// NotYet marks an error as "this event comes too early": it follows a step
// another consumer has not handled yet (an inventory.released before the
// payment.failed it compensates, a charge before the order.created it is
// checked against). The loop retries it soon (after NotYetFirst, doubling
// up to NotYetRetry),
// and the retries do not count towards MaxDeliver while the event is
// younger than NotYetGrace: waiting for a slow or restarting service is not
// the message's fault. Past the grace they count, so that an event whose
// step never comes (a forgery) is dead-lettered in the end.
func NotYet(err error) error {
	if err == nil {
		return nil
	}
	return &notYetError{err}
}

type notYetError struct{ err error }

func (n *notYetError) Error() string { return "not yet: " + n.err.Error() }
func (n *notYetError) Unwrap() error { return n.err }

// IsNotYet reports whether err was marked with NotYet.
func IsNotYet(err error) bool {
	var n *notYetError
	return errors.As(err, &n)
}

// How the loop retries an event that comes too early (NotYet).
const (
	NotYetFirst = 20 * time.Millisecond // the first wait, doubled on each try
	NotYetRetry = 2 * time.Second       // the longest wait between two tries
	NotYetGrace = 5 * time.Minute       // how long its retries do not count towards MaxDeliver
)

// Later is what a BatchHandler returns, instead of refusing the whole batch,
// when some of its events cannot apply yet: they come before a step they
// follow, or before what they are checked against, which another consumer
// is about to handle. The loop rolls the set-based pass back, takes those
// events out (each is retried with backoff, as a failure of its own), and
// applies the rest set-based again: a few early events do not send a whole
// batch down the one-by-one path.
type Later struct {
	IDs []string // the event ids to retry later
	Err error    // why (an error the one-by-one path would retry)
}

func (l *Later) Error() string { return fmt.Sprintf("%d event(s) too early: %v", len(l.IDs), l.Err) }
func (l *Later) Unwrap() error { return l.Err }

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
	Consumer   string        // New: the inbox key, default the durable consumer's name; NewSources: the loop's name in logs, metrics and spans, default the sources' names joined by "+"
	Workers    int           // batches handled at once, each in its own transaction; default 1
	Batch      int           // most messages per batch (and transaction); default 64
	Prefetch   int           // messages requested from JetStream ahead of handling; default Batch×Workers
	FetchWait  time.Duration // how long one pull request waits for messages (at least 1s); default 5s
	MaxDeliver int           // failures (the message's own) before dead-lettering; default: the consumer's MaxDeliver
	AckWait    time.Duration // the consumer's AckWait; default: the consumer's
	RetryBase  time.Duration // first Nak delay after a transient error; default 250ms
	RetryMax   time.Duration // cap on the Nak delay; default 30s
	Logger     *zap.Logger
	Metrics    *Metrics // nil records nothing
	MaxPayload int64    // the server's max_payload when the JetStream given to New does not expose its connection: dead letters are cut to fit; default 1 MiB

	// BatchHandler, when set, is tried first for every batch (see
	// BatchHandler) with the new events of every source; the sources'
	// Handlers stay the fallback. When it is nil, each source's own
	// BatchHandler gets that source's events (see Source).
	BatchHandler BatchHandler

	// Prepare, when set, runs first in a batch's transaction, with the
	// batch's new events (sorted by order id): e.g. lock, in a fixed order,
	// rows that several orders share, or every order of the batch, so that
	// concurrent batches cannot deadlock although each handler locks only
	// the rows of its own events. It runs before a batch handled one
	// message at a time, and before the sources' batch handlers when the
	// batch holds new events of more than one source (each handler sees
	// its source's events only); a loop-level BatchHandler, or the one
	// source's handler, sees the whole batch and takes its locks in their
	// order itself, so it runs without. An error fails the batch, to be
	// retried.
	Prepare func(ctx context.Context, tx pgx.Tx, events []event.Event) error

	// Handoff, when set, gets the outbox rows the handlers wrote with
	// outbox.Add once their transaction committed (e.g. Relay.Hand, which
	// publishes them without reading them back). Rows of a message rolled
	// back to its savepoint are never handed over.
	Handoff func(rows []outbox.Row)

	// Faults reach into the delivery windows for failure injection and
	// crash-window tests; nil fields do nothing.
	Faults Faults

	// TracerProvider, when set and not a no-op, traces the loop: a consumer
	// span per message, child of the trace context the message carries,
	// and a span per batch (its transaction) linked to them; the events a
	// handler writes carry the trace context of the span of the event that
	// caused them. Nil: no span, and an event's trace context that came in
	// is handed on, as it is, to the events it causes.
	TracerProvider trace.TracerProvider
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

// Source is one durable consumer a loop reads, and what handles its events.
type Source struct {
	Consumer jetstream.Consumer
	Name     string  // inbox key; default: the durable consumer's name
	Handler  Handler // required: applies one event (the one-by-one path)
	// BatchHandler, when set and Config.BatchHandler is not, applies the
	// source's events of a batch set-based. Within a batch the sources'
	// BatchHandlers run in the order of the sources, so a service lists
	// first the source whose events the others follow.
	BatchHandler BatchHandler
}

// source is a Source resolved: its name known.
type source struct {
	cons jetstream.Consumer
	name string
	h    Handler
	bh   BatchHandler
}

// Loop consumes one or more durable consumers. Build it with New or
// NewSources, run it with Run.
type Loop struct {
	pool *pgxpool.Pool
	js   JetStream
	srcs []*source
	cfg  Config
	base *zap.Logger // the service's logger: a message's logs name its own consumer
	log  *zap.Logger // base with the loop's name: the batch's logs

	tracer   trace.Tracer // nil: tracing off
	failures failureCounts
	// routes, set by NewReplay, make this a replay loop: each message is
	// handled by the route of the consumer it names.
	routes map[string]Route
}

// New returns a loop over one consumer, cons, whose events h applies (and
// cfg.BatchHandler, when set, set-based). It reads the consumer's info once
// to learn its AckWait and MaxDeliver when cfg does not set them.
func New(ctx context.Context, pool *pgxpool.Pool, js JetStream, cons jetstream.Consumer, h Handler, cfg Config) (*Loop, error) {
	if cons == nil || h == nil {
		return nil, errors.New("consume: pool, jetstream, consumer and handler are required")
	}
	src := Source{Consumer: cons, Name: cfg.Consumer, Handler: h}
	return NewSources(ctx, pool, js, []Source{src}, cfg)
}

// NewSources returns one loop over several consumers, typically every
// consumer of a service: what arrives from any of them shares batches, so
// a service pays one transaction (one lock pass, one commit) where it would
// pay one per consumer, and an event that follows another one of the same
// batch (from an earlier source) finds it applied. It reads each consumer's
// info once; AckWait and MaxDeliver, when cfg does not set them, are the
// first consumer's.
func NewSources(ctx context.Context, pool *pgxpool.Pool, js JetStream, sources []Source, cfg Config) (*Loop, error) {
	if pool == nil || js == nil || len(sources) == 0 {
		return nil, errors.New("consume: pool, jetstream, consumer and handler are required")
	}
	if cfg.Service == "" {
		return nil, errors.New("consume: service name is required")
	}
	srcs := make([]*source, 0, len(sources))
	names := make([]string, 0, len(sources))
	seen := make(map[string]bool, len(sources))
	for i, s := range sources {
		if s.Consumer == nil || s.Handler == nil {
			return nil, errors.New("consume: pool, jetstream, consumer and handler are required")
		}
		info, err := s.Consumer.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("consume: consumer info: %w", err)
		}
		name := cmp.Or(s.Name, info.Config.Durable, info.Name)
		if seen[name] {
			return nil, fmt.Errorf("consume: two sources named %s", name)
		}
		seen[name] = true
		if i == 0 {
			cfg.MaxDeliver = cmp.Or(cfg.MaxDeliver, info.Config.MaxDeliver)
			cfg.AckWait = cmp.Or(cfg.AckWait, info.Config.AckWait)
		}
		srcs = append(srcs, &source{cons: s.Consumer, name: name, h: s.Handler, bh: s.BatchHandler})
		names = append(names, name)
	}
	cfg.Consumer = cmp.Or(cfg.Consumer, strings.Join(names, "+"))
	cfg.Workers = cmp.Or(cfg.Workers, 1)
	cfg.Batch = cmp.Or(cfg.Batch, 64)
	cfg.Prefetch = cmp.Or(cfg.Prefetch, cfg.Batch*cfg.Workers)
	cfg.FetchWait = cmp.Or(cfg.FetchWait, 5*time.Second)
	cfg.AckWait = cmp.Or(cfg.AckWait, 30*time.Second)
	cfg.RetryBase = cmp.Or(cfg.RetryBase, 250*time.Millisecond)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 30*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Loop{
		pool: pool, js: js, srcs: srcs, cfg: cfg,
		base:   cfg.Logger,
		log:    cfg.Logger.With(zap.String("consumer", cfg.Consumer)),
		tracer: telemetry.Tracer(cfg.TracerProvider),
	}, nil
}

// batched reports whether the loop can apply a batch set-based: a
// BatchHandler for the loop, or one for every source.
func (l *Loop) batched() bool {
	if l.cfg.BatchHandler != nil {
		return true
	}
	for _, s := range l.srcs {
		if s.bh == nil {
			return false
		}
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (l *Loop) backoff(delivered uint64) time.Duration {
	shift := min(delivered, 16)
	if shift > 0 {
		shift--
	}
	return min(l.cfg.RetryBase<<shift, l.cfg.RetryMax)
}
