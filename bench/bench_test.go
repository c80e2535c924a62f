package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/load"
)

func TestSumMessages(t *testing.T) {
	metrics := `# HELP jetsaga_messages_total Messages handled.
# TYPE jetsaga_messages_total counter
jetsaga_messages_total{consumer="inventory-orders",event_type="order.created",outcome="handled"} 120
jetsaga_messages_total{consumer="inventory-orders",event_type="order.created",outcome="duplicate"} 3
jetsaga_messages_total{consumer="inventory-orders",event_type="order.created",outcome="retried"} 7
jetsaga_messages_total{consumer="inventory-payments",event_type="payment.failed",outcome="handled"} 1e+06
jetsaga_messages_totally_else{outcome="handled"} 99
jetsaga_handler_seconds_count{consumer="inventory-orders"} 130
`
	got, err := sumMessages(strings.NewReader(metrics))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(120 + 3 + 1_000_000); got != want {
		t.Errorf("sumMessages = %d, want %d (handled and duplicate only)", got, want)
	}
	if _, err := sumMessages(strings.NewReader(`jetsaga_messages_total{outcome="handled"} x` + "\n")); err == nil {
		t.Error("a malformed value gave no error")
	}
}

func TestMsgSize(t *testing.T) {
	m := &nats.Msg{Subject: "a.b", Data: []byte("12345"), Header: nats.Header{"K": {"vv"}}}
	if got, want := msgSize(m), 3+5+1+2+4; got != want {
		t.Errorf("msgSize = %d, want %d", got, want)
	}
	saga, err := sagaMessage()
	if err != nil {
		t.Fatal(err)
	}
	if n := msgSize(saga); n < 300 || n > 1000 {
		t.Errorf("the saga's message is %d bytes; an order.created with five headers is some 400", n)
	}
}

func TestReportWrite(t *testing.T) {
	cpu := 11.5
	rep := Report{
		Began: time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC), Machine: "2 CPUs", Took: 200 * time.Second,
		Publish:     Ceiling{PerSec: 2000, What: "publish"},
		Transaction: Ceiling{PerSec: 1500, What: "tx"},
		Runs: []RunReport{{
			Name: "max", EventsPerSaga: 4, TxPerSaga: 10, PublishShare: 0.25, TxShare: 0.8,
			Result: load.Result{SagasPerSec: 120, Completed: 7200, LatencyMS: load.Percentiles{P50: 1000, P99: 1500},
				CPUMSPerSaga: &cpu, PeakRSSMiB: map[string]float64{"nats": 33, "load": 20}},
		}},
	}
	var b bytes.Buffer
	rep.Write(&b)
	for _, want := range []string{
		"| sagas/s completed | **120.0** |",
		"| CPU ms per saga (services + nats + postgres) | 11.50 |",
		"| peak RSS MiB | nats 33 |",
		"| message rate / publish ceiling | 480 / 2000 = 25.0% |",
		"| transaction rate / transaction ceiling | 1200 / 1500 = 80.0% |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
