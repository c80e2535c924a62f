package consume

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetsaga/jetsaga/internal/event"
)

const (
	outcomeHandled      = "handled"
	outcomeDuplicate    = "duplicate"
	outcomeRetried      = "retried"
	outcomeDeadLettered = "dead_lettered"
)

// Metrics counts messages per consumer, event type and outcome (handled,
// duplicate, retried, dead_lettered) and times the handling of each.
type Metrics struct {
	messages  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	dlqFailed *prometheus.CounterVec
}

// NewMetrics registers the consumer metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsaga_messages_total",
			Help: "Messages consumed, by consumer, event type and outcome (handled, duplicate, retried, dead_lettered).",
		}, []string{"consumer", "event_type", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jetsaga_handler_seconds",
			Help:    "Time from fetch to ack of a handled message, by consumer and event type.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"consumer", "event_type"}),
		dlqFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsaga_dead_letter_failures_total",
			Help: "Dead letters that could not be published to the DLQ stream after retries (the message was recorded in dead_letters and terminated), by consumer.",
		}, []string{"consumer"}),
	}
	reg.MustRegister(m.messages, m.latency, m.dlqFailed)
	return m
}

func (m *Metrics) observe(consumer string, t event.Type, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	typ := string(t)
	if typ == "" {
		typ = "unknown"
	}
	m.messages.WithLabelValues(consumer, typ, outcome).Inc()
	if outcome == outcomeHandled {
		m.latency.WithLabelValues(consumer, typ).Observe(took.Seconds())
	}
}

func (m *Metrics) deadLetterFailed(consumer string) {
	if m == nil {
		return
	}
	m.dlqFailed.WithLabelValues(consumer).Inc()
}
