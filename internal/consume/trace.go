package consume

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// Tracing in the loop (docs/DESIGN.md, "Tracing"). A batch holds messages of
// many sagas, each in a trace of its own, and one transaction applies them
// all. So each message gets a consumer span, "process <event type>", child of
// the context its headers carry: it lasts from decoding to its ack (or
// retry, or dead letter) and is where its saga's trace goes on. The batch
// gets a span of its own, "<consumer> batch", the transaction, linked to
// every message span (a root: it belongs to no one saga). The events a
// handler writes carry the context of the message span of their cause.

// startProcess starts d's consumer span.
func (l *Loop) startProcess(ctx context.Context, d *delivery) trace.Span {
	e := d.e
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", e.Subject()),
		attribute.String("messaging.consumer.group.name", d.src.name),
		attribute.String("messaging.message.id", e.ID),
		attribute.Int64("messaging.nats.delivery", int64(d.md.NumDelivered)),
		telemetry.AttrConsumer.String(d.src.name),
		telemetry.AttrOrderID.String(e.OrderID),
		telemetry.AttrEventID.String(e.ID),
		telemetry.AttrEventType.String(string(e.Type)),
		telemetry.AttrCausationID.String(e.CausationID),
	}
	if rp := d.replay; rp != nil {
		attrs = append(attrs, attribute.String("jetsaga.replay.for_consumer", rp.consumer),
			attribute.Int64("jetsaga.replay.dlq_seq", int64(rp.dlqSeq)))
	}
	_, span := l.tracer.Start(telemetry.Extract(ctx, e.Trace), "process "+string(e.Type),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	return span
}

// startBatch starts the span of the batch's transaction, linked to the span
// of every message in it, and returns ctx with it.
func (l *Loop) startBatch(ctx context.Context, ds []*delivery) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(ds))
	for _, d := range ds {
		if d.span != nil {
			links = append(links, trace.Link{SpanContext: d.span.SpanContext()})
		}
	}
	// A new root: the batch is no one saga's.
	return l.tracer.Start(ctx, l.cfg.Consumer+" batch", trace.WithNewRoot(), trace.WithLinks(links...),
		trace.WithAttributes(
			telemetry.AttrConsumer.String(l.cfg.Consumer),
			attribute.Int("messaging.batch.message_count", len(ds)),
		))
}

// withCauses returns ctx under which the events a batch handler writes carry
// the trace context of their cause's span; with tracing off, the trace
// context their cause came with (ctx itself when none came).
func (l *Loop) withCauses(ctx context.Context, ds []*delivery) context.Context {
	var causes map[string]event.TraceContext
	for _, d := range ds {
		tc := d.e.Trace
		if d.span != nil {
			tc = telemetry.Inject(d.span.SpanContext())
		}
		if tc.IsZero() {
			continue
		}
		if causes == nil {
			causes = make(map[string]event.TraceContext, len(ds))
		}
		causes[d.e.ID] = tc
	}
	if causes == nil {
		return ctx
	}
	return telemetry.WithCauses(ctx, causes)
}

// withCause is withCauses for one message handled alone: its span in ctx.
func (l *Loop) withCause(ctx context.Context, d *delivery) context.Context {
	switch {
	case d.span != nil:
		return trace.ContextWithSpan(ctx, d.span)
	case !d.e.Trace.IsZero():
		return telemetry.WithCauses(ctx, map[string]event.TraceContext{d.e.ID: d.e.Trace})
	}
	return ctx
}

// traceID is the trace_id log field of d's span (nothing when it has none).
func (l *Loop) traceID(d *delivery) zap.Field {
	if d.span == nil {
		return zap.Skip()
	}
	return telemetry.TraceID(d.span.SpanContext())
}

// spanFailed records on span (nil: tracing off) that its message failed.
func spanFailed(span trace.Span, outcome string, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(telemetry.AttrOutcome.String(outcome))
	span.RecordError(err)
	span.SetStatus(codes.Error, outcome)
}
