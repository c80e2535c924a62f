package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
)

func TestPlace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		status        int
		header        map[string]string
		body          string
		want          client.Placed
		wantErr       string
		wantRetryable bool
	}{
		{name: "accepted", status: 202, body: `{"order_id":"o-1","status":"PENDING"}`, want: client.Placed{OrderID: "o-1"}},
		{name: "replayed", status: 202, header: map[string]string{"Idempotent-Replayed": "true"}, body: `{"order_id":"o-1"}`,
			want: client.Placed{OrderID: "o-1", Replayed: true}},
		{name: "unavailable", status: 503, body: "starting\n", wantErr: "place order: 503 Service Unavailable: starting", wantRetryable: true},
		{name: "internal error", status: 500, body: `{"error":"db down"}`, wantErr: "500 Internal Server Error", wantRetryable: true},
		{name: "key reused", status: 422, body: `{"error":"Idempotency-Key was already used"}`, wantErr: "422 Unprocessable Entity"},
		{name: "invalid", status: 400, body: `{"error":"invalid order"}`, wantErr: "400 Bad Request"},
		{name: "no order id", status: 202, body: `{}`, wantErr: "place order: unexpected answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.Method != http.MethodPost || r.URL.Path != "/orders" || r.Header.Get("Idempotency-Key") != "k-1" ||
					!strings.Contains(string(body), `"customer_id":"c1"`) || !strings.Contains(string(body), `"unit_price_cents":250`) {
					http.Error(w, "unexpected request", http.StatusTeapot)
					return
				}
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := &client.Client{OrderURL: srv.URL}
			got, err := c.Place(context.Background(), client.Order{CustomerID: "c1", Items: []client.Item{{SKU: "s", Qty: 2, UnitPriceCents: 250}}}, "k-1")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Place error = %v, want %q", err, tc.wantErr)
				}
				if client.Retryable(err) != tc.wantRetryable {
					t.Fatalf("Retryable(%v) = %v, want %v", err, !tc.wantRetryable, tc.wantRetryable)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Place = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPlaceUnreachableIsRetryable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	c := &client.Client{OrderURL: url}
	_, err := c.Place(context.Background(), client.Order{CustomerID: "c1"}, "k")
	if err == nil || !client.Retryable(err) {
		t.Fatalf("Place on a closed port: %v, want a retryable error", err)
	}
	if client.Retryable(nil) {
		t.Fatal("Retryable(nil) = true")
	}
	if client.Retryable(errors.New("x")) != true {
		t.Fatal("a transport error is retryable")
	}
}

func TestWaitTerminal(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/orders/o-1" {
			http.NotFound(w, r)
			return
		}
		switch calls.Add(1) {
		case 1:
			http.NotFound(w, r) // not projected yet
		case 2:
			_, _ = io.WriteString(w, `{"order_id":"o-1","status":"RESERVED"}`)
		default:
			_, _ = io.WriteString(w, `{"order_id":"o-1","status":"CONFIRMED","version":4,"timeline":[{"event_type":"order.created"}]}`)
		}
	}))
	defer srv.Close()
	c := &client.Client{ReadmodelURL: srv.URL}
	v, err := c.WaitTerminal(context.Background(), "o-1", 10*time.Second)
	if err != nil || v.Status != "CONFIRMED" || !v.Terminal() || v.Version != 4 || len(v.Timeline) != 1 {
		t.Fatalf("WaitTerminal = %+v, %v", v, err)
	}

	if _, found, err := c.Get(context.Background(), "o-2"); found || err != nil {
		t.Fatalf("Get of an unknown order: found %v, err %v", found, err)
	}
	_, err = c.WaitTerminal(context.Background(), "o-2", 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not terminal after 100ms") {
		t.Fatalf("WaitTerminal of an order that never ends: %v", err)
	}
}
