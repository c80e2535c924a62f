package main

import (
	"context"
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
	key := fs.String("idempotency-key", "", "Idempotency-Key header (retrying with the same key places one order)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *customer == "" || len(items) == 0 {
		return errors.New("--customer and at least one --item are required")
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	id, err := placeOrder(ctx, hc, ep.orderURL, orderRequest{CustomerID: *customer, Items: items}, *key)
	if err != nil {
		return err
	}
	fmt.Println(id)
	if !*wait {
		return nil
	}
	v, err := waitTerminal(ctx, hc, ep.readmodelURL, id, *timeout)
	if err != nil {
		return err
	}
	printView(os.Stdout, v)
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
