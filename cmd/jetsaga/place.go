package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type item struct {
	SKU            string `json:"sku"`
	Qty            int    `json:"qty"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type orderRequest struct {
	CustomerID string `json:"customer_id"`
	Items      []item `json:"items"`
}

// itemsFlag collects --item SKU:QTY:PRICE_CENTS.
type itemsFlag []item

func (f *itemsFlag) String() string { return fmt.Sprint(*f) }
func (f *itemsFlag) Set(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return fmt.Errorf("item %q: want SKU:QTY:PRICE_CENTS", s)
	}
	qty, err := strconv.Atoi(parts[1])
	if err != nil {
		return fmt.Errorf("item %q: quantity: %w", s, err)
	}
	price, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return fmt.Errorf("item %q: price in cents: %w", s, err)
	}
	*f = append(*f, item{SKU: parts[0], Qty: qty, UnitPriceCents: price})
	return nil
}

func place(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("place", flag.ContinueOnError)
	var (
		ep    endpoints
		items itemsFlag
	)
	ep.flags(fs)
	customer := fs.String("customer", "", "customer id (required)")
	fs.Var(&items, "item", "an item SKU:QTY:PRICE_CENTS (repeat for more)")
	wait := fs.Bool("wait", false, "wait until the order is CONFIRMED or CANCELLED in the read model and print its timeline")
	timeout := fs.Duration("timeout", time.Minute, "how long --wait waits")
	key := fs.String("idempotency-key", "", "Idempotency-Key header (retrying with the same key places one order)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *customer == "" || len(items) == 0 {
		return errors.New("--customer and at least one --item are required")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	id, err := placeOrder(ctx, client, ep.orderURL, orderRequest{CustomerID: *customer, Items: items}, *key)
	if err != nil {
		return err
	}
	fmt.Println(id)
	if !*wait {
		return nil
	}
	v, err := waitTerminal(ctx, client, ep.readmodelURL, id, *timeout)
	if err != nil {
		return err
	}
	printView(os.Stdout, v)
	return nil
}

func placeOrder(ctx context.Context, client *http.Client, orderURL string, req orderRequest, idemKey string) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, orderURL+"/orders", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	hr.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		hr.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := client.Do(hr)
	if err != nil {
		return "", fmt.Errorf("place order: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("place order: %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	var out struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.OrderID == "" {
		return "", fmt.Errorf("place order: unexpected answer %q", raw)
	}
	return out.OrderID, nil
}

type timelineEntry struct {
	EventID     string    `json:"event_id"`
	EventType   string    `json:"event_type"`
	OccurredAt  time.Time `json:"occurred_at"`
	ProjectedAt time.Time `json:"projected_at"`
	LagMS       float64   `json:"lag_ms"`
}

type view struct {
	OrderID    string          `json:"order_id"`
	CustomerID string          `json:"customer_id"`
	Status     string          `json:"status"`
	Reason     string          `json:"reason"`
	TotalCents int64           `json:"total_cents"`
	Version    int             `json:"version"`
	LagMS      float64         `json:"lag_ms"`
	Timeline   []timelineEntry `json:"timeline"`
}

func (v view) terminal() bool { return v.Status == "CONFIRMED" || v.Status == "CANCELLED" }

// getView reads one order from the read model; found is false on 404 (not
// projected yet).
func getView(ctx context.Context, client *http.Client, readmodelURL, id string) (v view, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, readmodelURL+"/orders/"+id, nil)
	if err != nil {
		return v, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return v, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return v, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return v, false, fmt.Errorf("read model: %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, false, fmt.Errorf("read model: %w", err)
	}
	return v, true, nil
}

// waitTerminal polls the read model with backoff until the order is
// CONFIRMED or CANCELLED.
func waitTerminal(ctx context.Context, client *http.Client, readmodelURL, id string, timeout time.Duration) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		v, found, err := getView(ctx, client, readmodelURL, id)
		if err == nil && found && v.terminal() {
			return v, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return v, fmt.Errorf("order %s not terminal after %s: %w", id, timeout, err)
			}
			return v, fmt.Errorf("order %s not terminal after %s (status %q)", id, timeout, v.Status)
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

func printView(w io.Writer, v view) {
	fmt.Fprintf(w, "order %s  customer %s  total %d cents\nstatus %s", v.OrderID, v.CustomerID, v.TotalCents, v.Status)
	if v.Reason != "" {
		fmt.Fprintf(w, " (%s)", v.Reason)
	}
	fmt.Fprintf(w, "  version %d  read-model lag %.1fms\n", v.Version, v.LagMS)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  EVENT\tOCCURRED AT\tLAG")
	for _, e := range v.Timeline {
		fmt.Fprintf(tw, "  %s\t%s\t%.1fms\n", e.EventType, e.OccurredAt.UTC().Format("15:04:05.000000"), e.LagMS)
	}
	tw.Flush()
}
