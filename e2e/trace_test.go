package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/telemetry"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// consumersOf are the durable consumers that handle each event type
// (docs/DESIGN.md, "Event contract").
var consumersOf = map[event.Type][]string{
	event.OrderCreated:      {"inventory-orders", "readmodel-orders"},
	event.InventoryReserved: {"payment-inventory", "order-inventory", "readmodel-inventory"},
	event.InventoryRejected: {"order-inventory", "readmodel-inventory"},
	event.PaymentCompleted:  {"order-payments", "readmodel-payments"},
	event.PaymentFailed:     {"inventory-payments", "order-payments", "readmodel-payments"},
	event.InventoryReleased: {"order-inventory", "readmodel-inventory"},
	event.OrderConfirmed:    {"inventory-orders", "readmodel-orders"},
	event.OrderCancelled:    {"inventory-orders", "payment-orders", "readmodel-orders"},
	event.PaymentRefunded:   {"order-payments", "readmodel-payments"},
}

// TestOneTracePerSaga runs the saga's three paths (confirmed, payment
// declined with its compensation, out of stock) with every service traced
// into one in-memory exporter, and asserts that each saga is one trace
// whose parent links follow the events' causation: POST /orders → publish
// order.created → process order.created in each consumer → publish of each
// event that handling caused → process it → ... Every message's traceparent
// header names its publish span, and every message span is linked from the
// span of the batch (transaction) that handled it.
func TestOneTracePerSaga(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100, "sku-b": 100, "sku-scarce": 1},
		declineOverCents: declineOver,
		tracerProvider: func(name string) trace.TracerProvider {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
				sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return tp
		},
	})

	orders := []string{
		w.place("c1", item{"sku-a", 2, 1999}, item{"sku-b", 1, 500}),     // confirmed
		w.place("c2", item{"sku-b", 3, 5000}),                            // declined: released, cancelled
		w.place("c3", item{"sku-a", 1, 100}, item{"sku-scarce", 2, 100}), // out of stock
	}
	w.waitTerminal(orders...)
	w.checkInvariants()

	// A message span ends right after its ack: wait until each order's
	// trace holds what it should, then report what is still wrong.
	var problems []string
	check := func() bool {
		problems = nil
		for _, id := range orders {
			problems = append(problems, w.traceProblems(id, exp.GetSpans())...)
		}
		return len(problems) == 0
	}
	deadline := time.Now().Add(30 * time.Second)
	testenv.WaitFor(t, 31*time.Second, "the sagas' traces", func() bool {
		return check() || time.Now().After(deadline) // past it: report the problems
	})
	t.Logf("%d spans exported", len(exp.GetSpans()))
	for _, p := range problems {
		t.Error(p)
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

// traceProblems lists what is wrong with the trace of order id.
func (w *world) traceProblems(id string, spans tracetest.SpanStubs) []string {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("order %s: ", id)+fmt.Sprintf(format, args...))
	}
	byID := map[trace.SpanID]tracetest.SpanStub{}
	var mine []tracetest.SpanStub
	var batches []tracetest.SpanStub
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
		if attr(s, telemetry.AttrOrderID) == id {
			mine = append(mine, s)
		}
		if strings.HasSuffix(s.Name, " batch") {
			batches = append(batches, s)
		}
	}

	// The root: the POST /orders server span.
	var root tracetest.SpanStub
	for _, s := range mine {
		if s.SpanKind == trace.SpanKindServer {
			root = s
		}
	}
	if root.Name != "POST /orders" {
		bad("no POST /orders server span with the order's id (got %q)", root.Name)
		return problems
	}
	tid := root.SpanContext.TraceID()
	for _, s := range mine {
		if s.SpanContext.TraceID() != tid {
			bad("span %q (%s) in trace %s, want the saga's %s", s.Name, attr(s, telemetry.AttrConsumer), s.SpanContext.TraceID(), tid)
		}
	}

	linked := map[trace.SpanID]bool{}
	for _, b := range batches {
		for _, l := range b.Links {
			linked[l.SpanContext.SpanID()] = true
		}
	}
	events := w.events(id)
	for _, es := range events {
		for _, e := range es {
			// The message names its publish span.
			sc := telemetry.SpanContext(e.Trace)
			if !sc.IsValid() || sc.TraceID() != tid {
				bad("%s %s: message trace context %+v, want one in trace %s", e.Type, e.ID, e.Trace, tid)
				continue
			}
			pub, ok := byID[sc.SpanID()]
			if !ok || pub.SpanKind != trace.SpanKindProducer || attr(pub, telemetry.AttrEventID) != e.ID {
				bad("%s %s: traceparent names %q, not the event's publish span", e.Type, e.ID, pub.Name)
				continue
			}
			// The publish span is a child of the span that wrote the event:
			// the request for order.created (and for a timeout's
			// order.cancelled, which the scheduler writes with the trace
			// context of the order.created), else the handling of its cause.
			parent := byID[pub.Parent.SpanID()]
			timeout := e.Type == event.OrderCancelled && string(e.Body) != "" && strings.Contains(string(e.Body), `"timeout"`)
			switch {
			case e.Type == event.OrderCreated || timeout:
				if pub.Parent.SpanID() != root.SpanContext.SpanID() {
					bad("publish %s: parent %q, want POST /orders", e.Type, parent.Name)
				}
			case parent.SpanKind != trace.SpanKindConsumer || attr(parent, telemetry.AttrEventID) != e.CausationID:
				bad("publish %s: parent %q of event %s, want the processing of its cause %s", e.Type, parent.Name,
					attr(parent, telemetry.AttrEventID), e.CausationID)
			}
			// Each consumer's handling of it is a child of a publish of it
			// (a republish is a publish too), and linked from its batch.
			for _, c := range consumersOf[e.Type] {
				var found bool
				for _, s := range mine {
					if s.SpanKind != trace.SpanKindConsumer || attr(s, telemetry.AttrEventID) != e.ID ||
						attr(s, telemetry.AttrConsumer) != c || attr(s, telemetry.AttrOutcome) != "handled" {
						continue
					}
					found = true
					if p := byID[s.Parent.SpanID()]; p.SpanKind != trace.SpanKindProducer || attr(p, telemetry.AttrEventID) != e.ID {
						bad("%s processing %s: parent %q, want a publish of it", c, e.Type, p.Name)
					}
					if !linked[s.SpanContext.SpanID()] {
						bad("%s processing %s: no batch span links to it", c, e.Type)
					}
				}
				if !found {
					bad("no span of %s handling %s %s", c, e.Type, e.ID)
				}
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// TestTraceCrossesAnUntracedService traces every service but inventory: the
// inventory events carry on, as they came, the trace context of the
// order.created that caused them, so the saga is still one trace.
func TestTraceCrossesAnUntracedService(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 100},
		declineOverCents: declineOver,
		tracerProvider: func(name string) trace.TracerProvider {
			if name == "inventory" {
				return nil
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return tp
		},
	})
	id := w.place("c1", item{"sku-a", 1, 100})
	w.waitTerminal(id)
	w.checkInvariants()

	var created trace.SpanContext
	for _, e := range w.events(id)["ORDERS"] {
		if e.Type == event.OrderCreated {
			created = telemetry.SpanContext(e.Trace)
		}
	}
	for _, e := range w.events(id)["INVENTORY"] {
		if got := telemetry.SpanContext(e.Trace); got.SpanID() != created.SpanID() || !got.IsValid() {
			t.Errorf("%s carries %+v, want order.created's %v handed on", e.Type, e.Trace, created.SpanID())
		}
	}
	var handled bool
	testenv.WaitFor(t, 30*time.Second, "order-payments to handle payment.completed", func() bool {
		handled = false
		for _, s := range exp.GetSpans() {
			if attr(s, telemetry.AttrOrderID) != id {
				continue
			}
			if s.SpanContext.TraceID() != created.TraceID() {
				t.Fatalf("span %q in trace %s, want %s", s.Name, s.SpanContext.TraceID(), created.TraceID())
			}
			handled = handled || (s.Name == "process payment.completed" && attr(s, telemetry.AttrConsumer) == "order-payments")
		}
		return handled
	})
}

// TestTimedOutSagaIsOneTrace: a timeout's order.cancelled, written by the
// deadline scheduler long after the request, joins the saga's trace through
// the trace context the order kept from its order.created; so do the
// release and the refund it causes.
func TestTimedOutSagaIsOneTrace(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	w := newWorld(t, worldOptions{
		seedStock:    map[string]int{"sku-a": 100},
		sagaDeadline: testDeadline,
		faultsFor:    map[string]fault.Config{"order": {Delay: 1500 * time.Millisecond}},
		tracerProvider: func(name string) trace.TracerProvider {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
				sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return tp
		},
	})
	id := w.place("c1", item{"sku-a", 1, 700})
	w.waitTerminal(id)
	w.waitScalar("payment", "REFUNDED", `SELECT status FROM payment.payments WHERE order_id = $1`, id)
	if got := w.orderStatus(id); got != "CANCELLED/timeout" {
		t.Fatalf("order %s, want CANCELLED/timeout", got)
	}
	w.checkInvariants()
	var problems []string
	deadline := time.Now().Add(30 * time.Second)
	testenv.WaitFor(t, 31*time.Second, "the timed-out saga's trace", func() bool {
		problems = w.traceProblems(id, exp.GetSpans())
		return len(problems) == 0 || time.Now().After(deadline)
	})
	for _, p := range problems {
		t.Error(p)
	}
	var traces = map[trace.TraceID]bool{}
	for _, s := range exp.GetSpans() {
		if attr(s, telemetry.AttrOrderID) == id {
			traces[s.SpanContext.TraceID()] = true
		}
	}
	if len(traces) != 1 {
		t.Errorf("the timed-out saga's spans are in %d traces, want 1", len(traces))
	}
}
