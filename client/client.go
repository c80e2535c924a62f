// Package client is a small HTTP client of jetsaga's public APIs: place an
// order at the order service (with an Idempotency-Key) and read it back from
// the read model. The jetsaga CLI and the chaos run use it.
package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Item is one line of an order.
type Item struct {
	SKU            string `json:"sku"`
	Qty            int    `json:"qty"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Order is the body of POST /orders.
type Order struct {
	CustomerID string `json:"customer_id"`
	Items      []Item `json:"items"`
}

// TimelineEntry is one event of an order as the read model shows it.
type TimelineEntry struct {
	EventID     string    `json:"event_id"`
	EventType   string    `json:"event_type"`
	OccurredAt  time.Time `json:"occurred_at"`
	ProjectedAt time.Time `json:"projected_at"`
	LagMS       float64   `json:"lag_ms"`
}

// View is an order as the read model serves it (GET /orders/{id}).
type View struct {
	OrderID    string          `json:"order_id"`
	CustomerID string          `json:"customer_id"`
	Status     string          `json:"status"`
	Reason     string          `json:"reason"`
	TotalCents int64           `json:"total_cents"`
	Version    int             `json:"version"`
	LagMS      float64         `json:"lag_ms"`
	Timeline   []TimelineEntry `json:"timeline"`
}

// Terminal reports whether the order is CONFIRMED or CANCELLED.
func (v View) Terminal() bool { return v.Status == "CONFIRMED" || v.Status == "CANCELLED" }

// Placed is the order service's answer to POST /orders.
type Placed struct {
	OrderID string
	// Replayed: the Idempotency-Key had been used before with the same
	// body, so this answer is the earlier order's and nothing was placed.
	Replayed bool
}

// StatusError is an HTTP answer other than the one expected.
type StatusError struct {
	Code   int    // e.g. 503
	Status string // e.g. "503 Service Unavailable"
	Body   string // the answer's body, trimmed
}

func (e *StatusError) Error() string { return e.Status + ": " + e.Body }

// errUnexpected is a 2xx answer that does not say what it should.
var errUnexpected = errors.New("unexpected answer")

// Retryable reports whether a request that failed with err may succeed when
// sent again unchanged: the service could not be reached or did not answer
// in time (it may be down or restarting), or answered 5xx or 429. Placing
// again is safe with the same Idempotency-Key.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests
	}
	return !errors.Is(err, errUnexpected)
}

// Client talks to the order service and the read model.
type Client struct {
	HTTP         *http.Client // default: a client with a 10s timeout
	OrderURL     string       // e.g. http://127.0.0.1:8081
	ReadmodelURL string       // e.g. http://127.0.0.1:8084
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

func (c *Client) http() *http.Client { return cmp.Or(c.HTTP, defaultHTTP) }

// Place sends POST /orders. A non-empty key goes in the Idempotency-Key
// header: sending the same order again with the same key places it once.
func (c *Client) Place(ctx context.Context, o Order, key string) (Placed, error) {
	body, err := json.Marshal(o)
	if err != nil {
		return Placed{}, fmt.Errorf("place order: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.OrderURL+"/orders", bytes.NewReader(body))
	if err != nil {
		return Placed{}, fmt.Errorf("place order: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return Placed{}, fmt.Errorf("place order: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return Placed{}, fmt.Errorf("place order: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return Placed{}, fmt.Errorf("place order: %w", &StatusError{Code: resp.StatusCode, Status: resp.Status, Body: strings.TrimSpace(string(raw))})
	}
	var out struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.OrderID == "" {
		return Placed{}, fmt.Errorf("place order: %w %q", errUnexpected, raw)
	}
	return Placed{OrderID: out.OrderID, Replayed: resp.Header.Get("Idempotent-Replayed") == "true"}, nil
}

// Get reads one order from the read model; found is false on 404 (not
// projected yet).
func (c *Client) Get(ctx context.Context, id string) (v View, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.ReadmodelURL+"/orders/"+id, nil)
	if err != nil {
		return v, false, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return v, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return v, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return v, false, fmt.Errorf("read model: %w", &StatusError{Code: resp.StatusCode, Status: resp.Status, Body: strings.TrimSpace(string(raw))})
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, false, fmt.Errorf("read model: %w", err)
	}
	return v, true, nil
}

// WaitTerminal polls the read model with backoff until the order is
// CONFIRMED or CANCELLED, for at most timeout.
func (c *Client) WaitTerminal(ctx context.Context, id string, timeout time.Duration) (View, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		v, found, err := c.Get(ctx, id)
		if err == nil && found && v.Terminal() {
			return v, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if err != nil {
				return v, fmt.Errorf("order %s not terminal after %s: %w", id, timeout, err)
			}
			return v, fmt.Errorf("order %s not terminal after %s (status %q)", id, timeout, v.Status)
		case <-t.C:
		}
		wait = min(wait*2, time.Second)
	}
}
