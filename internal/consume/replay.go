package consume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Headers of a replay: a dead letter's event republished by jetsaga dlq
// replay to the REPLAY stream, for the one consumer that dead-lettered it.
// Beside them a replay carries the original headers, except that its
// Nats-Msg-Id is ReplayMsgID (REPLAY's dedup key) and the event id travels
// in HeaderOriginalMsgID, as in the dead letter.
const (
	// HeaderReplayConsumer names the durable consumer the replay is for; its
	// handler applies it, with its inbox key.
	HeaderReplayConsumer = "Jetsaga-Replay-Consumer"
	// HeaderReplaySubject is the event's original subject.
	HeaderReplaySubject = "Jetsaga-Replay-Subject"
	// HeaderReplayStream and HeaderReplayStreamSeq say where the event was
	// when it was dead-lettered (the dead letter's Jetsaga-Dlq-Stream and
	// Jetsaga-Dlq-Stream-Seq), the key of its row in dead_letters.
	HeaderReplayStream    = "Jetsaga-Replay-Stream"
	HeaderReplayStreamSeq = "Jetsaga-Replay-Stream-Seq"
	// HeaderReplayDLQSeq is the sequence of the dead letter in DLQ.
	HeaderReplayDLQSeq = "Jetsaga-Replay-Dlq-Seq"
)

// ReplaySubject is the subject of a replay of the dead letter at dlqSeq for
// a service's durable consumer: replay.<service>.<consumer>.<dlq seq>.
func ReplaySubject(service, consumer string, dlqSeq uint64) string {
	return "replay." + service + "." + consumer + "." + strconv.FormatUint(dlqSeq, 10)
}

// ReplayFilter is the filter subject of a service's replay consumer:
// replay.<service>.>.
func ReplayFilter(service string) string { return "replay." + service + ".>" }

// ReplayDurable is the name of a service's replay consumer: <service>-replay.
func ReplayDurable(service string) string { return service + "-replay" }

// ReplayMsgID is the Nats-Msg-Id of the replay of the dead letter at dlqSeq:
// REPLAY's duplicate window turns a second replay of it into a no-op.
func ReplayMsgID(dlqSeq uint64) string { return "replay-" + strconv.FormatUint(dlqSeq, 10) }

// Route is where a replay loop sends the replays for one durable consumer.
type Route struct {
	Handle  Handler
	Prepare func(ctx context.Context, tx pgx.Tx, events []event.Event) error
}

// replayed is what a replay says besides its event: the consumer it is for,
// and the message as it was when that consumer dead-lettered it.
type replayed struct {
	consumer string
	route    Route
	stream   string
	seq      uint64
	subject  string
	header   nats.Header // the original headers, Nats-Msg-Id the event id again
	dlqSeq   uint64
}

// NewReplay returns a loop over a service's replay consumer (ReplayDurable
// on REPLAY, filtered by ReplayFilter). Each replay is handled by the Route
// of the consumer named in HeaderReplayConsumer, with that consumer's inbox
// key, one message per transaction; a replay that fails again is
// dead-lettered like the original message was, under the original
// consumer, stream and sequence. Once applied (or found in the inbox), the
// dead letter's row in dead_letters is deleted in the same transaction.
// cfg.BatchHandler and cfg.Prepare are not used: each Route has its own.
func NewReplay(ctx context.Context, pool *pgxpool.Pool, js JetStream, cons jetstream.Consumer, routes map[string]Route, cfg Config) (*Loop, error) {
	if len(routes) == 0 {
		return nil, errors.New("consume: a replay loop needs at least one route")
	}
	for name, r := range routes {
		if r.Handle == nil {
			return nil, fmt.Errorf("consume: replay route %s has no handler", name)
		}
	}
	cfg.Batch, cfg.Prefetch, cfg.BatchHandler, cfg.Prepare = 1, 0, nil, nil
	unrouted := func(context.Context, pgx.Tx, event.Event) error {
		return Permanent(errors.New("replay without a route"))
	}
	l, err := New(ctx, pool, js, cons, unrouted, cfg)
	if err != nil {
		return nil, err
	}
	l.routes = maps.Clone(routes)
	return l, nil
}

// unwrap reads a replay's headers: the consumer it is for and where the
// event came from. The error, if any, is permanent: the replay cannot be
// routed.
func (l *Loop) unwrap(msg jetstream.Msg) (*replayed, error) {
	h := msg.Headers()
	rp := &replayed{
		consumer: h.Get(HeaderReplayConsumer),
		stream:   h.Get(HeaderReplayStream),
		subject:  h.Get(HeaderReplaySubject),
	}
	var ok bool
	if rp.route, ok = l.routes[rp.consumer]; !ok {
		return nil, Permanent(fmt.Errorf("replay for consumer %q: no such consumer in service %s", clip(rp.consumer, 128), l.cfg.Service))
	}
	seq, err := strconv.ParseUint(h.Get(HeaderReplayStreamSeq), 10, 64)
	if err != nil || rp.stream == "" || rp.subject == "" {
		return nil, Permanent(fmt.Errorf("replay without %s, %s or %s", HeaderReplayStream, HeaderReplayStreamSeq, HeaderReplaySubject))
	}
	rp.seq = seq
	rp.dlqSeq, _ = strconv.ParseUint(h.Get(HeaderReplayDLQSeq), 10, 64)
	rp.header = make(nats.Header, len(h))
	for k, vs := range h {
		if strings.HasPrefix(k, "Jetsaga-Replay-") || k == event.HeaderMsgID || k == HeaderOriginalMsgID {
			continue
		}
		rp.header[k] = vs
	}
	if id := h.Get(HeaderOriginalMsgID); id != "" {
		rp.header.Set(event.HeaderMsgID, id)
	}
	return rp, nil
}
