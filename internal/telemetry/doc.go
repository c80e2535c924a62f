// Package telemetry carries jetsaga's OpenTelemetry tracing: the W3C Trace
// Context every event travels with (its traceparent and tracestate headers,
// [event.TraceContext]), the tracer provider a service builds from the
// standard OTEL_* environment variables ([FromEnv]), and the helpers the
// outbox, the consumer loop and the HTTP API share.
//
// Tracing is off unless configured: then a service holds no tracer (nil),
// creates no span and formats no header; it only hands on, verbatim, a trace
// context that came in with an event, so that a traced service further down
// still joins the saga's trace.
//
// One saga is one trace. POST /orders starts it (or continues the caller's,
// from the request's traceparent); each transaction that writes events to
// the outbox stores, per event, the trace context of the span that caused
// it; the relay publishes each event under a producer span, child of that
// context, and puts the producer span's context in the message headers; the
// consumer that handles the event opens a consumer span, child of the
// message's context, and the events its handler writes carry that span's
// context on. See docs/DESIGN.md, "Tracing".
package telemetry
