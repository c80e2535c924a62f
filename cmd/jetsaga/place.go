package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetsaga/jetsaga/client"
)

// The CLI's names for the client's types.
type (
	item         = client.Item
	orderRequest = client.Order
	view         = client.View
)

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
	ep.flags(fs, "order-url", "readmodel-url")
	customer := fs.String("customer", "", "customer id (required)")
	fs.Var(&items, "item", "an item SKU:QTY:PRICE_CENTS (repeat for more)")
	wait := fs.Bool("wait", false, "wait until the order is CONFIRMED or CANCELLED in the read model and print its timeline")
	timeout := fs.Duration("timeout", time.Minute, "how long --wait waits")
	key := fs.String("idempotency-key", "", "Idempotency-Key header (retrying with the same key places one order; with --count, order i gets KEY-i)")
	count := fs.Int("count", 1, "place this many orders like it, one after the other (with --wait: then wait for all and print one line each)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *customer == "" || len(items) == 0 {
		return errors.New("--customer and at least one --item are required")
	}
	if *count < 1 {
		return fmt.Errorf("--count %d: want ≥ 1", *count)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	ids := make([]string, 0, *count)
	for i := range *count {
		k := *key
		if k != "" && *count > 1 {
			k = fmt.Sprintf("%s-%d", k, i)
		}
		id, err := placeOrder(ctx, hc, ep.orderURL, orderRequest{CustomerID: *customer, Items: items}, k)
		if err != nil {
			return err
		}
		fmt.Println(id)
		ids = append(ids, id)
	}
	if !*wait {
		return nil
	}
	if len(ids) == 1 {
		v, err := waitTerminal(ctx, hc, ep.readmodelURL, ids[0], *timeout)
		if err != nil {
			return err
		}
		printView(os.Stdout, v)
		return nil
	}
	byStatus := map[string]int{}
	deadline := time.Now().Add(*timeout)
	for _, id := range ids {
		v, err := waitTerminal(ctx, hc, ep.readmodelURL, id, max(time.Until(deadline), time.Millisecond))
		if err != nil {
			return err
		}
		outcome := v.Status
		if v.Reason != "" {
			outcome += " (" + v.Reason + ")"
		}
		byStatus[outcome]++
	}
	fmt.Printf("%d orders ended:", len(ids))
	for _, outcome := range slices.Sorted(maps.Keys(byStatus)) {
		fmt.Printf("  %d %s", byStatus[outcome], outcome)
	}
	fmt.Println()
	return nil
}

func placeOrder(ctx context.Context, hc *http.Client, orderURL string, req orderRequest, idemKey string) (string, error) {
	c := &client.Client{HTTP: hc, OrderURL: orderURL}
	placed, err := c.Place(ctx, req, idemKey)
	return placed.OrderID, err
}

// waitTerminal polls the read model with backoff until the order is
// CONFIRMED or CANCELLED.
func waitTerminal(ctx context.Context, hc *http.Client, readmodelURL, id string, timeout time.Duration) (view, error) {
	c := &client.Client{HTTP: hc, ReadmodelURL: readmodelURL}
	return c.WaitTerminal(ctx, id, timeout)
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
