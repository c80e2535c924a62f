package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// JetStream's atomic batch publish (nats-server 2.12 and later, on streams
// with allow_atomic): every message of a batch carries the batch's id and
// its place in it, the last one also the commit mark; the stream stores
// all of them or none, and answers the commit alone, once all are stored.
// On a stream that fsyncs every write (sync_interval: always) the commit
// stores the batch with one fsync instead of one per message, and the
// relay waits for one ack instead of many: BenchmarkPublishDurable
// (internal/stream) measures where that starts to pay.
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"

	// maxAtomicBatch is nats-server's default limit on a batch's size.
	maxAtomicBatch = 1000
	// errAtomicDisabled is JetStream's error code for a batch sent to a
	// stream without allow_atomic.
	errAtomicDisabled = 10174
)

// conner is what a Publisher that can publish atomic batches has besides:
// its connection (jetstream.JetStream has it).
type conner interface {
	Conn() *nats.Conn
}

// batchAck is what the relay reads of the stream's answer to a batch's
// commit: the batch and how many messages it stored, or an error.
type batchAck struct {
	Batch string `json:"batch"`
	Count int    `json:"count"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// publishAtomic publishes, for every stream that AtomicMin or more of
// events go to, those events as atomic batches, and returns how many of
// events the stream acked that way. It moves those to the front of events
// and seqs, each part keeping its order. Events of a batch that failed for
// any reason (a timeout, a stream without allow_atomic, an event already in
// the stream: a batch holding a duplicate is refused whole) are left for
// the caller to publish one by one, which the stream deduplicates by
// Nats-Msg-Id as it does any republish.
func (r *Relay) publishAtomic(ctx context.Context, events []event.Event, seqs []int64) int {
	if r.conn == nil || r.cfg.AtomicMin <= 0 || len(events) < r.cfg.AtomicMin || r.noAtomic.Load() {
		return 0
	}
	byStream := map[string][]int{}
	for i, e := range events {
		s := e.Type.Stream()
		byStream[s] = append(byStream[s], i)
	}
	acked := make([]bool, len(events))
	stored := 0
	for name, idx := range byStream {
		for len(idx) >= r.cfg.AtomicMin && !r.noAtomic.Load() {
			chunk := idx[:min(len(idx), maxAtomicBatch)]
			idx = idx[len(chunk):]
			ok := r.publishBatch(ctx, name, events, chunk)
			if r.cfg.OnAtomicBatch != nil {
				r.cfg.OnAtomicBatch(len(chunk), ok)
			}
			if ok {
				stored += len(chunk)
				for _, i := range chunk {
					acked[i] = true
				}
			}
		}
	}
	if stored == 0 {
		return 0
	}
	// A stable partition: the events left to publish one by one keep the
	// order they were written in.
	sorted := make([]event.Event, 0, len(events))
	sortedSeqs := make([]int64, 0, len(seqs))
	for _, first := range []bool{true, false} {
		for i := range events {
			if acked[i] == first {
				sorted = append(sorted, events[i])
				sortedSeqs = append(sortedSeqs, seqs[i])
			}
		}
	}
	copy(events, sorted)
	copy(seqs, sortedSeqs)
	return stored
}

// publishBatch publishes events[idx] to the stream name as one atomic
// batch and reports whether the stream stored all of them.
func (r *Relay) publishBatch(ctx context.Context, name string, events []event.Event, idx []int) (ok bool) {
	id := uuid.NewString()
	var spans []trace.Span
	if r.tracer != nil {
		spans = make([]trace.Span, 0, len(idx))
		defer func() {
			for _, s := range spans {
				if !ok {
					s.SetStatus(codes.Error, "atomic batch not stored; published one by one")
				}
				s.End()
			}
		}()
	}
	for k, i := range idx {
		e := events[i]
		if r.tracer != nil {
			span := r.startPublish(ctx, e)
			spans = append(spans, span)
			e.Trace = telemetry.Inject(span.SpanContext())
		}
		msg := e.Msg()
		msg.Header.Set(jetstream.ExpectedStreamHeader, name)
		msg.Header.Set(batchIDHeader, id)
		msg.Header.Set(batchSeqHeader, strconv.Itoa(k+1))
		if k == len(idx)-1 {
			msg.Header.Set(batchCommitHeader, "1")
			ok = r.commitBatch(ctx, id, len(idx), msg)
			break
		}
		if err := r.conn.PublishMsg(msg); err != nil {
			r.log.Debug("atomic batch not sent; publishing one by one", zap.String("batch", id), zap.Error(err))
			return false
		}
	}
	if ok && r.cfg.Duplicate != nil {
		r.duplicate(ctx, name, events, idx)
	}
	return ok
}

// duplicate publishes a second time, one by one, those of events[idx] the
// Duplicate fault picks, and waits for the stream's answers, whatever they
// are (a duplicate ack, as a rule).
func (r *Relay) duplicate(ctx context.Context, name string, events []event.Event, idx []int) {
	var extra []jetstream.PubAckFuture
	for _, i := range idx {
		if r.cfg.Duplicate(events[i]) {
			if d, err := r.pub.PublishMsgAsync(events[i].Msg(), jetstream.WithExpectStream(name)); err == nil {
				extra = append(extra, d)
			}
		}
	}
	for _, f := range extra {
		select {
		case <-f.Ok():
		case <-f.Err():
		case <-ctx.Done():
			return
		}
	}
}

// commitBatch sends the batch's last message, which commits it, and
// reports whether the stream answered that it stored all n messages of
// batch id. A stream without allow_atomic, or a server that knows nothing
// of batches (its ack names none), turns atomic batches off for this
// relay.
func (r *Relay) commitBatch(ctx context.Context, id string, n int, msg *nats.Msg) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AckTimeout)
	defer cancel()
	reply, err := r.conn.RequestMsgWithContext(ctx, msg)
	if err != nil {
		r.log.Debug("atomic batch not acked; publishing one by one", zap.String("batch", id), zap.Error(err))
		return false
	}
	var ack batchAck
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		r.log.Debug("atomic batch ack unreadable; publishing one by one", zap.String("batch", id), zap.Error(err))
		return false
	}
	switch {
	case ack.Error != nil && ack.Error.ErrCode == errAtomicDisabled:
		r.atomicOff(fmt.Sprintf("stream %s does not allow atomic batches", msg.Header.Get(jetstream.ExpectedStreamHeader)))
		return false
	case ack.Error != nil:
		// A duplicate in the batch (a republish), too many batches in
		// flight, a gap: the one-by-one path sorts each event out.
		r.log.Debug("atomic batch refused; publishing one by one", zap.String("batch", id),
			zap.Int("err_code", ack.Error.ErrCode), zap.String("error", ack.Error.Description))
		return false
	case ack.Batch != id || ack.Count != n:
		r.atomicOff(fmt.Sprintf("the server acked batch %q of %d messages as %q of %d: it does not know atomic batches", id, n, ack.Batch, ack.Count))
		return false
	}
	return true
}

// atomicOff stops this relay from publishing atomic batches, once.
func (r *Relay) atomicOff(why string) {
	if !r.noAtomic.Swap(true) {
		r.log.Warn("atomic batches off: publishing one by one", zap.String("reason", why))
	}
}
