package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

const producerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// lastMsgTrace returns the trace context of the last message on ORDERS.
func lastMsgTrace(t *testing.T, b bundle) event.TraceContext {
	t.Helper()
	ctx := t.Context()
	s, err := b.js.Stream(ctx, stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "order.>")
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.FromMsg(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return e.Trace
}

// With tracing off the relay publishes the trace context stored with the
// event as it is (the producer's), and an event written without one is
// published without one: it is optional.
func TestRelayPublishesStoredTraceContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	r, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}

	write(t, b.pool, created(t, "o-untraced"), true)
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if tc := lastMsgTrace(t, b); !tc.IsZero() {
		t.Fatalf("untraced event published with trace context %+v", tc)
	}

	// Under a span (an HTTP request's): Add stores its context.
	sc := telemetry.SpanContext(event.TraceContext{Parent: producerParent, State: "k=v"})
	if !sc.IsValid() {
		t.Fatal("test traceparent does not parse")
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Add(trace.ContextWithSpanContext(ctx, sc), tx, created(t, "o-traced")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := b.pool.QueryRow(ctx, `SELECT trace_parent || ' ' || trace_state FROM outbox`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != producerParent+" k=v" {
		t.Fatalf("outbox row holds %q", stored)
	}
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if tc := lastMsgTrace(t, b); tc.Parent != producerParent || tc.State != "k=v" {
		t.Fatalf("published trace context %+v, want the stored one", tc)
	}
}

// With tracing on, each publish is a producer span, child of the stored
// context, and the message carries the producer span's context.
func TestRelayTracesEachPublish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	r, err := outbox.NewRelay(b.pool, b.js, outbox.RelayConfig{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	e := created(t, "o-1")
	e.Trace = event.TraceContext{Parent: producerParent}
	write(t, b.pool, e, true)
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	parent := telemetry.SpanContext(e.Trace)
	if s.Name != "publish order.created" || s.SpanKind != trace.SpanKindProducer {
		t.Errorf("span %q kind %v", s.Name, s.SpanKind)
	}
	if s.Parent.SpanID() != parent.SpanID() || s.SpanContext.TraceID() != parent.TraceID() {
		t.Errorf("publish span's parent %v in trace %v, want %v in %v", s.Parent.SpanID(), s.SpanContext.TraceID(), parent.SpanID(), parent.TraceID())
	}
	if got := telemetry.SpanContext(lastMsgTrace(t, b)); got.SpanID() != s.SpanContext.SpanID() {
		t.Errorf("message carries span %v, want the publish span %v", got.SpanID(), s.SpanContext.SpanID())
	}
}

// In an atomic batch too, each event's publish is a producer span of its
// own, ended once the batch is stored, and its message carries that span.
func TestRelayTracesEachEventOfAnAtomicBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var es []event.Event
	for i := range 20 {
		e := created(t, fmt.Sprintf("o-traced-%d", i))
		e.Trace = event.TraceContext{Parent: producerParent}
		write(t, b.pool, e, true)
		es = append(es, e)
	}
	var log batchLog
	flush(t, b, outbox.RelayConfig{TracerProvider: tp, OnAtomicBatch: log.add})
	if !slices.Equal(log.stored, []int{20}) {
		t.Fatalf("batches stored %v; want one of 20", log.stored)
	}
	spans := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range exp.GetSpans().Snapshots() {
		spans[s.SpanContext().SpanID()] = s
	}
	if len(spans) != len(es) {
		t.Fatalf("%d spans, want %d", len(spans), len(es))
	}
	parent := telemetry.SpanContext(event.TraceContext{Parent: producerParent})
	msgs := ordersMsgs(t, b.js)
	for _, e := range es {
		m := msgs[e.ID]
		got, err := event.FromMsg(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := spans[telemetry.SpanContext(got.Trace).SpanID()]
		if !ok {
			t.Fatalf("event %s carries span %s, not one of the relay's", e.ID, got.Trace.Parent)
		}
		if s.Name() != "publish order.created" || s.Parent().SpanID() != parent.SpanID() || s.Status().Code != codes.Unset {
			t.Errorf("event %s: span %q, parent %v, status %v", e.ID, s.Name(), s.Parent().SpanID(), s.Status())
		}
	}
}
