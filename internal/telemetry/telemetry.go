package telemetry

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
)

// ScopeName is the instrumentation scope of jetsaga's spans.
const ScopeName = "github.com/jetsaga/jetsaga"

// Attribute keys of jetsaga's spans, beside the messaging semantic
// conventions' (messaging.system, messaging.destination.name, ...).
const (
	AttrOrderID     = attribute.Key("jetsaga.order_id")
	AttrEventID     = attribute.Key("jetsaga.event_id")
	AttrEventType   = attribute.Key("jetsaga.event_type")
	AttrCausationID = attribute.Key("jetsaga.causation_id")
	AttrConsumer    = attribute.Key("jetsaga.consumer")
	// AttrOutcome says what became of a handled message: handled,
	// duplicate, retried or dead_lettered.
	AttrOutcome = attribute.Key("jetsaga.outcome")
	// AttrSetBased says whether a batch was applied set-based (true) or
	// message by message after the batch handler refused it (false).
	AttrSetBased = attribute.Key("jetsaga.batch.set_based")
)

// Tracer returns jetsaga's tracer from tp, or nil when tp is nil or a no-op
// provider: nil means tracing is off, and instrumented code skips every
// span and header it would otherwise make.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return nil
	}
	return tp.Tracer(ScopeName)
}

// propagator reads and writes W3C traceparent and tracestate. It is used
// explicitly, never through the global propagator.
var propagator = propagation.TraceContext{}

// carrier is an event's trace context as a propagation.TextMapCarrier.
type carrier struct{ tc *event.TraceContext }

func (c carrier) Get(key string) string {
	switch key {
	case event.HeaderTraceParent:
		return c.tc.Parent
	case event.HeaderTraceState:
		return c.tc.State
	}
	return ""
}

func (c carrier) Set(key, value string) {
	switch key {
	case event.HeaderTraceParent:
		c.tc.Parent = value
	case event.HeaderTraceState:
		c.tc.State = value
	}
}

func (c carrier) Keys() []string { return []string{event.HeaderTraceParent, event.HeaderTraceState} }

// Inject returns the W3C trace context of sc; zero when sc is not valid.
func Inject(sc trace.SpanContext) event.TraceContext {
	var tc event.TraceContext
	if !sc.IsValid() {
		return tc
	}
	propagator.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier{&tc})
	return tc
}

// Extract returns ctx with the remote span context tc names, or ctx as it
// is when tc is zero or malformed (a span started from it starts a new
// trace).
func Extract(ctx context.Context, tc event.TraceContext) context.Context {
	if tc.IsZero() {
		return ctx
	}
	return propagator.Extract(ctx, carrier{&tc})
}

// SpanContext returns the span context tc names; not valid when tc is zero
// or malformed.
func SpanContext(tc event.TraceContext) trace.SpanContext {
	return trace.SpanContextFromContext(Extract(context.Background(), tc))
}

type causesKey struct{}

// WithCauses returns ctx under which an event written to the outbox and
// caused by the event with id X carries the trace context causes[X]: the
// consumer loop sets it for a batch, so that each event a batch handler
// writes joins the trace of the event that caused it, whichever saga of
// the batch that is.
func WithCauses(ctx context.Context, causes map[string]event.TraceContext) context.Context {
	return context.WithValue(ctx, causesKey{}, causes)
}

// For returns the trace context an event caused by causationID and written
// under ctx travels with: the cause's, from WithCauses; else that of the
// span in ctx (an HTTP request's, a handler's); else none.
func For(ctx context.Context, causationID string) event.TraceContext {
	if causes, ok := ctx.Value(causesKey{}).(map[string]event.TraceContext); ok {
		if tc, ok := causes[causationID]; ok {
			return tc
		}
	}
	return Inject(trace.SpanContextFromContext(ctx))
}

// TraceID is the zap field trace_id of sc, or a field that logs nothing when
// sc is not valid.
func TraceID(sc trace.SpanContext) zap.Field {
	if !sc.HasTraceID() {
		return zap.Skip()
	}
	return zap.String("trace_id", sc.TraceID().String())
}

// LogField is TraceID of the span in ctx.
func LogField(ctx context.Context) zap.Field {
	return TraceID(trace.SpanContextFromContext(ctx))
}

// HTTPHandler wraps a service's API in a server span per request, named by
// its route ("POST /orders"), continuing the caller's trace when the request
// carries a traceparent. With tracing off (tp nil or no-op) it returns h
// itself.
func HTTPHandler(tp trace.TracerProvider, h http.Handler) http.Handler {
	if Tracer(tp) == nil {
		return h
	}
	// h is a mux: once it routed the request, its pattern is the route.
	routed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if _, route, ok := strings.Cut(r.Pattern, "/"); ok {
			trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("http.route", "/"+route))
		}
	})
	traced := otelhttp.NewHandler(routed, "http",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagator),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()), // metrics are Prometheus'
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The pattern an outer mux routed by (the runtime's catch-all "/")
		// is not the route.
		if r.Pattern != "" {
			r = r.WithContext(r.Context())
			r.Pattern = ""
		}
		traced.ServeHTTP(w, r)
	})
}
