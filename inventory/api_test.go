package inventory

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// server starts the service's routes on a test HTTP server.
func (b bundle) server(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	b.svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request and returns the status and body.
func do(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, url, ct)
	}
	return resp.StatusCode, b
}

func decodeJSON[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func TestGetStock(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]int{"sku-2": 5, "sku-1": 100, "A": 1})
	b.mustApply(t, created(t, "o1", item("sku-1", 4, 100)))
	srv := b.server(t)

	status, body := do(t, "GET", srv.URL+"/stock", "")
	if status != http.StatusOK {
		t.Fatalf("GET /stock: %d %s", status, body)
	}
	want := []Stock{
		{SKU: "A", Available: 1, Initial: 1},
		{SKU: "sku-1", Available: 96, Reserved: 4, Initial: 100},
		{SKU: "sku-2", Available: 5, Initial: 5},
	}
	if got := decodeJSON[[]Stock](t, body); !slices.Equal(got, want) {
		t.Errorf("GET /stock = %+v, want %+v", got, want)
	}
	// The field names are the API.
	if !strings.Contains(string(body), `{"sku":"A","available":1,"reserved":0,"sold":0,"initial":1,"adjusted":0}`) {
		t.Errorf("GET /stock body %s does not spell the fields as documented", body)
	}

	tests := []struct {
		path       string
		wantStatus int
		want       Stock
	}{
		{"/stock/sku-1", http.StatusOK, Stock{SKU: "sku-1", Available: 96, Reserved: 4, Initial: 100}},
		{"/stock/nope", http.StatusNotFound, Stock{}},
		{"/stock/bad.sku", http.StatusNotFound, Stock{}},
	}
	for _, tt := range tests {
		status, body := do(t, "GET", srv.URL+tt.path, "")
		if status != tt.wantStatus {
			t.Errorf("GET %s: %d %s, want %d", tt.path, status, body, tt.wantStatus)
			continue
		}
		if status == http.StatusOK {
			if got := decodeJSON[Stock](t, body); got != tt.want {
				t.Errorf("GET %s = %+v, want %+v", tt.path, got, tt.want)
			}
		} else if e := decodeJSON[apiError](t, body); e.Error == "" {
			t.Errorf("GET %s: error body %s without an error", tt.path, body)
		}
	}
}

func TestGetStockEmpty(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	status, body := do(t, "GET", b.server(t).URL+"/stock", "")
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("GET /stock on no stock: %d %s, want 200 []", status, body)
	}
}

// TestPutStock sets stock while some of it is held and sold: initial stays
// what the SKU started with, each change is an adjustment recorded in
// stock_adjustments, and the invariant holds throughout.
func TestPutStock(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]int{"a": 10})
	b.mustApply(t, created(t, "o1", item("a", 3, 100)))
	b.mustApply(t, created(t, "o2", item("a", 2, 100)))
	b.mustApply(t, b.confirmed(t, "o2"))
	srv := b.server(t)

	steps := []struct {
		path, body string
		want       Stock
	}{
		{"/stock/a", `{"available": 20}`, Stock{SKU: "a", Available: 20, Reserved: 3, Sold: 2, Initial: 10, Adjusted: 15}},
		{"/stock/a", `{"available": 0}`, Stock{SKU: "a", Available: 0, Reserved: 3, Sold: 2, Initial: 10, Adjusted: -5}},
		{"/stock/a", `{"available": 0}`, Stock{SKU: "a", Available: 0, Reserved: 3, Sold: 2, Initial: 10, Adjusted: -5}},
		{"/stock/new_SKU-1", `{"available": 7}`, Stock{SKU: "new_SKU-1", Available: 7, Initial: 7}},
		{"/stock/zero", `{"available":0}`, Stock{SKU: "zero", Initial: 0}},
	}
	for _, st := range steps {
		status, body := do(t, "PUT", srv.URL+st.path, st.body)
		if status != http.StatusOK {
			t.Fatalf("PUT %s %s: %d %s", st.path, st.body, status, body)
		}
		if got := decodeJSON[Stock](t, body); got != st.want {
			t.Errorf("PUT %s %s = %+v, want %+v", st.path, st.body, got, st.want)
		}
		b.stock(t) // checks the invariant
	}

	// Releasing what was held before the PUTs keeps the invariant.
	b.mustApply(t, b.paymentFailed(t, "o1"))
	if got, want := b.stock(t)["a"], (Stock{SKU: "a", Available: 3, Sold: 2, Initial: 10, Adjusted: -5}); got != want {
		t.Errorf("after release: %+v, want %+v", got, want)
	}

	// Each PUT on an existing SKU is one recorded adjustment; creating a
	// SKU is its initial stock, not an adjustment.
	rows, err := b.pool.Query(t.Context(), `SELECT sku, delta, available_before, available_after FROM stock_adjustments ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type adj struct {
		SKU                  string
		Delta, Before, After int
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[adj])
	if err != nil {
		t.Fatal(err)
	}
	want := []adj{{"a", 15, 5, 20}, {"a", -20, 20, 0}, {"a", 0, 0, 0}}
	if !slices.Equal(got, want) {
		t.Errorf("stock_adjustments = %+v, want %+v", got, want)
	}
}

func TestPutStockBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]int{"a": 10})
	srv := b.server(t)
	tests := []struct {
		name       string
		path, body string
		wantStatus int
		wantFields []string // fields the error names; nil for a body-level error
	}{
		{"negative", "/stock/a", `{"available": -1}`, 400, []string{"available"}},
		{"too large", "/stock/a", `{"available": 1000000001}`, 400, []string{"available"}},
		{"beyond int64", "/stock/a", `{"available": 99999999999999999999}`, 400, []string{"available"}},
		{"fraction", "/stock/a", `{"available": 1.5}`, 400, []string{"available"}},
		{"string", "/stock/a", `{"available": "5"}`, 400, []string{"available"}},
		{"null", "/stock/a", `{"available": null}`, 400, []string{"available"}},
		{"missing", "/stock/a", `{}`, 400, []string{"available"}},
		{"unknown field", "/stock/a", `{"available": 5, "reserved": 1}`, 400, []string{"reserved"}},
		{"wrong case is unknown", "/stock/a", `{"Available": 5}`, 400, []string{"Available", "available"}},
		{"bad sku", "/stock/a.b", `{"available": 5}`, 400, []string{"sku"}},
		{"bad sku and value", "/stock/a.b", `{"available": -5}`, 400, []string{"available", "sku"}},
		{"sku too long", "/stock/" + strings.Repeat("x", 65), `{"available": 5}`, 400, []string{"sku"}},
		{"empty body", "/stock/a", ``, 400, nil},
		{"malformed", "/stock/a", `{"available": `, 400, nil},
		{"array", "/stock/a", `[5]`, 400, nil},
		{"trailing data", "/stock/a", `{"available": 5} {}`, 400, nil},
		{"too large body", "/stock/a", `{"available": 5, "pad": "` + strings.Repeat("x", 70<<10) + `"}`, 413, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(t, "PUT", srv.URL+tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", status, body, tt.wantStatus)
			}
			e := decodeJSON[apiError](t, body)
			if e.Error == "" {
				t.Errorf("error body %s without an error", body)
			}
			var got []string
			for f := range e.Fields {
				got = append(got, f)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantFields) {
				t.Errorf("fields %v, want %v (body %s)", got, tt.wantFields, body)
			}
		})
	}
	if got, want := b.stock(t)["a"], (Stock{SKU: "a", Available: 10, Initial: 10}); got != want {
		t.Errorf("stock after bad PUTs %+v, want unchanged %+v", got, want)
	}
}

func TestConsumers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	cs := b.svc.Consumers()
	type row struct {
		stream, durable string
		subjects        []string
	}
	want := []row{
		{stream.Orders, "inventory-orders", []string{"order.created.>", "order.confirmed.>", "order.cancelled.>"}},
		{stream.Payments, "inventory-payments", []string{"payment.failed.>"}},
	}
	if len(cs) != len(want) {
		t.Fatalf("%d consumers, want %d", len(cs), len(want))
	}
	for i, c := range cs {
		if c.Stream != want[i].stream || c.Durable != want[i].durable || !slices.Equal(c.Subjects, want[i].subjects) || c.Handle == nil {
			t.Errorf("consumer %d = %s %s %v, want %+v", i, c.Stream, c.Durable, c.Subjects, want[i])
		}
	}
	spec := Spec(Config{})
	if spec.Name != "inventory" || spec.Schema != "inventory" || spec.Migrations == nil || spec.New == nil {
		t.Errorf("Spec = %+v", spec)
	}
}

// PUT /stock/{sku} is an operator endpoint: with --admin-token-file it
// takes the bearer token, 401 without it or with another; GET stays open.
func TestPutStockRequiresToken(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("tok-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	guard, err := service.NewAdminGuard(path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(&service.Runtime{Pool: testenv.Pool(t, Schema, Migrations()), Admin: guard}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		auth string
		want int
	}{{"", http.StatusUnauthorized}, {"Bearer tok-2", http.StatusUnauthorized}, {"Bearer tok-1", http.StatusOK}} {
		req, err := http.NewRequest(http.MethodPut, srv.URL+"/stock/a", strings.NewReader(`{"available": 5}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("PUT /stock/a with %q: %d, want %d", tt.auth, resp.StatusCode, tt.want)
		}
	}
	if status, _ := do(t, "GET", srv.URL+"/stock/a", ""); status != http.StatusOK {
		t.Errorf("GET /stock/a: %d, want 200 without a token", status)
	}
}
