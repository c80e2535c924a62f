package consume

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Headers added to a dead-lettered message, beside the original headers.
const (
	HeaderDLQError      = "Jetsaga-Dlq-Error"
	HeaderDLQConsumer   = "Jetsaga-Dlq-Consumer"
	HeaderDLQStream     = "Jetsaga-Dlq-Stream"
	HeaderDLQStreamSeq  = "Jetsaga-Dlq-Stream-Seq"
	HeaderDLQDeliveries = "Jetsaga-Dlq-Deliveries"
	HeaderDLQSubject    = "Jetsaga-Dlq-Subject"
	HeaderOriginalMsgID = "Jetsaga-Original-Msg-Id"
)

// DLQSubject returns the dead-letter subject of a message a service could not
// handle: dlq.<service>.<original subject>.
func DLQSubject(service, subject string) string { return "dlq." + service + "." + subject }

// deadLetter publishes msg to the DLQ stream with its headers and the error,
// then terminates it. If the DLQ publish fails the message is Nak'ed, so it
// is not lost.
func (l *Loop) deadLetter(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, typ event.Type, cause error) {
	log := l.log.With(zap.String("subject", msg.Subject()), zap.Uint64("stream_seq", md.Sequence.Stream),
		zap.String("event_id", msg.Headers().Get(event.HeaderMsgID)),
		zap.String("order_id", msg.Headers().Get(event.HeaderOrderID)),
		zap.String("event_type", msg.Headers().Get(event.HeaderType)))
	dl := nats.NewMsg(DLQSubject(l.cfg.Service, msg.Subject()))
	for k, vs := range msg.Headers() {
		switch {
		case k == event.HeaderMsgID:
			dl.Header[HeaderOriginalMsgID] = vs
		case strings.HasPrefix(k, "Nats-"):
			// JetStream's own publish headers (Nats-Expected-Stream and
			// the like) would steer or refuse the dead letter's publish.
		default:
			dl.Header[k] = vs
		}
	}
	// One dead letter per (consumer, stream message), however often the
	// message is dead-lettered: the DLQ stream dedups on this id.
	dl.Header.Set(event.HeaderMsgID, l.cfg.Consumer+"-"+md.Stream+"-"+strconv.FormatUint(md.Sequence.Stream, 10))
	dl.Header.Set(HeaderDLQError, cause.Error())
	dl.Header.Set(HeaderDLQConsumer, l.cfg.Consumer)
	dl.Header.Set(HeaderDLQStream, md.Stream)
	dl.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	dl.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	dl.Header.Set(HeaderDLQSubject, msg.Subject())
	dl.Data = msg.Data()

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.js.PublishMsg(pctx, dl); err != nil {
		log.Error("dead-letter publish failed; message stays", zap.NamedError("cause", cause), zap.Error(err))
		_ = msg.NakWithDelay(l.backoff(md.NumDelivered))
		return
	}
	l.cfg.Metrics.observe(l.cfg.Consumer, typ, outcomeDeadLettered, 0)
	log.Error("message dead-lettered", zap.Error(cause))
	if err := msg.TermWithReason(truncate(cause.Error(), 200)); err != nil {
		log.Warn("term failed", zap.Error(err))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
