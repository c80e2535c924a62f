package order

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/jackc/pgx/v5"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
)

// server serves the service's routes over a real HTTP server.
func server(t *testing.T, b bundle) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	b.svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; a nil body reader sends no body.
func do(t *testing.T, srv *httptest.Server, method, path string, body io.Reader, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func post(t *testing.T, srv *httptest.Server, body string, header map[string]string) response {
	t.Helper()
	return do(t, srv, http.MethodPost, "/orders", strings.NewReader(body), header)
}

func decodeBody[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("response body %q: %v", r.body, err)
	}
	return v
}

const validBody = `{"customer_id":"cust-1","items":[{"sku":"sku-1","qty":2,"unit_price_cents":1999},{"sku":"sku-2","qty":1,"unit_price_cents":500}]}`

func TestPlaceOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)

	res := post(t, srv, validBody, nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("status %d, body %s", res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	pr := decodeBody[PlaceResponse](t, res)
	if err := event.ValidOrderID(pr.OrderID); err != nil {
		t.Fatalf("order id %q: %v", pr.OrderID, err)
	}
	if v := uuidVersion(t, pr.OrderID); v != 7 {
		t.Errorf("order id %s is a UUIDv%d, want v7", pr.OrderID, v)
	}
	want := PlaceResponse{OrderID: pr.OrderID, Status: Pending, StatusURL: "/orders/" + pr.OrderID}
	if pr != want {
		t.Errorf("body = %+v, want %+v", pr, want)
	}
	if loc := res.header.Get("Location"); loc != want.StatusURL {
		t.Errorf("Location = %q, want %q", loc, want.StatusURL)
	}

	o := loadOrder(t, b, pr.OrderID)
	if o.Status != Pending || o.CustomerID != "cust-1" || o.TotalCents != testTotal || o.Version != 1 ||
		!reflect.DeepEqual(o.Items, testItems) {
		t.Errorf("stored order = %+v", o)
	}
	rows := outboxOf(t, b, pr.OrderID)
	if len(rows) != 1 || rows[0].Type != event.OrderCreated || rows[0].CausationID != "" {
		t.Fatalf("outbox = %+v, want one order.created without causation", rows)
	}
	checkCreated(t, rows[0], pr.OrderID)
	if n := toldRelay(b); n != 1 {
		t.Errorf("relay told of %d placements (handed or woken), want 1", n)
	}
	if n := placedTotal(t, b); n != 1 {
		t.Errorf("jetsaga_orders_placed_total = %v, want 1", n)
	}

	// A second request without a key is a second order.
	if res := post(t, srv, validBody, nil); res.status != http.StatusAccepted {
		t.Fatalf("second order: status %d, body %s", res.status, res.body)
	}
	if n := countRows(t, b, `SELECT count(*) FROM orders`); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}
	if n := countRows(t, b, `SELECT count(*) FROM orders WHERE idempotency_key IS NULL`); n != 2 {
		t.Errorf("%d orders without idempotency key, want 2", n)
	}
}

// placedTotal reads jetsaga_orders_placed_total from the service's registry.
func placedTotal(t *testing.T, b bundle) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "jetsaga_orders_placed_total" {
			if len(mf.GetMetric()) != 1 {
				t.Fatalf("jetsaga_orders_placed_total has %d series, want 1", len(mf.GetMetric()))
			}
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("jetsaga_orders_placed_total is not registered")
	return 0
}

func uuidVersion(t *testing.T, id string) int {
	t.Helper()
	// Canonical form: the version is the first digit of the third group.
	parts := strings.Split(id, "-")
	if len(parts) != 5 || len(parts[2]) != 4 {
		t.Fatalf("%q is not a canonical UUID", id)
	}
	var v int
	if _, err := fmt.Sscanf(parts[2][:1], "%x", &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// checkCreated checks an order.created outbox row against validBody.
func checkCreated(t *testing.T, row outboxRow, orderID string) {
	t.Helper()
	p, err := event.DecodePayload(event.OrderCreated, row.Body)
	if err != nil {
		t.Fatalf("order.created body: %v", err)
	}
	want := event.OrderCreatedPayload{OrderID: orderID, CustomerID: "cust-1", Items: testItems, TotalCents: testTotal}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("order.created payload = %+v, want %+v", p, want)
	}
}

func TestPlaceOrderBadRequests(t *testing.T) {
	t.Parallel()
	item := func(sku string, qty int, price int64) string {
		return fmt.Sprintf(`{"sku":%q,"qty":%d,"unit_price_cents":%d}`, sku, qty, price)
	}
	order := func(customer string, items ...string) string {
		return fmt.Sprintf(`{"customer_id":%q,"items":[%s]}`, customer, strings.Join(items, ","))
	}
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = item(fmt.Sprintf("s%d", i), 1, 1)
		}
		return out
	}
	const tokenRule = "must be 1-64 chars of [A-Za-z0-9_-]"
	tests := []struct {
		name       string
		body       string
		header     map[string]string
		wantStatus int
		wantFields map[string]string // for "invalid order"
		wantError  string            // prefix of the error, when not "invalid order"
	}{
		{name: "customer missing", body: `{"items":[` + item("a", 1, 1) + `]}`, wantFields: map[string]string{"customer_id": tokenRule}},
		{name: "customer empty", body: order("", item("a", 1, 1)), wantFields: map[string]string{"customer_id": tokenRule}},
		{name: "customer 65 chars", body: order(strings.Repeat("c", 65), item("a", 1, 1)), wantFields: map[string]string{"customer_id": tokenRule}},
		{name: "customer bad char", body: order("c/1", item("a", 1, 1)), wantFields: map[string]string{"customer_id": tokenRule}},
		{name: "items missing", body: `{"customer_id":"c"}`, wantFields: map[string]string{"items": "must hold 1-50 items"}},
		{name: "items null", body: `{"customer_id":"c","items":null}`, wantFields: map[string]string{"items": "must hold 1-50 items"}},
		{name: "items empty", body: order("c"), wantFields: map[string]string{"items": "must hold 1-50 items"}},
		{name: "51 items", body: order("c", many(51)...), wantFields: map[string]string{"items": "must hold 1-50 items"}},
		{name: "sku empty", body: order("c", item("", 1, 1)), wantFields: map[string]string{"items[0].sku": tokenRule}},
		{name: "sku 65 chars", body: order("c", item("a", 1, 1), item(strings.Repeat("s", 65), 1, 1)), wantFields: map[string]string{"items[1].sku": tokenRule}},
		{name: "sku bad char", body: order("c", item("a.b", 1, 1)), wantFields: map[string]string{"items[0].sku": tokenRule}},
		{name: "qty 0", body: order("c", item("a", 0, 1)), wantFields: map[string]string{"items[0].qty": "must be 1-1000"}},
		{name: "qty 1001", body: order("c", item("a", 1001, 1)), wantFields: map[string]string{"items[0].qty": "must be 1-1000"}},
		{name: "qty missing", body: `{"customer_id":"c","items":[{"sku":"a","unit_price_cents":1}]}`, wantFields: map[string]string{"items[0].qty": "must be 1-1000"}},
		{name: "price negative", body: order("c", item("a", 1, -1)), wantFields: map[string]string{"items[0].unit_price_cents": "must be >= 0"}},
		{name: "several bad fields", body: order("", item("a", 1, 1), item("", 0, -1)), wantFields: map[string]string{
			"customer_id": tokenRule, "items[1].sku": tokenRule, "items[1].qty": "must be 1-1000", "items[1].unit_price_cents": "must be >= 0"}},

		{name: "malformed JSON", body: `{"customer_id":"c",`, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "empty body", body: ``, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "not an object", body: `[1,2]`, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "two objects", body: validBody + validBody, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "trailing garbage", body: validBody + `x`, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "qty as string", body: `{"customer_id":"c","items":[{"sku":"a","qty":"2","unit_price_cents":1}]}`, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "qty fractional", body: `{"customer_id":"c","items":[{"sku":"a","qty":1.5,"unit_price_cents":1}]}`, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "unknown top-level field", body: `{"customer_id":"c","items":[` + item("a", 1, 1) + `],"coupon":"FREE"}`, wantStatus: 400, wantError: "malformed JSON: "},
		{name: "unknown item field", body: `{"customer_id":"c","items":[{"sku":"a","qty":1,"unit_price_cents":1,"discount":5}]}`, wantStatus: 400, wantError: "malformed JSON: "},

		{name: "body over 64 KiB", body: order(strings.Repeat("c", MaxBodyBytes), item("a", 1, 1)), wantStatus: 413, wantError: "request body exceeds"},
		{name: "valid JSON padded over 64 KiB", body: validBody + strings.Repeat(" ", MaxBodyBytes), wantStatus: 413, wantError: "request body exceeds"},

		{name: "idempotency key too long", body: validBody, header: map[string]string{HeaderIdempotencyKey: strings.Repeat("k", 129)}, wantStatus: 400, wantError: "invalid Idempotency-Key"},
		{name: "idempotency key non-ASCII", body: validBody, header: map[string]string{HeaderIdempotencyKey: "clé"}, wantStatus: 400, wantError: "invalid Idempotency-Key"},
	}
	b := setup(t)
	srv := server(t, b)
	// The group returns once its parallel subtests are done.
	t.Run("requests", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				res := post(t, srv, tt.body, tt.header)
				wantStatus := tt.wantStatus
				if tt.wantFields != nil {
					wantStatus = http.StatusBadRequest
				}
				if res.status != wantStatus {
					t.Fatalf("status %d, want %d; body %s", res.status, wantStatus, res.body)
				}
				er := decodeBody[ErrorResponse](t, res)
				if tt.wantFields != nil {
					want := ErrorResponse{Error: "invalid order", Fields: tt.wantFields}
					if !reflect.DeepEqual(er, want) {
						t.Errorf("body = %+v, want %+v", er, want)
					}
					return
				}
				if !strings.HasPrefix(er.Error, tt.wantError) {
					t.Errorf("error = %q, want prefix %q", er.Error, tt.wantError)
				}
			})
		}
	})
	// Nothing was placed.
	if n := countRows(t, b, `SELECT count(*) FROM orders`); n != 0 {
		t.Errorf("bad requests placed %d orders", n)
	}
	if n := countRows(t, b, `SELECT count(*) FROM outbox`); n != 0 {
		t.Errorf("bad requests wrote %d outbox rows", n)
	}
}

// Error bodies are JSON as a person writes it: ">=" stays ">=", not the
// HTML-safe "\u003e=".
func TestErrorBodyIsNotHTMLEscaped(t *testing.T) {
	t.Parallel()
	srv := server(t, setup(t))
	res := post(t, srv, `{"customer_id":"c","items":[{"sku":"a","qty":1,"unit_price_cents":-1}]}`, nil)
	if res.status != http.StatusBadRequest || !strings.Contains(string(res.body), `"must be >= 0"`) {
		t.Fatalf("= %d %s, want 400 with \"must be >= 0\" as written", res.status, res.body)
	}
}

// TestPlaceOrderTooLargeChunked: a body over the limit without a
// Content-Length is cut off while read.
func TestPlaceOrderTooLargeChunked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)
	// An io.Reader of unknown length makes the client send it chunked.
	body := io.MultiReader(strings.NewReader(`{"customer_id":"`), strings.NewReader(strings.Repeat("c", 2*MaxBodyBytes)),
		strings.NewReader(`","items":[]}`))
	res := do(t, srv, http.MethodPost, "/orders", body, nil)
	if res.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413; body %s", res.status, res.body)
	}
}

func TestPlaceOrderIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)
	key := map[string]string{HeaderIdempotencyKey: "key-1 with spaces & symbols!"}

	first := post(t, srv, validBody, key)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: status %d, body %s", first.status, first.body)
	}
	placed := decodeBody[PlaceResponse](t, first)
	if first.header.Get(HeaderIdempotentReplayed) != "" {
		t.Errorf("first response says it is a replay")
	}

	// The same request, spelled differently: field order and white space.
	same := `{ "items": [ {"unit_price_cents": 1999, "qty": 2, "sku": "sku-1"},
		{"sku": "sku-2", "qty": 1, "unit_price_cents": 500} ],
		"customer_id": "cust-1" }`
	for i, body := range []string{validBody, same} {
		res := post(t, srv, body, key)
		if res.status != http.StatusAccepted {
			t.Fatalf("replay %d: status %d, body %s", i, res.status, res.body)
		}
		if !bytes.Equal(res.body, first.body) || res.header.Get("Location") != first.header.Get("Location") {
			t.Errorf("replay %d answered %s (Location %s), first answer %s (Location %s)",
				i, res.body, res.header.Get("Location"), first.body, first.header.Get("Location"))
		}
		if res.header.Get(HeaderIdempotentReplayed) != "true" {
			t.Errorf("replay %d: %s header missing", i, HeaderIdempotentReplayed)
		}
	}

	// The same key with another body.
	other := strings.Replace(validBody, `"qty":2`, `"qty":3`, 1)
	res := post(t, srv, other, key)
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("reused key: status %d, want 422; body %s", res.status, res.body)
	}
	if er := decodeBody[ErrorResponse](t, res); !strings.Contains(er.Error, "Idempotency-Key") {
		t.Errorf("422 error = %q", er.Error)
	}

	// The replay also answers after the order moved on.
	mustDeliver(t, b, newEvent(t, event.InventoryReserved, placed.OrderID, ""))
	if res := post(t, srv, validBody, key); res.status != http.StatusAccepted || !bytes.Equal(res.body, first.body) {
		t.Errorf("replay after reservation: status %d, body %s", res.status, res.body)
	}

	// Another key is another order.
	if res := post(t, srv, validBody, map[string]string{HeaderIdempotencyKey: "key-2"}); res.status != http.StatusAccepted {
		t.Fatalf("second key: status %d, body %s", res.status, res.body)
	} else if pr := decodeBody[PlaceResponse](t, res); pr.OrderID == placed.OrderID {
		t.Errorf("second key got the first key's order")
	}

	if n := countRows(t, b, `SELECT count(*) FROM orders`); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}
	if n := countRows(t, b, `SELECT count(*) FROM outbox WHERE event_type = 'order.created'`); n != 2 {
		t.Errorf("%d order.created, want 2", n)
	}
	if n := placedTotal(t, b); n != 2 {
		t.Errorf("jetsaga_orders_placed_total = %v, want 2", n)
	}
	if n := toldRelay(b); n != 2 {
		t.Errorf("relay told of %d placements (handed or woken), want 2: a replay tells it nothing", n)
	}
}

// toldRelay counts how often the relay learnt of a placed order: its row
// handed over (placed with others), or a wake (placed alone).
func toldRelay(b bundle) int {
	n := int(b.notified.Load())
	b.handed.Range(func(_, _ any) bool { n++; return true })
	return n
}

// TestPlaceOrderIdempotencyConcurrent sends one request with one key many
// times at once: one order, one order.created, every answer the same.
func TestPlaceOrderIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)
	const n = 16
	var wg sync.WaitGroup
	results := make(chan response, n)
	for range n {
		wg.Go(func() {
			results <- post(t, srv, validBody, map[string]string{HeaderIdempotencyKey: "race"})
		})
	}
	wg.Wait()
	close(results)
	ids := map[string]int{}
	for res := range results {
		if res.status != http.StatusAccepted {
			t.Errorf("status %d, body %s", res.status, res.body)
			continue
		}
		ids[decodeBody[PlaceResponse](t, res).OrderID]++
	}
	if len(ids) != 1 {
		t.Errorf("order ids answered: %v, want one", ids)
	}
	if c := countRows(t, b, `SELECT count(*) FROM orders`); c != 1 {
		t.Errorf("%d orders, want 1", c)
	}
	if c := countRows(t, b, `SELECT count(*) FROM outbox`); c != 1 {
		t.Errorf("%d outbox rows, want 1", c)
	}
}

func TestGetOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)

	for _, path := range []string{"/orders/0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d", "/orders/not.a.token", "/orders/" + strings.Repeat("x", 65)} {
		res := do(t, srv, http.MethodGet, path, nil, nil)
		if res.status != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, res.status)
		}
		if er := decodeBody[ErrorResponse](t, res); er.Error != "order not found" {
			t.Errorf("GET %s: error %q", path, er.Error)
		}
	}

	placed := decodeBody[PlaceResponse](t, post(t, srv, validBody, nil))
	get := func() OrderView {
		t.Helper()
		res := do(t, srv, http.MethodGet, placed.StatusURL, nil, nil)
		if res.status != http.StatusOK {
			t.Fatalf("GET: status %d, body %s", res.status, res.body)
		}
		if cc := res.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q", cc)
		}
		// Exactly the documented fields.
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(res.body, &raw); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range raw {
			keys = append(keys, k)
		}
		wantKeys := []string{"created_at", "customer_id", "items", "order_id", "reason", "status", "total_cents", "updated_at", "version"}
		if !sameSet(keys, wantKeys) {
			t.Errorf("fields %v, want %v", keys, wantKeys)
		}
		return decodeBody[OrderView](t, res)
	}

	v := get()
	o := loadOrder(t, b, placed.OrderID)
	want := OrderView{OrderID: placed.OrderID, CustomerID: "cust-1", Items: testItems, TotalCents: testTotal,
		Status: Pending, Reason: "", Version: 1, CreatedAt: o.CreatedAt, UpdatedAt: o.CreatedAt}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("GET = %+v, want %+v", v, want)
	}

	mustDeliver(t, b, newEvent(t, event.InventoryRejected, placed.OrderID, event.ReasonOutOfStock))
	v = get()
	if v.Status != Cancelled || v.Reason != event.ReasonOutOfStock || v.Version != 2 || !v.UpdatedAt.After(v.CreatedAt) {
		t.Errorf("GET after rejection = %+v", v)
	}
	if v.CreatedAt.Location() != time.UTC {
		t.Errorf("created_at %v not in UTC", v.CreatedAt)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}

func TestRoutesMethods(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/orders", http.StatusMethodNotAllowed},
		{http.MethodPut, "/orders/x", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/orders/x", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nothing", http.StatusNotFound},
	}
	for _, tt := range tests {
		if res := do(t, srv, tt.method, tt.path, nil, nil); res.status != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, res.status, tt.want)
		}
	}
}

// Requests arriving together share transactions: every one is placed once,
// with its order.created, and fewer transactions than orders commit; a key
// used twice in the crowd places one order, and a reused key with another
// body is refused.
func TestPlaceOrdersTogether(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)
	const n = 64
	var wg sync.WaitGroup
	results := make(chan response, n+3)
	for range n {
		wg.Go(func() { results <- post(t, srv, validBody, nil) })
	}
	other := strings.Replace(validBody, "cust-1", "cust-2", 1)
	wg.Go(func() { results <- post(t, srv, validBody, map[string]string{HeaderIdempotencyKey: "crowd"}) })
	wg.Go(func() { results <- post(t, srv, validBody, map[string]string{HeaderIdempotencyKey: "crowd"}) })
	wg.Go(func() { results <- post(t, srv, other, map[string]string{HeaderIdempotencyKey: "crowd"}) })
	wg.Wait()
	close(results)
	ids := map[string]bool{}
	refused := 0
	for res := range results {
		switch res.status {
		case http.StatusAccepted:
			ids[decodeBody[PlaceResponse](t, res).OrderID] = true
		case http.StatusUnprocessableEntity:
			refused++
		default:
			t.Errorf("status %d, body %s", res.status, res.body)
		}
	}
	// The two same-body "crowd" requests share an order and the other body
	// is refused, or the other body came first and both are refused: n+1
	// orders either way.
	if got := len(ids); got != n+1 {
		t.Errorf("%d distinct orders answered, want %d", got, n+1)
	}
	if refused != 1 && refused != 2 {
		t.Errorf("%d requests refused, want the reused key's other body refused", refused)
	}
	if c := countRows(t, b, `SELECT count(*) FROM orders`); c != n+1 {
		t.Errorf("%d orders, want %d", c, n+1)
	}
	if c := countRows(t, b, `SELECT count(*) FROM outbox`); c != n+1 {
		t.Errorf("%d outbox rows, want %d", c, n+1)
	}
	if c := countRows(t, b, `SELECT count(*) FROM orders o JOIN outbox x ON x.order_id = o.order_id`); c != n+1 {
		t.Errorf("%d orders with their order.created, want %d", c, n+1)
	}
	commits, placed := perCommit(t, b)
	if placed != n+1 {
		t.Errorf("jetsaga_orders_per_commit counts %d orders placed together, want %d", placed, n+1)
	}
	if commits >= n+1 {
		t.Errorf("%d transactions for %d orders: none shared", commits, n+1)
	}
	// Every order.created was handed to the relay with its row's seq.
	rows, err := b.pool.Query(t.Context(), `SELECT event_id::text, seq FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &seq}, func() error {
		if got, ok := b.handed.Load(id); !ok || got.(int64) != seq {
			t.Errorf("outbox row %d (%s) handed to the relay as %v", seq, id, got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// perCommit reads jetsaga_orders_per_commit: transactions and the orders
// they placed.
func perCommit(t *testing.T, b bundle) (commits, orders uint64) {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "jetsaga_orders_per_commit" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), uint64(h.GetSampleSum())
		}
	}
	t.Fatal("jetsaga_orders_per_commit is not registered")
	return 0, 0
}
