package bench_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/bench"
	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/inventory"
	"github.com/jetsaga/jetsaga/order"
	"github.com/jetsaga/jetsaga/payment"
	"github.com/jetsaga/jetsaga/readmodel"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// adminToken guards the test services' operator endpoints, as jetsaga up's
// token does the stack's: the fill must send it to seed stock.
const adminToken = "fill-test-token"

// services runs the four services in this process until stop is called
// (they drain, as on SIGTERM), and returns their URLs. Their operator
// endpoints require adminToken.
// maxMsgs bounds the event streams (--stream-max-msgs), 0 for none.
func services(t *testing.T, natsURL, dbURL string, maxMsgs int64) (urls map[string]string, stop func()) {
	t.Helper()
	specs := map[string]service.Spec{
		"order":     order.Spec(order.Config{}),
		"inventory": inventory.Spec(inventory.Config{}),
		"payment":   payment.Spec(payment.Config{DeclineOverCents: 1_000_000, Seed: 1}),
		"readmodel": readmodel.Spec(readmodel.Config{}),
	}
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	urls = map[string]string{}
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
		stops = nil
	}
	t.Cleanup(stop)
	for _, name := range []string{"order", "inventory", "payment", "readmodel"} {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		cfg := service.Config{
			Name: name, NATSURL: natsURL, DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0", MaxMsgs: maxMsgs,
			AdminTokenFile: tokenFile,
			Logger:         zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
			OnReady:        func(addr string) { ready <- addr },
		}
		go func() { done <- service.Run(ctx, cfg, specs[name]) }()
		stops = append(stops, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
		select {
		case addr := <-ready:
			urls[name] = "http://" + addr
		case err := <-done:
			t.Fatalf("%s stopped before it was ready: %v", name, err)
		case <-time.After(60 * time.Second):
			t.Fatalf("%s not ready after 60s", name)
		}
	}
	return urls, stop
}

// TestFillMakesConsistentHistory fills 500 sagas the way bench-history
// does — services stopped, orders copied in, order.created published,
// services started on the backlog — and checks that every saga ended as
// its class says, that every invariant holds, and that the event streams'
// subjects are their types × the orders' shards, not one per event.
func TestFillMakesConsistentHistory(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	dbURL := testenv.DatabaseURL(t)
	pool, err := pgxpool.New(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	nc := n.Connect(t)
	js := testenv.JetStream(t, nc)

	urls, stop := services(t, n.URL(), dbURL, 0)
	f := &bench.Fill{Pool: pool, NC: nc, AdminToken: adminToken, Chunk: 200, SKUs: 8}
	if err := f.SeedStock(t.Context(), http.DefaultClient, urls["inventory"]); err != nil {
		t.Fatal(err)
	}
	stop()

	const sagas = 500
	var chunks []int
	res, err := f.Run(t.Context(), sagas, func(done int) { chunks = append(chunks, done) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Orders != sagas || len(chunks) != 3 || chunks[2] != sagas {
		t.Fatalf("fill = %+v, progress %v; want %d orders in 3 chunks", res, chunks, sagas)
	}
	if res.Classes["confirm"] != 400 || res.Classes["decline"] != 50 || res.Classes["oos"] != 50 {
		t.Errorf("classes = %v, want confirm 400, decline 50, oos 50", res.Classes)
	}

	services(t, n.URL(), dbURL, 0)
	if err := bench.WaitTerminal(t.Context(), pool, 2*time.Minute, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	if err := check.Quiesce(t.Context(), check.OneDB(pool), js, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]int64{
		`SELECT count(*) FROM orders.orders WHERE status = 'CONFIRMED'`:                                                400,
		`SELECT count(*) FROM orders.orders WHERE status = 'CANCELLED' AND reason = 'payment_failed'`:                  50,
		`SELECT count(*) FROM orders.orders WHERE status = 'CANCELLED' AND reason = 'out_of_stock'`:                    50,
		`SELECT count(*) FROM readmodel.order_views v JOIN orders.orders o USING (order_id) WHERE v.status = o.status`: sagas,
	} {
		var got int64
		if err := pool.QueryRow(t.Context(), q).Scan(&got); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	rep, err := check.Run(t.Context(), check.OneDB(pool), js, check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Write(&b)
		t.Errorf("invariants violated:\n%s", b.String())
	}
	checkSubjectsBounded(t, pool, js)
}

// checkSubjectsBounded checks that each event stream's distinct subjects are
// <type>.<shard> of its own types, at most its types × event.Shards however
// many orders there are, fewer than its messages (two orders of a shard
// share a subject), and that order.created's subjects are exactly the shards
// of the order ids.
func checkSubjectsBounded(t *testing.T, pool *pgxpool.Pool, js jetstream.JetStream) {
	t.Helper()
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(stream.Subject(name)))
		if err != nil {
			t.Fatal(err)
		}
		st := info.State
		types := 0
		for _, typ := range event.Types() {
			if typ.Stream() == name {
				types++
			}
		}
		if st.NumSubjects != uint64(len(st.Subjects)) || st.NumSubjects > uint64(types*event.Shards) || st.NumSubjects >= st.Msgs {
			t.Errorf("%s: %d messages on %d subjects, want at most %d × %d subjects and fewer than the messages",
				name, st.Msgs, st.NumSubjects, types, event.Shards)
		}
		for subj := range st.Subjects {
			i := strings.LastIndexByte(subj, '.')
			typ, shard := subj[:max(i, 0)], subj[i+1:]
			if event.Type(typ).Stream() != name || len(shard) != len(event.Shard("")) || strings.Trim(shard, "0123456789abcdef") != "" {
				t.Errorf("%s holds subject %q, want <type>.<shard>", name, subj)
			}
		}
		t.Logf("%s: %d messages, %d subjects", name, st.Msgs, st.NumSubjects)
	}

	rows, err := pool.Query(t.Context(), `SELECT order_id FROM orders.orders`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want[event.Subject(event.OrderCreated, id)] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(event.Filter(event.OrderCreated)))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != len(want) {
		t.Errorf("order.created is on %d subjects, want the %d shards of the orders", len(info.State.Subjects), len(want))
	}
	for subj := range info.State.Subjects {
		if !want[subj] {
			t.Errorf("order.created on %s, the shard of no order", subj)
		}
	}
}

// TestBoundedStreamsDropOldHistoryOnly runs sagas on event streams bounded
// to 200 messages each (--stream-max-msgs), in rounds small enough that
// the consumers keep up, so that old messages are removed only once every
// consumer has read them; then restarts the services on streams that no
// longer start at sequence 1 and runs more. Every saga ends as its class
// says and every invariant holds: the services need no old message.
func TestBoundedStreamsDropOldHistoryOnly(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	dbURL := testenv.DatabaseURL(t)
	pool, err := pgxpool.New(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	nc := n.Connect(t)
	js := testenv.JetStream(t, nc)
	const bound = 200

	urls, stop := services(t, n.URL(), dbURL, bound)
	f := &bench.Fill{Pool: pool, NC: nc, AdminToken: adminToken, SKUs: 4}
	if err := f.SeedStock(t.Context(), http.DefaultClient, urls["inventory"]); err != nil {
		t.Fatal(err)
	}
	round := func() {
		t.Helper()
		if _, err := f.Run(t.Context(), 40, nil); err != nil {
			t.Fatal(err)
		}
		if err := bench.WaitTerminal(t.Context(), pool, time.Minute, time.Hour, nil); err != nil {
			t.Fatal(err)
		}
		if err := check.Quiesce(t.Context(), check.OneDB(pool), js, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 {
		round()
	}
	stop()
	s, err := js.Stream(t.Context(), "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != bound || info.State.FirstSeq <= 1 {
		t.Fatalf("ORDERS holds %d messages from #%d, want %d and old ones gone", info.State.Msgs, info.State.FirstSeq, bound)
	}

	services(t, n.URL(), dbURL, bound)
	for range 2 {
		round()
	}
	var confirmed, total int64
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE status = 'CONFIRMED'), count(*) FROM orders.orders`).Scan(&confirmed, &total); err != nil {
		t.Fatal(err)
	}
	if total != 320 || confirmed != 256 {
		t.Errorf("%d orders, %d confirmed; want 320, 256", total, confirmed)
	}
	rep, err := check.Run(t.Context(), check.OneDB(pool), js, check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Write(&b)
		t.Errorf("invariants violated:\n%s", b.String())
	}
}
