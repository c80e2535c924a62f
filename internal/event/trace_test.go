package event_test

import (
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/internal/event"
)

const (
	traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceState  = "vendor=opaque"
)

// The trace context is optional: it travels when present, and a message
// without it, or with one that cannot be a trace context, is still a valid
// event.
func TestTraceContextHeaders(t *testing.T) {
	t.Parallel()
	e := mustNew(t, event.InventoryReserved)
	if h := e.Header(); len(h) != 5 {
		t.Fatalf("event without trace context has headers %v, want the five", h)
	}
	e.Trace = event.TraceContext{Parent: traceParent, State: traceState}
	m := e.Msg()
	if got := m.Header[event.HeaderTraceParent]; len(got) != 1 || got[0] != traceParent {
		t.Fatalf("traceparent %v", got)
	}
	got, err := event.FromMsg(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Trace != e.Trace {
		t.Fatalf("trace context %+v, want %+v", got.Trace, e.Trace)
	}

	tests := []struct {
		name   string
		parent []string
		state  []string
		want   event.TraceContext
	}{
		{name: "none", want: event.TraceContext{}},
		{name: "parent only", parent: []string{traceParent}, want: event.TraceContext{Parent: traceParent}},
		{name: "both", parent: []string{traceParent}, state: []string{traceState}, want: event.TraceContext{Parent: traceParent, State: traceState}},
		{name: "parent twice", parent: []string{traceParent, traceParent}, state: []string{traceState}},
		{name: "parent too long", parent: []string{strings.Repeat("0", 129)}},
		{name: "state twice", parent: []string{traceParent}, state: []string{"a=1", "b=2"}, want: event.TraceContext{Parent: traceParent}},
		{name: "state too long", parent: []string{traceParent}, state: []string{strings.Repeat("a", 513)}, want: event.TraceContext{Parent: traceParent}},
		{name: "garbage is carried on, not refused", parent: []string{"not a traceparent"}, want: event.TraceContext{Parent: "not a traceparent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustNew(t, event.InventoryReserved).Msg()
			if tt.parent != nil {
				m.Header[event.HeaderTraceParent] = tt.parent
			}
			if tt.state != nil {
				m.Header[event.HeaderTraceState] = tt.state
			}
			got, err := event.FromMsg(m.Subject, m.Header, m.Data)
			if err != nil {
				t.Fatalf("FromMsg: %v", err)
			}
			if got.Trace != tt.want {
				t.Errorf("trace context %+v, want %+v", got.Trace, tt.want)
			}
		})
	}
}
