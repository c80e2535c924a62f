package order

import (
	"net/http"
	"strings"
	"testing"
)

// POST /orders is strict about what it takes (issue 10): a body not declared
// application/json is 415 (any web page may send text/plain without a CORS
// preflight); a key spelt another way or given twice is an unknown field;
// no error echoes more than 64 bytes of what it was sent.
func TestPlaceOrderStrict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := server(t, b)
	long := strings.Repeat("x", 60_000)
	tests := []struct {
		name        string
		body        string
		contentType string
		wantStatus  int
		wantError   string
	}{
		{"text/plain", validBody, "text/plain", http.StatusUnsupportedMediaType, "Content-Type must be application/json"},
		{"form", validBody, "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType, "Content-Type must be application/json"},
		{"json with charset", validBody, "application/json; charset=utf-8", http.StatusAccepted, ""},
		{"CUSTOMER_ID", `{"CUSTOMER_ID":"c1","items":[{"sku":"a","qty":1,"unit_price_cents":1}]}`, "", http.StatusBadRequest, `unknown field "CUSTOMER_ID"`},
		{"SKU", `{"customer_id":"c1","items":[{"SKU":"a","qty":1,"unit_price_cents":1}]}`, "", http.StatusBadRequest, `unknown field "SKU"`},
		{"customer_id twice", `{"customer_id":"c1","customer_id":"c2","items":[{"sku":"a","qty":1,"unit_price_cents":1}]}`, "", http.StatusBadRequest, `"customer_id" given twice`},
		{"qty twice", `{"customer_id":"c1","items":[{"sku":"a","qty":1,"qty":1000,"unit_price_cents":1}]}`, "", http.StatusBadRequest, `"qty" given twice`},
		{"long unknown key", `{"` + long + `":1}`, "", http.StatusBadRequest, "bytes)"},
		{"long content type", validBody, "text/" + long[:5000], http.StatusUnsupportedMediaType, "bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h map[string]string
			if tt.contentType != "" {
				h = map[string]string{"Content-Type": tt.contentType}
			}
			res := post(t, srv, tt.body, h)
			if res.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %.200s", res.status, tt.wantStatus, res.body)
			}
			if tt.wantError != "" {
				er := decodeBody[ErrorResponse](t, res)
				if !strings.Contains(er.Error, tt.wantError) {
					t.Errorf("error %q, want it to say %q", er.Error, tt.wantError)
				}
			}
			if len(res.body) > 512 {
				t.Errorf("answer of %d bytes: an invalid value echoed in full", len(res.body))
			}
		})
	}
}
