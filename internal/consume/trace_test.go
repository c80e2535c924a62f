package consume_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/telemetry"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// traceParentOf is a distinct, valid traceparent for order i.
func traceParentOf(i int) string {
	return fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
}

// confirmFor is a handler (and a batch handler) that writes an
// order.confirmed caused by each order.created, refusing the poison order
// for good.
func confirmFor(poison string) (consume.Handler, consume.BatchHandler) {
	one := func(ctx context.Context, tx pgx.Tx, e event.Event) error {
		if e.Type != event.OrderCreated {
			return nil
		}
		if e.OrderID == poison {
			return consume.Permanent(errors.New("poison"))
		}
		out, err := event.New(event.OrderConfirmed, e.OrderID, e.ID, &event.OrderConfirmedPayload{OrderID: e.OrderID, TotalCents: 100}, time.Now())
		if err != nil {
			return err
		}
		return outbox.Add(ctx, tx, out)
	}
	batch := func(ctx context.Context, tx pgx.Tx, es []event.Event) error {
		for _, e := range es {
			if err := one(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	}
	return one, batch
}

// outboxTrace returns the trace_parent of each order's outbox row.
func outboxTrace(t *testing.T, b bundle) map[string]string {
	t.Helper()
	rows, err := b.pool.Query(t.Context(), `SELECT order_id, coalesce(trace_parent, '') FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var order, tp string
	if _, err := pgx.ForEachRow(rows, []any{&order, &tp}, func() error { out[order] = tp; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Untraced, the loop hands the trace context each message came with on to
// the events its handler writes, set-based and one by one alike, and a dead
// letter keeps it with the original headers.
func TestUntracedLoopHandsOnTraceContext(t *testing.T) {
	t.Parallel()
	for _, setBased := range []bool{true, false} {
		t.Run(fmt.Sprintf("set_based=%v", setBased), func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{maxDeliver: 3})
			const n = 8
			want := map[string]string{}
			for i := range n {
				e := created(t, fmt.Sprintf("o-tc-%d", i))
				if i%4 != 3 { // every fourth comes without one: it stays without
					e.Trace = event.TraceContext{Parent: traceParentOf(i)}
				}
				want[e.OrderID] = e.Trace.Parent
				publish(t, b.js, e)
			}
			poison := created(t, "o-poison")
			poison.Trace = event.TraceContext{Parent: traceParentOf(99), State: "k=v"}

			one, batch := confirmFor(poison.OrderID)
			cfg := consume.Config{Batch: 64}
			if setBased {
				cfg.BatchHandler = batch
			}
			run(t, b, one, cfg)
			testenv.WaitFor(t, 20*time.Second, "every order confirmed in the outbox", func() bool {
				return countOutbox(t, b.pool) == n
			})
			// After the others, so that they went set-based (a batch with
			// the poison in it goes one by one).
			publish(t, b.js, poison)
			testenv.WaitFor(t, 20*time.Second, "the poison dead-lettered", func() bool { return len(dlq(t, b.js)) == 1 })
			got := outboxTrace(t, b)
			for order, tp := range want {
				if got[order] != tp {
					t.Errorf("%s: order.confirmed stored with traceparent %q, want its cause's %q", order, got[order], tp)
				}
			}
			letter := dlq(t, b.js)[0]
			if letter.Header.Get(event.HeaderTraceParent) != poison.Trace.Parent || letter.Header.Get(event.HeaderTraceState) != "k=v" {
				t.Errorf("dead letter's trace context %q %q, want the original's", letter.Header.Get(event.HeaderTraceParent), letter.Header.Get(event.HeaderTraceState))
			}
		})
	}
}

// Traced, each message gets a consumer span, child of its headers' context;
// the batch span links them all; each event written carries the span
// context of its cause's span.
func TestTracedLoopSpans(t *testing.T) {
	t.Parallel()
	b := setup(t, options{maxDeliver: 3})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	const n = 6
	parents := map[string]trace.SpanContext{}
	for i := range n {
		e := created(t, fmt.Sprintf("o-span-%d", i))
		e.Trace = event.TraceContext{Parent: traceParentOf(i)}
		parents[e.ID] = telemetry.SpanContext(e.Trace)
		publish(t, b.js, e)
	}
	one, batch := confirmFor("")
	run(t, b, one, consume.Config{Batch: 64, BatchHandler: batch, TracerProvider: tp})
	testenv.WaitFor(t, 20*time.Second, "every order confirmed", func() bool { return countOutbox(t, b.pool) == n })
	waitSettled(t, b)

	var process []tracetest.SpanStub
	linked := map[trace.SpanID]bool{}
	testenv.WaitFor(t, 10*time.Second, "every message span ended", func() bool {
		process, linked = nil, map[trace.SpanID]bool{}
		for _, s := range exp.GetSpans() {
			if s.SpanKind == trace.SpanKindConsumer {
				process = append(process, s)
			}
			if s.Name == "test-orders batch" {
				for _, l := range s.Links {
					linked[l.SpanContext.SpanID()] = true
				}
			}
		}
		return len(process) == n
	})
	stored := outboxTrace(t, b)
	for _, s := range process {
		id := attr(s, telemetry.AttrEventID)
		p := parents[id]
		if s.Parent.SpanID() != p.SpanID() || s.SpanContext.TraceID() != p.TraceID() {
			t.Errorf("span of %s: parent %v in trace %v, want the message's %v in %v", id, s.Parent.SpanID(), s.SpanContext.TraceID(), p.SpanID(), p.TraceID())
		}
		if !linked[s.SpanContext.SpanID()] {
			t.Errorf("span of %s: no batch span links to it", id)
		}
		if attr(s, telemetry.AttrOutcome) != "handled" || attr(s, telemetry.AttrConsumer) != "test-orders" {
			t.Errorf("span of %s: outcome %q consumer %q", id, attr(s, telemetry.AttrOutcome), attr(s, telemetry.AttrConsumer))
		}
		order := attr(s, telemetry.AttrOrderID)
		if got := telemetry.SpanContext(event.TraceContext{Parent: stored[order]}); got.SpanID() != s.SpanContext.SpanID() {
			t.Errorf("%s: order.confirmed stored under span %v, want its cause's span %v", order, got.SpanID(), s.SpanContext.SpanID())
		}
	}
}

func attr(s tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}
