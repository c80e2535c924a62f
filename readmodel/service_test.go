package readmodel

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// TestService runs the readmodel in the service runtime against NATS and
// Postgres, publishes two sagas' events shuffled (one event also re-emitted
// with a new id, one published twice), and reads the converged views, the
// stats and the lag metric over HTTP.
func TestService(t *testing.T) {
	t.Parallel()

	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	dbURL := testenv.DatabaseURL(t)

	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- service.Run(ctx, service.Config{
			NATSURL: n.URL(), DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0", Workers: 2,
			Logger: zaptest.NewLogger(t), OnReady: func(a string) { addr <- a },
		}, Spec(Config{EventRetention: 100 * 365 * 24 * time.Hour})) // the test's events are dated 2025: keep them
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service.Run: %v", err)
		}
	})
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("service.Run ended before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("service not ready within 60s")
	}

	confirmed := saga(t, "svc-ok", pathConfirmed)
	failed := saga(t, "svc-failed", pathPaymentFailed)
	all := append(append(confirmed, failed...), reemit(t, confirmed[1], confirmed[1].OccurredAt.Add(time.Second)), failed[2])
	all = shuffled(rand.New(rand.NewPCG(1, 2)), all)
	for _, e := range all {
		if _, err := js.PublishMsg(t.Context(), e.Msg()); err != nil {
			t.Fatalf("publish %s: %v", e.Type, err)
		}
	}

	getJSON := func(path string, v any) int {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
		return resp.StatusCode
	}
	wantViews := map[string]struct {
		status  Status
		reason  string
		version int
	}{
		"svc-ok":     {Confirmed, "", 4},
		"svc-failed": {Cancelled, event.ReasonPaymentFailed, 5},
	}
	for id, want := range wantViews {
		var v StoredView
		testenv.WaitFor(t, 30*time.Second, "view of "+id, func() bool {
			return getJSON("/orders/"+id, &v) == http.StatusOK && v.Version == want.version && v.Status.Terminal()
		})
		if v.Status != want.status || v.Reason != want.reason || v.CustomerID != "cust-7" || v.TotalCents != testTotal {
			t.Errorf("%s: view %+v", id, v)
		}
	}

	// Ten events stored (nine distinct, plus the re-emitted one); the
	// duplicate publish was dropped by the stream's dedup window.
	var st Stats
	// Behind counts what is not delivered yet; an event delivered may still
	// be in its transaction, so wait for the ten to be committed as well.
	testenv.WaitFor(t, 30*time.Second, "consumers caught up", func() bool {
		getJSON("/stats", &st)
		return st.Behind[ConsumerOrders] == 0 && st.Behind[ConsumerInventory] == 0 && st.Behind[ConsumerPayments] == 0 &&
			st.EventsProjected >= 10
	})
	if st.EventsProjected != 10 || st.Orders[Confirmed] != 1 || st.Orders[Cancelled] != 1 || st.Lag.Samples != 10 {
		t.Errorf("stats = %+v", st)
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "jetsaga_readmodel_lag_seconds_count 10") {
		t.Errorf("/metrics lacks jetsaga_readmodel_lag_seconds_count 10:\n%s", grepLines(string(metrics), "readmodel"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
