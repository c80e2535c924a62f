package telemetry_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

func TestFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    []string // exporters; nil: off
		wantErr string
	}{
		{name: "nothing set: off"},
		{name: "endpoint: otlp over http", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, want: []string{"otlp/http/protobuf"}},
		{name: "traces endpoint and grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: []string{"otlp/grpc"}},
		{name: "traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, want: []string{"otlp/http/protobuf"}},
		{name: "exporter named", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp,console"}, want: []string{"otlp/http/protobuf", "console"}},
		{name: "none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "unsupported exporter"},
		{name: "unknown protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: "unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := telemetry.FromEnv(t.Context(), "order", func(k string) string { return tt.env[k] }, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			if !slices.Equal(p.Exporters, tt.want) {
				t.Fatalf("exporters %v, want %v", p.Exporters, tt.want)
			}
			if on := telemetry.Tracer(p.TracerProvider) != nil; on != (tt.want != nil) {
				t.Fatalf("tracing on = %v", on)
			}
		})
	}
}

// The console exporter writes the spans out by the shutdown at the latest,
// under the service's default name.
func TestConsoleExporterFlushesOnShutdown(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p, err := telemetry.FromEnv(t.Context(), "payment", func(k string) string {
		return map[string]string{"OTEL_TRACES_EXPORTER": "console"}[k]
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	_, span := telemetry.Tracer(p.TracerProvider).Start(t.Context(), "process order.created")
	span.End()
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "process order.created") || !strings.Contains(out.String(), "jetsaga-payment") {
		t.Fatalf("console output lacks the span or the service name:\n%s", out.String())
	}
}

func TestTracerOffForNoProvider(t *testing.T) {
	t.Parallel()
	if telemetry.Tracer(nil) != nil || telemetry.Tracer(noop.NewTracerProvider()) != nil {
		t.Fatal("a nil or no-op provider must turn tracing off")
	}
}

func TestInjectExtractAndFor(t *testing.T) {
	t.Parallel()
	tc := event.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "k=v"}
	sc := telemetry.SpanContext(tc)
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceState().Get("k") != "v" {
		t.Fatalf("span context %+v", sc)
	}
	if got := telemetry.Inject(sc); got != tc {
		t.Fatalf("Inject(Extract(tc)) = %+v, want %+v", got, tc)
	}
	if got := telemetry.SpanContext(event.TraceContext{Parent: "garbage"}); got.IsValid() {
		t.Fatal("a malformed traceparent gave a valid span context")
	}
	if got := telemetry.Inject(trace.SpanContext{}); !got.IsZero() {
		t.Fatalf("an invalid span context injected as %+v", got)
	}

	ctx := context.Background()
	if got := telemetry.For(ctx, "cause"); !got.IsZero() {
		t.Fatalf("For without anything = %+v", got)
	}
	other := event.TraceContext{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	ctx = trace.ContextWithSpanContext(ctx, telemetry.SpanContext(other))
	if got := telemetry.For(ctx, "cause"); got != other {
		t.Fatalf("For under a span = %+v, want the span's %+v", got, other)
	}
	ctx = telemetry.WithCauses(ctx, map[string]event.TraceContext{"cause": tc})
	if got := telemetry.For(ctx, "cause"); got != tc {
		t.Fatalf("For of a known cause = %+v, want %+v", got, tc)
	}
	if got := telemetry.For(ctx, "unknown"); got != other {
		t.Fatalf("For of an unknown cause = %+v, want the span's %+v", got, other)
	}
}

// An API request gets a server span named and tagged by its route, under
// the caller's trace when it sends a traceparent.
func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	api := http.NewServeMux()
	api.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	// As the runtime serves it: behind a catch-all of its own mux.
	outer := http.NewServeMux()
	outer.Handle("/", telemetry.HTTPHandler(tp, api))
	req := httptest.NewRequest(http.MethodPost, "/orders", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	rec := httptest.NewRecorder()
	outer.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d", rec.Code)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name != "POST /orders" || s.SpanKind != trace.SpanKindServer || s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("span %q kind %v trace %v", s.Name, s.SpanKind, s.SpanContext.TraceID())
	}
	for _, kv := range s.Attributes {
		if kv.Key == "http.route" && kv.Value.AsString() != "/orders" {
			t.Errorf("http.route = %q, want /orders", kv.Value.AsString())
		}
	}
	if h := telemetry.HTTPHandler(nil, api); h != http.Handler(api) {
		t.Error("with tracing off the API must be served as it is")
	}
}
