package load_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/inventory"
	"github.com/jetsaga/jetsaga/load"
	"github.com/jetsaga/jetsaga/order"
	"github.com/jetsaga/jetsaga/payment"
	"github.com/jetsaga/jetsaga/readmodel"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is the four services in this test process on an embedded NATS and
// a fresh database, as the e2e tests run them.
type stack struct {
	nats string
	urls map[string]string
	db   *pgxpool.Pool
}

const declineOver = 1_000_000

func startStack(t *testing.T) stack {
	t.Helper()
	n := testenv.StartNATS(t)
	dbURL := testenv.DatabaseURL(t)
	db, err := pgxpool.New(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	s := stack{nats: n.URL(), urls: map[string]string{}, db: db}
	specs := map[string]service.Spec{
		"order":     order.Spec(order.Config{}),
		"inventory": inventory.Spec(inventory.Config{}),
		"payment":   payment.Spec(payment.Config{DeclineOverCents: declineOver, Seed: 1}),
		"readmodel": readmodel.Spec(readmodel.Config{}),
	}
	for _, name := range []string{"order", "inventory", "payment", "readmodel"} {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		cfg := service.Config{
			Name: name, NATSURL: n.URL(), DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0", Workers: 2,
			Logger:  zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
			OnReady: func(addr string) { ready <- addr },
		}
		go func() { done <- service.Run(ctx, cfg, specs[name]) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
		select {
		case addr := <-ready:
			s.urls[name] = "http://" + addr
		case err := <-done:
			t.Fatalf("%s stopped before it was ready: %v", name, err)
		case <-time.After(60 * time.Second):
			t.Fatalf("%s not ready after 60s", name)
		}
	}
	return s
}

func (s stack) config() load.Config {
	return load.Config{
		OrderURL: s.urls["order"], InventoryURL: s.urls["inventory"], ReadmodelURL: s.urls["readmodel"], NATSURL: s.nats,
		Mix: load.Mix{load.Confirm: 80, load.Decline: 10, load.OOS: 10}, Drain: 30 * time.Second,
	}
}

// count runs a counting query.
func (s stack) count(t *testing.T, sql string) int64 {
	t.Helper()
	var n int64
	if err := s.db.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestRun drives 50 orders closed loop and then 30 open loop through the
// real services and checks that the load saw what the services did: every
// saga terminal, each class ending as meant, in the order service and in
// the read model alike.
func TestRun(t *testing.T) {
	s := startStack(t)

	closed := s.config()
	closed.Concurrency, closed.Orders = 8, 50
	res, err := load.Run(t.Context(), closed)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, 50, map[string]map[string]int64{
		"confirm": {"confirmed": 40}, "decline": {"cancelled:payment_failed": 5}, "oos": {"cancelled:out_of_stock": 5},
	})
	if res.Mode != "closed" || res.Concurrency != 8 {
		t.Errorf("mode %s concurrency %d, want closed 8", res.Mode, res.Concurrency)
	}

	open := s.config()
	open.Rate, open.Orders = 100, 30
	open.Mix = load.Mix{load.Confirm: 2, load.Decline: 1}
	res, err = load.Run(t.Context(), open)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, 30, map[string]map[string]int64{
		"confirm": {"confirmed": 20}, "decline": {"cancelled:payment_failed": 10},
	})
	if res.Mode != "open" || res.RateOffered != 100 || res.PlacingS < 0.28 {
		t.Errorf("mode %s rate %v placing %.3fs, want open at 100/s over at least 0.29s", res.Mode, res.RateOffered, res.PlacingS)
	}

	// The services agree with what the load saw, summed over both runs.
	for _, q := range []struct {
		sql  string
		want int64
	}{
		{`SELECT count(*) FROM orders.orders WHERE status = 'CONFIRMED'`, 60},
		{`SELECT count(*) FROM orders.orders WHERE status = 'CANCELLED' AND reason = 'payment_failed'`, 15},
		{`SELECT count(*) FROM orders.orders WHERE status = 'CANCELLED' AND reason = 'out_of_stock'`, 5},
		{`SELECT count(*) FROM orders.orders`, 80},
	} {
		if got := s.count(t, q.sql); got != q.want {
			t.Errorf("%s = %d, want %d", q.sql, got, q.want)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "the read model to agree with the order service", func() bool {
		return s.count(t, `SELECT count(*) FROM readmodel.order_views v JOIN orders.orders o USING (order_id) WHERE v.status = o.status`) == 80
	})
}

func checkResult(t *testing.T, res load.Result, n int64, outcomes map[string]map[string]int64) {
	t.Helper()
	if res.Sent != n || res.Accepted != n || res.Completed != n || res.NotTerminal != 0 || res.Errors != 0 || res.Unexpected != 0 {
		t.Errorf("sent %d accepted %d completed %d not terminal %d errors %d (%v) unexpected %d; want %d, %d, %d, 0, 0, 0",
			res.Sent, res.Accepted, res.Completed, res.NotTerminal, res.Errors, res.ErrorSamples, res.Unexpected, n, n, n)
	}
	if fmt.Sprint(res.Outcomes) != fmt.Sprint(outcomes) {
		t.Errorf("outcomes = %v, want %v", res.Outcomes, outcomes)
	}
	if res.LatencyMS.Count != n || res.LatencyMS.P50 <= 0 || res.LatencyMS.P50 > res.LatencyMS.P99 || res.LatencyMS.P99 > res.LatencyMS.Max {
		t.Errorf("latency = %+v, want %d samples, 0 < p50 <= p99 <= max", res.LatencyMS, n)
	}
	if res.SagasPerSec <= 0 {
		t.Errorf("sagas/s = %v", res.SagasPerSec)
	}
	// Every sampled order's timeline is in the read model: at least the
	// three events of an out-of-stock saga each.
	if res.LagMS.Samples < 3*int(n) || res.LagMS.P99 < res.LagMS.P50 {
		t.Errorf("lag = %+v, want >= %d events", res.LagMS, 3*n)
	}
	if res.CPUMSPerSaga != nil {
		t.Errorf("cpu per saga = %v with no run folder, want null", *res.CPUMSPerSaga)
	}
}
