package readmodel

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

type apiBundle struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	rm   *readModel
	srv  *httptest.Server
}

// setupAPI starts NATS with the streams (and, if withConsumers, the
// readmodel's consumers), a fresh readmodel schema and the HTTP API.
func setupAPI(t *testing.T, withConsumers bool) apiBundle {
	t.Helper()
	ctx := t.Context()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	pool := testenv.Pool(t, Schema, Migrations())
	rm := newTestReadModel(t, pool, js, newClock())
	if withConsumers {
		for _, c := range rm.Consumers() {
			if _, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{
				Stream: c.Stream, Durable: c.Durable, FilterSubjects: c.Subjects,
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mux := http.NewServeMux()
	rm.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return apiBundle{pool: pool, js: js, rm: rm, srv: srv}
}

// get fetches path and returns the status code and body.
func (b apiBundle) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := b.srv.Client().Get(b.srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	return resp.StatusCode, body
}

// getJSON fetches path, wants status 200 and decodes the body into v.
func (b apiBundle) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	code, body := b.get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s, want 200", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: decode %s: %v", path, body, err)
	}
}

// seedOrders projects seven orders, ord-1 to ord-7:
// CONFIRMED 1, 3, 5; CANCELLED 2 (payment failed), 4 (out of stock);
// PENDING 6; RESERVED 7. It returns the number of events fed.
func seedOrders(t *testing.T, rm *readModel) int {
	t.Helper()
	n := 0
	for i, p := range []path{pathConfirmed, pathPaymentFailed, pathConfirmed, pathOutOfStock, pathConfirmed, pathConfirmed, pathConfirmed} {
		events := saga(t, "ord-"+strconv.Itoa(i+1), p)
		switch i + 1 {
		case 6:
			events = events[:1]
		case 7:
			events = events[:2]
		}
		feed(t, rm, events...)
		n += len(events)
	}
	return n
}

func TestListOrders(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	seedOrders(t, b.rm)

	tests := []struct {
		query    string
		wantIDs  []string
		wantNext string
	}{
		{"", []string{"ord-1", "ord-2", "ord-3", "ord-4", "ord-5", "ord-6", "ord-7"}, ""},
		{"?status=CONFIRMED", []string{"ord-1", "ord-3", "ord-5"}, ""},
		{"?status=cancelled", []string{"ord-2", "ord-4"}, ""},
		{"?status=PENDING", []string{"ord-6"}, ""},
		{"?status=RESERVED", []string{"ord-7"}, ""},
		{"?limit=3", []string{"ord-1", "ord-2", "ord-3"}, "ord-3"},
		{"?limit=3&after=ord-3", []string{"ord-4", "ord-5", "ord-6"}, "ord-6"},
		{"?limit=3&after=ord-6", []string{"ord-7"}, ""},
		{"?limit=7", []string{"ord-1", "ord-2", "ord-3", "ord-4", "ord-5", "ord-6", "ord-7"}, ""},
		{"?status=CONFIRMED&limit=2", []string{"ord-1", "ord-3"}, "ord-3"},
		{"?status=CONFIRMED&limit=2&after=ord-3", []string{"ord-5"}, ""},
		{"?after=ord-7", []string{}, ""},
		{"?after=ord-0", []string{"ord-1", "ord-2", "ord-3", "ord-4", "ord-5", "ord-6", "ord-7"}, ""},
		{"?limit=500", []string{"ord-1", "ord-2", "ord-3", "ord-4", "ord-5", "ord-6", "ord-7"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()

			var page OrderList
			b.getJSON(t, "/orders"+tt.query, &page)
			ids := []string{}
			for _, o := range page.Orders {
				ids = append(ids, o.OrderID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) || page.Next != tt.wantNext {
				t.Errorf("orders %v next %q, want %v next %q", ids, page.Next, tt.wantIDs, tt.wantNext)
			}
		})
	}

	t.Run("summary fields", func(t *testing.T) {
		t.Parallel()
		var page OrderList
		b.getJSON(t, "/orders?limit=2", &page)
		got := page.Orders[1]
		if got.OrderID != "ord-2" || got.CustomerID != "cust-7" || got.Status != Cancelled || got.Reason != event.ReasonPaymentFailed ||
			got.TotalCents != testTotal || got.Version != 5 || got.UpdatedAt.IsZero() || got.LagMS <= 0 {
			t.Errorf("summary = %+v", got)
		}
	})
	t.Run("empty list is an array", func(t *testing.T) {
		t.Parallel()
		_, body := b.get(t, "/orders?after=zzz")
		if want := `{"orders":[],"next":""}`; strings.TrimSpace(string(body)) != want {
			t.Errorf("body = %s, want %s", body, want)
		}
	})
	t.Run("walk every page", func(t *testing.T) {
		t.Parallel()
		var all []string
		after := ""
		for range 10 {
			var page OrderList
			b.getJSON(t, "/orders?limit=2&after="+after, &page)
			for _, o := range page.Orders {
				all = append(all, o.OrderID)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if want := []string{"ord-1", "ord-2", "ord-3", "ord-4", "ord-5", "ord-6", "ord-7"}; !reflect.DeepEqual(all, want) {
			t.Errorf("pages gave %v, want %v", all, want)
		}
	})
}

func TestListOrdersBadInput(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	tests := []struct {
		query   string
		wantErr string
	}{
		{"?status=SHIPPED", "status must be one of"},
		{"?status=%20", "status must be one of"},
		{"?limit=0", "limit must be"},
		{"?limit=-1", "limit must be"},
		{"?limit=501", "limit must be"},
		{"?limit=abc", "limit must be"},
		{"?limit=1.5", "limit must be"},
		{"?after=a.b", "after must be an order id"},
		{"?after=" + strings.Repeat("x", 65), "after must be an order id"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()

			code, body := b.get(t, "/orders"+tt.query)
			var e struct{ Error string }
			if err := json.Unmarshal(body, &e); err != nil || code != http.StatusBadRequest || !strings.Contains(e.Error, tt.wantErr) {
				t.Errorf("= %d %s, want 400 with an error containing %q", code, body, tt.wantErr)
			}
		})
	}
}

func TestGetOrder(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	events := saga(t, "ord-get", pathPaymentFailed)
	feed(t, b.rm, events...)

	var got StoredView
	b.getJSON(t, "/orders/ord-get", &got)
	if got.OrderID != "ord-get" || got.CustomerID != "cust-7" || !reflect.DeepEqual(got.Items, testItems) ||
		got.TotalCents != testTotal || got.Status != Cancelled || got.Reason != event.ReasonPaymentFailed ||
		got.Version != 5 || !got.UpdatedAt.Equal(newClock().Now()) {
		t.Errorf("view = %+v", got)
	}
	if len(got.Timeline) != len(events) {
		t.Fatalf("timeline has %d steps, want %d", len(got.Timeline), len(events))
	}
	for i, s := range got.Timeline {
		if s.EventID != events[i].ID || s.EventType != events[i].Type || !s.OccurredAt.Equal(events[i].OccurredAt) ||
			!s.ProjectedAt.Equal(newClock().Now()) || s.LagMS != float64(newClock().Now().Sub(events[i].OccurredAt))/1e6 {
			t.Errorf("timeline[%d] = %+v, want event %s %s", i, s, events[i].Type, events[i].ID)
		}
	}
	// The body carries exactly the documented keys.
	_, body := b.get(t, "/orders/ord-get")
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"order_id", "customer_id", "items", "total_cents", "status", "reason", "version", "timeline", "lag_ms", "updated_at"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("body lacks %q: %s", k, body)
		}
	}

	tests := []struct {
		path     string
		wantCode int
	}{
		{"/orders/unknown-order", http.StatusNotFound},
		{"/orders/a.b", http.StatusBadRequest},
		{"/orders/a%20b", http.StatusBadRequest},
		{"/orders/" + strings.Repeat("x", 65), http.StatusBadRequest},
		{"/orders/" + strings.Repeat("x", 64), http.StatusNotFound},
	}
	for _, tt := range tests {
		code, body := b.get(t, tt.path)
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || code != tt.wantCode || e.Error == "" {
			t.Errorf("GET %s = %d %s, want %d with a JSON error", tt.path, code, body, tt.wantCode)
		}
	}
}

func TestStats(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, true)
	var st Stats
	b.getJSON(t, "/stats", &st)
	wantEmpty := map[Status]int64{Pending: 0, Reserved: 0, Confirmed: 0, Cancelled: 0}
	if !reflect.DeepEqual(st.Orders, wantEmpty) || st.EventsProjected != 0 || st.Lag != (LagSummary{}) {
		t.Errorf("empty stats = %+v", st)
	}

	nEvents := seedOrders(t, b.rm)
	feed(t, b.rm, saga(t, "ord-1", pathConfirmed)[:1]...) // a re-emitted order.created: recorded, no change
	feed(t, b.rm, saga(t, "ord-2", pathConfirmed)[0])     // another one
	nEvents += 2
	// Another service's consumer is listed too (the payment.failed below is one for it).
	if _, err := stream.EnsureConsumer(t.Context(), b.js, stream.ConsumerConfig{
		Stream: stream.Payments, Durable: "inventory-payments", FilterSubjects: []string{"payment.failed.>"},
	}); err != nil {
		t.Fatal(err)
	}
	// Messages nobody consumed yet, two on ORDERS, one each on INVENTORY and
	// PAYMENTS: the read model is behind.
	for _, e := range append(saga(t, "ord-8", pathConfirmed)[:1], saga(t, "ord-9", pathPaymentFailed)...)[:4] {
		if _, err := b.js.PublishMsg(t.Context(), e.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	// A duplicate event id: projected before, counted once.
	one := saga(t, "ord-10", pathConfirmed)[0]
	feed(t, b.rm, one, one)
	nEvents++

	b.getJSON(t, "/stats", &st)
	want := Stats{
		Orders:          map[Status]int64{Pending: 2, Reserved: 1, Confirmed: 3, Cancelled: 2},
		EventsProjected: int64(nEvents),
		Behind:          map[string]int64{ConsumerOrders: 2, ConsumerInventory: 1, ConsumerPayments: 1, "inventory-payments": 1},
		Sagas:           SagaCounts{InFlight: 3, StuckAfter: "1m0s"}, // ord-6, ord-7, ord-10
	}
	want.SinceStart.Projected = int64(nEvents)
	want.SinceStart.Duplicates = 1
	st.Lag = LagSummary{} // checked below
	if !reflect.DeepEqual(st, want) {
		t.Errorf("stats = %+v\nwant %+v", st, want)
	}
	b.getJSON(t, "/stats", &st)
	if st.Lag.Samples != nEvents || st.Lag.P50 <= 0 || st.Lag.P99 < st.Lag.P50 {
		t.Errorf("lag = %+v, want %d samples", st.Lag, nEvents)
	}
}

func TestStatsWithoutConsumers(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	var st Stats
	b.getJSON(t, "/stats", &st)
	want := map[string]int64{ConsumerOrders: -1, ConsumerInventory: -1, ConsumerPayments: -1}
	if !reflect.DeepEqual(st.Behind, want) {
		t.Errorf("behind = %v, want %v (unknown)", st.Behind, want)
	}
}

// sse is one Server-Sent Event.
type sse struct {
	event, id string
	data      []byte
}

// watch opens the watch stream of the order and returns its events, closed at
// the end of the stream. The request ends with the test or at cancel.
func (b apiBundle) watch(t *testing.T, orderID string, header http.Header) (<-chan sse, *http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/orders/"+orderID+"/watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan sse, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var cur sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" || cur.data != nil {
					ch <- cur
				}
				cur = sse{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				cur.data = []byte(strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return ch, resp, cancel
}

// next waits up to 10s for the next event; ok is false at the end of the
// stream.
func next(t *testing.T, ch <-chan sse) (v StoredView, id string, ok bool) {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			return StoredView{}, "", false
		}
		if e.event != "order" {
			t.Fatalf("event %q, want order", e.event)
		}
		if err := json.Unmarshal(e.data, &v); err != nil {
			t.Fatalf("decode %s: %v", e.data, err)
		}
		return v, e.id, true
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return StoredView{}, "", false
}

func TestWatchOrder(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	events := saga(t, "ord-watch", pathConfirmed)

	// Watching an order placed a moment ago, before it is projected, waits
	// for it (up to watchGrace).
	type opened struct {
		ch   <-chan sse
		resp *http.Response
	}
	watching := make(chan opened, 1)
	go func() {
		ch, resp, _ := b.watch(t, "ord-watch", nil)
		watching <- opened{ch, resp}
	}()
	feed(t, b.rm, events[0])
	o := <-watching
	ch, resp := o.ch, o.resp
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	v, id, ok := next(t, ch)
	if !ok || v.Version != 1 || v.Status != Pending || id != "1" || v.CustomerID != "cust-7" {
		t.Fatalf("first event: ok %v id %s view %+v", ok, id, v)
	}
	feed(t, b.rm, events[1])
	v, id, ok = next(t, ch)
	if !ok || v.Version != 2 || v.Status != Reserved || id != "2" || len(v.Timeline) != 2 {
		t.Fatalf("second event: ok %v id %s view %+v", ok, id, v)
	}
	// A duplicate changes nothing, so nothing is sent for it: the next event
	// is the terminal view, and then the stream ends.
	feed(t, b.rm, events[1], events[2], events[3])
	for {
		v, _, ok = next(t, ch)
		if !ok {
			t.Fatal("stream ended before the terminal view")
		}
		if v.Version <= 2 {
			t.Fatalf("version %d sent again", v.Version)
		}
		if v.Status == Confirmed {
			break
		}
	}
	if _, _, ok := next(t, ch); ok {
		t.Fatal("an event after the terminal view")
	}
}

func TestWatchOrderResumes(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	feed(t, b.rm, saga(t, "ord-done", pathOutOfStock)...)

	// A fresh client gets the terminal view, then the end.
	ch, _, _ := b.watch(t, "ord-done", nil)
	if v, _, ok := next(t, ch); !ok || v.Status != Cancelled || v.Version != 3 {
		t.Fatalf("first event: ok %v view %+v", ok, v)
	}
	if _, _, ok := next(t, ch); ok {
		t.Fatal("an event after the terminal view")
	}
	// A client that saw version 3 already gets nothing, and the end.
	ch, _, _ = b.watch(t, "ord-done", http.Header{"Last-Event-Id": {"3"}})
	if _, _, ok := next(t, ch); ok {
		t.Fatal("an event the client had seen")
	}
}

// An order the read model does not know is 404, as GET /orders/{id} — once
// the grace for an order just placed has passed, not after waiting forever.
func TestWatchOrderUnknown(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	b.rm.watchGrace = 300 * time.Millisecond
	began := time.Now()
	code, body := b.get(t, "/orders/no-such-order/watch")
	if code != http.StatusNotFound || !strings.Contains(string(body), "no-such-order not found") {
		t.Fatalf("watch of an unknown order = %d %s, want 404", code, body)
	}
	if took := time.Since(began); took < b.rm.watchGrace {
		t.Errorf("404 after %s, before the %s grace", took, b.rm.watchGrace)
	}
}

func TestWatchOrderBadID(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	code, body := b.get(t, "/orders/a.b/watch")
	if code != http.StatusBadRequest {
		t.Errorf("= %d %s, want 400", code, body)
	}
}

// TestWatchClientGone: a watcher that goes away ends its handler, which
// httptest.Server.Close (at cleanup) would otherwise wait for.
func TestWatchClientGone(t *testing.T) {
	t.Parallel()

	b := setupAPI(t, false)
	feed(t, b.rm, saga(t, "ord-gone", pathConfirmed)[0])
	ch, _, cancel := b.watch(t, "ord-gone", nil)
	if _, _, ok := next(t, ch); !ok {
		t.Fatal("no first event")
	}
	cancel()
	for range ch { // the stream ends once the request is cancelled
	}
	b.srv.Close()
}

// The watch streams open at once are bounded (--max-watchers): one more is
// answered 503 with Retry-After, and a slot freed by a client that went
// away is taken again.
func TestWatchersBounded(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, false)
	b.rm.cfg.MaxWatchers = 2
	feed(t, b.rm, saga(t, "ord-w", pathConfirmed)[0]) // PENDING: the streams stay open
	var cancels []context.CancelFunc
	for range 2 {
		ch, resp, cancel := b.watch(t, "ord-w", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch within the bound: %d", resp.StatusCode)
		}
		if _, _, ok := next(t, ch); !ok {
			t.Fatal("watch within the bound sent nothing")
		}
		cancels = append(cancels, cancel)
	}
	resp, err := b.srv.Client().Get(b.srv.URL + "/orders/ord-w/watch")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("watch beyond the bound: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	cancels[0]()
	testenv.WaitFor(t, 10*time.Second, "a freed watch slot", func() bool { return b.rm.watchers.Load() < 2 })
	_, resp, _ = b.watch(t, "ord-w", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch after one went away: %d, want 200", resp.StatusCode)
	}
}
