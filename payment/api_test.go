package payment

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestGetPayment(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{DeclineOverCents: 1000})
	before := time.Now().Add(-time.Minute)
	b.apply(t, reserved(t, "ok-1", 999))
	b.apply(t, reserved(t, "big-1", 5000))
	mux := http.NewServeMux()
	b.svc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	stored := map[string]Payment{}
	for _, p := range b.payments(t) {
		stored[p.OrderID] = p
	}
	tests := []struct {
		id         string
		wantStatus int
		want       Payment
	}{
		{"ok-1", 200, Payment{OrderID: "ok-1", PaymentID: stored["ok-1"].PaymentID, AmountCents: 999, Status: Completed}},
		{"big-1", 200, Payment{OrderID: "big-1", PaymentID: stored["big-1"].PaymentID, AmountCents: 5000, Status: Failed, Reason: ReasonDeclinedOverLimit}},
		{"nope", 404, Payment{}},
		{"not.an.id", 404, Payment{}},
	}
	for _, tt := range tests {
		resp, err := http.Get(srv.URL + "/payments/" + tt.id)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("GET /payments/%s: %d %s, want %d", tt.id, resp.StatusCode, body, tt.wantStatus)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET /payments/%s: Content-Type %q", tt.id, ct)
		}
		if tt.wantStatus != 200 {
			var e apiError
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("GET /payments/%s: error body %s", tt.id, body)
			}
			continue
		}
		// The field names are the API.
		var fields map[string]any
		if err := json.Unmarshal(body, &fields); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"order_id", "payment_id", "amount_cents", "status", "reason", "created_at"} {
			if _, ok := fields[f]; !ok {
				t.Errorf("GET /payments/%s: no field %q in %s", tt.id, f, body)
			}
		}
		var got Payment
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("GET /payments/%s: created_at %v, want about now", tt.id, got.CreatedAt)
		}
		got.CreatedAt = time.Time{}
		if got != tt.want {
			t.Errorf("GET /payments/%s = %+v, want %+v", tt.id, got, tt.want)
		}
	}
}
