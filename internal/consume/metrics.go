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
	batches   *prometheus.HistogramVec
	batchDur  *prometheus.HistogramVec
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
	m.batches = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "jetsaga_batch_messages",
		Help:    "Messages handled per batch (one transaction), by consumer.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	}, []string{"consumer"})
	m.batchDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "jetsaga_batch_seconds",
		Help:    "Time from the start of a batch to its commit, by consumer.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"consumer"})
	reg.MustRegister(m.messages, m.latency, m.batches, m.batchDur, m.dlqFailed)
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

func (m *Metrics) observeBatch(consumer string, n int, took time.Duration) {
	if m == nil {
		return
	}
	m.batches.WithLabelValues(consumer).Observe(float64(n))
	m.batchDur.WithLabelValues(consumer).Observe(took.Seconds())
}

// Describe and Collect make Metrics a prometheus.Collector of its own, so it
// can be gathered apart from the registry it was made for.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.messages.Describe(ch)
	m.latency.Describe(ch)
	m.batches.Describe(ch)
	m.batchDur.Describe(ch)
	m.dlqFailed.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.messages.Collect(ch)
	m.latency.Collect(ch)
	m.batches.Collect(ch)
	m.batchDur.Collect(ch)
	m.dlqFailed.Collect(ch)
}

func (m *Metrics) deadLetterFailed(consumer string) {
	if m == nil {
		return
	}
	m.dlqFailed.WithLabelValues(consumer).Inc()
}
