package consume

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/telemetry"
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
	// HeaderDLQBodySize and HeaderDLQBodySHA256 describe the original body,
	// whole, even when the dead letter carries only its start.
	HeaderDLQBodySize   = "Jetsaga-Dlq-Body-Size"
	HeaderDLQBodySHA256 = "Jetsaga-Dlq-Body-Sha256"
	// HeaderDLQTruncated lists what was cut to keep the dead letter within
	// the server's limits: "subject", "headers", "body" (comma-separated).
	HeaderDLQTruncated = "Jetsaga-Dlq-Truncated"
)

// TruncatedMarker ends a header value that was cut short, followed by the
// original length: "...[truncated from 4051 bytes]".
const TruncatedMarker = "...[truncated from "

// Bounds of a dead letter. A dead letter's subject is short and fixed in
// length; what an attacker controls (subject, headers, body) is cut to these
// sizes so that the dead letter always fits under the server's max_payload.
const (
	maxDLQValue   = 1024     // bytes of the subject, the error, or one copied header value
	maxDLQHeaders = 16 << 10 // bytes of copied original headers in all
	dlqSlack      = 1024     // room for the header block's framing
	defaultMaxPay = 1 << 20  // nats-server's default max_payload
	dlqAttempts   = 3        // publishes of a dead letter before giving up on the DLQ
	dlqTimeout    = 5 * time.Second
)

// DLQSubject returns the dead-letter subject of a message a service could not
// handle: dlq.<service>.<stream>.<stream sequence>. Its length does not
// depend on the original subject (which goes into HeaderDLQSubject), so a
// dead letter never exceeds the server's max_control_line however long the
// subject of the message it carries.
func DLQSubject(service, streamName string, seq uint64) string {
	return "dlq." + service + "." + streamName + "." + strconv.FormatUint(seq, 10)
}

// DLQMsgID is the dead letter's Nats-Msg-Id: one dead letter per (consumer,
// stream message), however often the message is dead-lettered, since the
// DLQ stream dedups on it.
func DLQMsgID(consumer, streamName string, seq uint64) string {
	return consumer + "-" + streamName + "-" + strconv.FormatUint(seq, 10)
}

// letterOrigin is what a dead letter says of the message it carries: the
// consumer that gave up on it, the stream and sequence it was stored at, its
// subject and headers, and the dead letter's own Nats-Msg-Id. A replay's is
// the original message's, so that its new dead letter reads (and is replayed)
// like the first.
type letterOrigin struct {
	consumer, stream string
	seq              uint64
	subject          string
	header           nats.Header
	msgID            string
}

func originOf(src *source, msg jetstream.Msg, md *jetstream.MsgMetadata, rp *replayed) letterOrigin {
	if rp == nil {
		return letterOrigin{
			consumer: src.name, stream: md.Stream, seq: md.Sequence.Stream,
			subject: msg.Subject(), header: msg.Headers(), msgID: DLQMsgID(src.name, md.Stream, md.Sequence.Stream),
		}
	}
	// The first dead letter of the message may still be in DLQ's duplicate
	// window: this one needs an id of its own.
	return letterOrigin{
		consumer: rp.consumer, stream: rp.stream, seq: rp.seq, subject: rp.subject, header: rp.header,
		msgID: DLQMsgID(rp.consumer, rp.stream, rp.seq) + "-replay-" + strconv.FormatUint(md.Sequence.Stream, 10),
	}
}

// deadLetter publishes msg to the DLQ stream with its headers and the error,
// records it in the service's dead_letters table, then terminates it. The
// publish is retried; if it still fails the message is terminated anyway
// once the table holds it (published = false, counted in
// jetsaga_dead_letter_failures_total), so nothing loops forever. Only when
// neither the DLQ nor the table can take it is the message Nak'ed, so that
// it is not lost. src is the source msg came from, rp the replay msg
// carries (nil if it is none).
func (l *Loop) deadLetter(ctx context.Context, src *source, msg jetstream.Msg, md *jetstream.MsgMetadata, rp *replayed, typ event.Type, cause error) {
	o := originOf(src, msg, md, rp)
	h := o.header
	log := l.base.With(zap.String("consumer", src.name), zap.String("subject", clip(o.subject, 256)), zap.Uint64("stream_seq", o.seq),
		zap.String("event_id", clip(h.Get(event.HeaderMsgID), 128)),
		zap.String("order_id", clip(h.Get(event.HeaderOrderID), 128)),
		zap.String("event_type", clip(h.Get(event.HeaderType), 128)), telemetry.LogField(ctx))
	if rp != nil {
		log = log.With(zap.String("for_consumer", o.consumer), zap.String("stream", o.stream), zap.Uint64("dlq_seq", rp.dlqSeq))
	}

	dl := l.deadLetterMsg(o, msg.Data(), md, cause)
	stopKeep := keepInProgress([]jetstream.Msg{msg}, max(l.cfg.AckWait/3, 100*time.Millisecond))
	pubErr := l.publishDeadLetter(ctx, dl)
	stopKeep()

	rec := deadLetterRecord{
		consumer: o.consumer, stream: o.stream, seq: o.seq,
		subject: clip(o.subject, maxDLQValue), eventID: clip(h.Get(event.HeaderMsgID), 128),
		eventType: clip(h.Get(event.HeaderType), 128), orderID: clip(h.Get(event.HeaderOrderID), 128),
		deliveries: md.NumDelivered, cause: clip(cause.Error(), maxDLQValue),
		bodySize: len(msg.Data()), bodySHA: dl.Header.Get(HeaderDLQBodySHA256),
		dlqSubject: dl.Subject, dlqMsgID: dl.Header.Get(event.HeaderMsgID), published: pubErr == nil,
	}
	if pubErr != nil {
		rec.publishErr = clip(pubErr.Error(), maxDLQValue)
		l.cfg.Metrics.deadLetterFailed(src.name)
		log.Error("dead-letter publish failed", zap.NamedError("cause", cause), zap.Error(pubErr))
	}
	recErr := recordDeadLetter(ctx, l.pool, rec)
	switch {
	case pubErr != nil && recErr != nil:
		log.Error("dead letter neither published nor recorded; message stays", zap.NamedError("cause", cause),
			zap.NamedError("publish", pubErr), zap.NamedError("record", recErr))
		_ = msg.NakWithDelay(l.backoff(md.NumDelivered))
		return
	case recErr != nil:
		log.Warn("dead letter published but not recorded in the database", zap.Error(recErr))
	}
	l.cfg.Metrics.observe(src.name, typ, outcomeDeadLettered, 0)
	if pubErr != nil {
		log.Error("message terminated without a dead letter; recorded in dead_letters", zap.Error(cause))
	} else {
		log.Error("message dead-lettered", zap.Error(cause), zap.String("dlq_subject", dl.Subject))
	}
	if err := msg.TermWithReason(clip(oneLine(cause.Error()), 200)); err != nil {
		log.Warn("term failed", zap.Error(err))
	}
}

// deadLetterMsg builds the dead letter of a message (o, its body): a
// fixed-length subject, the original headers and body, and the error, each
// cut where it would make the dead letter exceed the server's max_payload.
func (l *Loop) deadLetterMsg(o letterOrigin, body []byte, md *jetstream.MsgMetadata, cause error) *nats.Msg {
	var truncated []string
	dl := nats.NewMsg(DLQSubject(l.cfg.Service, o.stream, o.seq))
	copied := 0
	headersCut := false
	for k, vs := range o.header {
		switch {
		case k == event.HeaderMsgID:
			k = HeaderOriginalMsgID
		case strings.HasPrefix(k, "Nats-"):
			// JetStream's own publish headers (Nats-Expected-Stream and
			// the like) would steer or refuse the dead letter's publish.
			continue
		case k == HeaderOriginalMsgID || strings.HasPrefix(k, "Jetsaga-Dlq-") || strings.HasPrefix(k, "Jetsaga-Replay-"):
			// Ours to set; a forged one must not pass for it.
			continue
		}
		if len(k) > 128 {
			headersCut = true
			continue
		}
		for _, v := range vs {
			cv := clip(v, maxDLQValue)
			if cv != v {
				headersCut = true
			}
			if copied+len(k)+len(cv)+4 > maxDLQHeaders {
				headersCut = true
				break
			}
			copied += len(k) + len(cv) + 4
			dl.Header.Add(k, cv)
		}
	}
	dl.Header.Set(event.HeaderMsgID, o.msgID)
	dl.Header.Set(HeaderDLQError, clip(oneLine(cause.Error()), maxDLQValue))
	dl.Header.Set(HeaderDLQConsumer, o.consumer)
	dl.Header.Set(HeaderDLQStream, o.stream)
	dl.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(o.seq, 10))
	dl.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	subject := clip(o.subject, maxDLQValue)
	if subject != o.subject {
		truncated = append(truncated, "subject")
	}
	dl.Header.Set(HeaderDLQSubject, subject)
	if headersCut {
		truncated = append(truncated, "headers")
	}
	sum := sha256.Sum256(body)
	dl.Header.Set(HeaderDLQBodySize, strconv.Itoa(len(body)))
	dl.Header.Set(HeaderDLQBodySHA256, hex.EncodeToString(sum[:]))

	room := int(l.maxPayload()) - headerSize(dl.Header) - dlqSlack
	if len(body) > room {
		body = body[:max(room, 0)]
		truncated = append(truncated, "body")
	}
	if len(truncated) > 0 {
		dl.Header.Set(HeaderDLQTruncated, strings.Join(truncated, ","))
	}
	dl.Data = body
	return dl
}

// maxPayload is the server's max_payload as the connection last learnt it
// (when the loop's JetStream exposes its connection), else Config.MaxPayload,
// else nats-server's default.
func (l *Loop) maxPayload() int64 {
	if c, ok := l.js.(interface{ Conn() *nats.Conn }); ok && c.Conn() != nil {
		if n := c.Conn().MaxPayload(); n > 0 {
			return n
		}
	}
	return cmpOr64(l.cfg.MaxPayload, defaultMaxPay)
}

// publishDeadLetter publishes dl, retrying with a short backoff. The last
// attempt drops the body and the copied headers, keeping what identifies
// the message (the Jetsaga-Dlq-* headers, the body's size and digest), in
// case the dead letter was refused for its size.
func (l *Loop) publishDeadLetter(ctx context.Context, dl *nats.Msg) error {
	var errs []error
	wait := 100 * time.Millisecond
	for attempt := 1; attempt <= dlqAttempts; attempt++ {
		if attempt == dlqAttempts && attempt > 1 {
			dl = minimal(dl)
		}
		pctx, cancel := context.WithTimeout(ctx, dlqTimeout)
		_, err := l.js.PublishMsg(pctx, dl)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
		if attempt < dlqAttempts {
			sleep(ctx, wait)
			wait *= 4
		}
	}
	return fmt.Errorf("publish dead letter %s: %w", dl.Subject, errors.Join(errs...))
}

// minimal returns dl without its body and the original headers.
func minimal(dl *nats.Msg) *nats.Msg {
	m := nats.NewMsg(dl.Subject)
	for k, vs := range dl.Header {
		if k == event.HeaderMsgID || strings.HasPrefix(k, "Jetsaga-Dlq-") || k == HeaderOriginalMsgID {
			m.Header[k] = vs
		}
	}
	tr := m.Header.Get(HeaderDLQTruncated)
	m.Header.Set(HeaderDLQTruncated, strings.Trim(tr+",headers,body", ","))
	return m
}

// deadLetterRecord is one row of the dead_letters table.
type deadLetterRecord struct {
	consumer, stream                     string
	seq                                  uint64
	subject, eventID, eventType, orderID string
	deliveries                           uint64
	cause                                string
	bodySize                             int
	bodySHA, dlqSubject, dlqMsgID        string
	published                            bool
	publishErr                           string
}

// execer runs one statement: a pool, a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// recordDeadLetter upserts rec into the service's dead_letters table. A
// message dead-lettered again (after a failed publish) keeps published once
// it was true; a replay dead-lettered again (a new dead letter, another
// dlq_msg_id) takes the new one's.
func recordDeadLetter(ctx context.Context, db execer, rec deadLetterRecord) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := db.Exec(ctx, `
		INSERT INTO dead_letters (consumer, stream, stream_seq, subject, event_id, event_type, order_id,
			deliveries, error, body_size, body_sha256, dlq_subject, dlq_msg_id, published, publish_error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (consumer, stream, stream_seq) DO UPDATE SET
			deliveries = EXCLUDED.deliveries, error = EXCLUDED.error,
			published = CASE WHEN dead_letters.dlq_msg_id = EXCLUDED.dlq_msg_id
				THEN dead_letters.published OR EXCLUDED.published ELSE EXCLUDED.published END,
			dlq_subject = EXCLUDED.dlq_subject, dlq_msg_id = EXCLUDED.dlq_msg_id,
			publish_error = CASE WHEN EXCLUDED.published THEN dead_letters.publish_error ELSE EXCLUDED.publish_error END,
			recorded_at = now()`,
		rec.consumer, rec.stream, int64(rec.seq), validUTF8(rec.subject), validUTF8(rec.eventID), validUTF8(rec.eventType),
		validUTF8(rec.orderID), int64(rec.deliveries), validUTF8(rec.cause), int64(rec.bodySize), rec.bodySHA,
		rec.dlqSubject, rec.dlqMsgID, rec.published, validUTF8(rec.publishErr))
	if err != nil {
		return fmt.Errorf("record dead letter %s #%d: %w", rec.stream, rec.seq, err)
	}
	return nil
}

// headerSize is the size of h on the wire, near enough.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// clip cuts s to at most n bytes, ending it with TruncatedMarker and the
// original length when it cuts.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	marker := TruncatedMarker + strconv.Itoa(len(s)) + " bytes]"
	keep := max(n-len(marker), 0)
	return strings.ToValidUTF8(s[:keep], "") + marker
}

// oneLine replaces CR and LF, which a header value cannot hold.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// validUTF8 drops invalid bytes: Postgres text refuses them.
func validUTF8(s string) string { return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "") }

func cmpOr64(v, def int64) int64 {
	if v > 0 {
		return v
	}
	return def
}
