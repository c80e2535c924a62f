package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Provider is a service's tracer provider and how to stop it.
type Provider struct {
	// TracerProvider is nil when tracing is off.
	TracerProvider trace.TracerProvider
	// Exporters names the exporters in use ("otlp/http/protobuf",
	// "otlp/grpc", "console"); empty when tracing is off.
	Exporters []string
	sdk       *sdktrace.TracerProvider
}

// Shutdown flushes the spans not exported yet and stops the exporters; a
// no-op when tracing is off.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shut down tracer provider: %w", err)
	}
	return nil
}

// FromEnv builds the tracer provider of the service named service from the
// standard OpenTelemetry environment variables, like the contrib autoexport
// package. getenv (os.Getenv but in tests) chooses the exporters; the SDK
// and the exporters read the rest from the process environment themselves:
//
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: off;
//   - OTEL_TRACES_EXPORTER: a comma-separated list of otlp and console
//     (spans as JSON on console, a writer, for debugging);
//   - else OTLP when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, and off when neither is;
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL:
//     http/protobuf (the default) or grpc; the exporters read the
//     endpoint, headers, timeout, TLS and compression variables themselves;
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (the SDK reads them;
//     default parentbased_always_on), OTEL_BSP_* (the batch processor);
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the service name
//     defaults to jetsaga-<service>.
//
// Off, it returns a Provider whose TracerProvider is nil.
func FromEnv(ctx context.Context, service string, getenv func(string) string, console io.Writer) (*Provider, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return &Provider{}, nil
	}
	var kinds []string
	if v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); v != "" {
		for k := range strings.SplitSeq(v, ",") {
			switch k = strings.TrimSpace(k); k {
			case "none":
				return &Provider{}, nil
			case "otlp", "console":
				kinds = append(kinds, k)
			default:
				return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: unsupported exporter %q (otlp, console, none)", v, k)
			}
		}
	} else if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		kinds = []string{"otlp"}
	}
	if len(kinds) == 0 {
		return &Provider{}, nil
	}

	p := &Provider{}
	var opts []sdktrace.TracerProviderOption
	var exporters []sdktrace.SpanExporter
	fail := func(err error) (*Provider, error) {
		for _, e := range exporters {
			_ = e.Shutdown(ctx)
		}
		return nil, err
	}
	for _, k := range kinds {
		var (
			exp  sdktrace.SpanExporter
			name string
			err  error
		)
		switch k {
		case "otlp":
			protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
			if protocol == "" {
				protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
			}
			switch protocol {
			case "", "http/protobuf":
				name = "otlp/http/protobuf"
				exp, err = otlptracehttp.New(ctx)
			case "grpc":
				name = "otlp/grpc"
				exp, err = otlptracegrpc.New(ctx)
			default:
				err = fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: unsupported (http/protobuf, grpc)", protocol)
			}
		case "console":
			name = "console"
			if console == nil {
				err = errors.New("console exporter without a writer")
			} else {
				exp, err = stdouttrace.New(stdouttrace.WithWriter(console))
			}
		}
		if err != nil {
			return fail(fmt.Errorf("telemetry: %s exporter: %w", k, err))
		}
		exporters = append(exporters, exp)
		p.Exporters = append(p.Exporters, name)
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	// Later sources win: the default name, then the environment.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "jetsaga-"+service),
			attribute.String("service.namespace", "jetsaga")),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return fail(fmt.Errorf("telemetry: resource: %w", err))
	}
	p.sdk = sdktrace.NewTracerProvider(append(opts, sdktrace.WithResource(res))...)
	p.TracerProvider = p.sdk
	return p, nil
}
