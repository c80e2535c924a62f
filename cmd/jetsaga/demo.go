package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/jetsaga/jetsaga/internal/access"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/stack"
)

// Demo stock: plenty of three SKUs and a deliberately scarce one.
const (
	demoSeed        = "sku-apple=5000,sku-pear=5000,sku-plum=5000,sku-scarce=12"
	demoDeclineOver = 20000 // cents: payment declines bigger charges
)

// demoOrder is the scripted order number i of n: most are confirmed, every
// tenth is too expensive (declined by payment, so its stock is released),
// every eighth wants the scarce SKU (some run out of stock), and a few name
// a SKU that does not exist.
func demoOrder(i int) orderRequest {
	customer := fmt.Sprintf("cust-%03d", i%37)
	switch {
	case i%50 == 49:
		return orderRequest{CustomerID: customer, Items: []item{{SKU: "sku-ghost", Qty: 1, UnitPriceCents: 500}}}
	case i%10 == 7:
		return orderRequest{CustomerID: customer, Items: []item{{SKU: "sku-plum", Qty: 3, UnitPriceCents: 9000}}}
	case i%8 == 3:
		return orderRequest{CustomerID: customer, Items: []item{{SKU: "sku-scarce", Qty: 1, UnitPriceCents: 4999}, {SKU: "sku-apple", Qty: 1, UnitPriceCents: 120}}}
	default:
		skus := []string{"sku-apple", "sku-pear", "sku-plum"}
		its := []item{{SKU: skus[i%3], Qty: 1 + i%4, UnitPriceCents: int64(100 + 37*(i%50))}}
		if i%3 == 0 {
			its = append(its, item{SKU: skus[(i+1)%3], Qty: 2, UnitPriceCents: 250})
		}
		return orderRequest{CustomerID: customer, Items: its}
	}
}

func demo(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	orders := fs.Int("orders", 240, "orders to place")
	concurrency := fs.Int("concurrency", 8, "orders placed at once")
	keep := fs.Bool("keep", false, "leave the stack running afterwards (stop it with: bin/jetsaga down --run-dir .run/demo)")
	if err := parse(fs, args); err != nil {
		return err
	}
	began := time.Now()
	c, err := demoStack("demo")
	if err != nil {
		return err
	}
	log := cliLogger()

	step := func(format string, a ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, a...))
	}
	step("fresh stack in %s", c.RunDir)
	if err := os.RemoveAll(c.RunDir); err != nil {
		return err
	}
	if err := stack.Up(ctx, c, log); err != nil {
		_ = stack.Down(context.WithoutCancel(ctx), c, log)
		return fmt.Errorf("start the stack: %w", err)
	}
	if !*keep {
		defer func() {
			step("tearing the stack down")
			if derr := stack.Down(context.WithoutCancel(ctx), c, log); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	step("stack up: nats-server, postgres and four services (logs in %s/logs)", c.RunDir)

	step("placing %d orders, %d at a time", *orders, *concurrency)
	client := &http.Client{Timeout: 10 * time.Second}
	ids, err := placeAll(ctx, client, c.URL("order"), *orders, *concurrency)
	if err != nil {
		return err
	}
	step("placed %d orders; waiting for every saga to end", len(ids))
	for _, id := range ids {
		if _, err := waitTerminal(ctx, client, c.URL("readmodel"), id, 2*time.Minute); err != nil {
			return err
		}
	}

	pool, err := openDB(ctx, c.DatabaseURL())
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, js, err := connectNATSAs(c.NATSURL(), access.Client{})
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := check.Quiesce(ctx, check.OneDB(pool), js, time.Minute); err != nil {
		return fmt.Errorf("quiescence: %w", err)
	}
	step("quiescent: every outbox empty, every consumer caught up")

	fmt.Println()
	if err := outcomeTable(ctx, os.Stdout, pool); err != nil {
		return err
	}
	fmt.Println()
	rep, err := check.Run(ctx, check.OneDB(pool), js, check.Options{})
	if err != nil {
		return err
	}
	fmt.Println("jetsaga check:")
	rep.Write(os.Stdout)
	fmt.Println()
	if *keep {
		printWatchHelp(os.Stdout, c, ids)
	} else {
		fmt.Println("To look at the events with the nats CLI afterwards, run bin/jetsaga demo --keep: it leaves this stack running and prints the commands.")
	}
	step("demo took %s", time.Since(began).Round(100*time.Millisecond))
	if !rep.OK() {
		return exitError{code: 1}
	}
	return nil
}

// demoStack is the demo's stack, in .run/<sub>: its stock and its payment
// rules on top of the environment's.
func demoStack(sub string) (stack.Config, error) {
	c, err := stackIn("", "", sub)
	if err != nil {
		return c, err
	}
	c.Flags["inventory"] = strings.TrimSpace("--seed-stock " + demoSeed + " " + c.Flags["inventory"])
	c.Flags["payment"] = strings.TrimSpace(fmt.Sprintf("--decline-over-cents %d --decline-rate 0.03 --seed 7 %s", demoDeclineOver, c.Flags["payment"]))
	return c, nil
}

func placeAll(ctx context.Context, client *http.Client, orderURL string, n, concurrency int) ([]string, error) {
	ids := make([]string, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(concurrency, 1) {
		wg.Go(func() {
			for i := range next {
				ids[i], errs[i] = placeOrder(ctx, client, orderURL, demoOrder(i), fmt.Sprintf("demo-%d", i))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return ids, errors.Join(errs...)
}

// outcomeTable prints orders by outcome from the order service, with the
// read model's view of the same orders, stock and payments.
func outcomeTable(ctx context.Context, w io.Writer, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, `
		SELECT o.status, o.reason, count(*), coalesce(sum(o.total_cents), 0),
		       count(*) FILTER (WHERE v.status = o.status),
		       count(p.order_id) FILTER (WHERE p.status = 'COMPLETED'),
		       count(p.order_id) FILTER (WHERE p.status = 'FAILED')
		FROM orders.orders o
		LEFT JOIN readmodel.order_views v USING (order_id)
		LEFT JOIN payment.payments p USING (order_id)
		GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return fmt.Errorf("outcomes: %w", err)
	}
	defer rows.Close()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STATUS\tREASON\tORDERS\tTOTAL (cents)\tREAD MODEL AGREES\tCHARGED\tDECLINED\t")
	for rows.Next() {
		var (
			status, reason                   string
			n, total, agree, charged, failed int64
		)
		if err := rows.Scan(&status, &reason, &n, &total, &agree, &charged, &failed); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", status, reason, n, total, agree, charged, failed)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	tw.Flush()
	fmt.Fprintln(w)

	srows, err := pool.Query(ctx, `SELECT sku, initial, available, reserved, sold FROM inventory.stock ORDER BY sku`)
	if err != nil {
		return fmt.Errorf("stock: %w", err)
	}
	defer srows.Close()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SKU\tINITIAL\tAVAILABLE\tHELD\tSOLD\t")
	for srows.Next() {
		var (
			sku                                string
			initial, available, reserved, sold int64
		)
		if err := srows.Scan(&sku, &initial, &available, &reserved, &sold); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", sku, initial, available, reserved, sold)
	}
	tw.Flush()
	return srows.Err()
}

// printWatchHelp prints the commands that look at the stack the demo left
// running (--keep), and how to stop it.
func printWatchHelp(w io.Writer, c stack.Config, ids []string) {
	id := ""
	if len(ids) > 0 {
		id = ids[len(ids)-1]
	}
	s := "--server " + c.NATSURL()
	fmt.Fprintf(w, `The stack is still running (--keep). See the sagas live in the dashboard:
  %[4]s
  %[4]s#/orders/%[2]s   # one saga's timeline
Look at what happened with the nats CLI (make tools installs bin/nats):
  bin/nats %[1]s stream ls
  bin/nats %[1]s sub 'order.>' 'inventory.>' 'payment.>'   # live: every saga event, once each
  bin/nats %[1]s stream view ORDERS --subject 'order.*.%[5]s'   # the order's shard: its events among others' (bin/jetsaga subject %[2]s)
  bin/nats %[1]s consumer info INVENTORY payment-inventory
  bin/nats %[1]s stream view DLQ                     # dead letters, with their error header
  bin/jetsaga trace %[2]s
Stop it with: bin/jetsaga down --run-dir %[3]s
`, s, id, c.RunDir, dashboardURL(c), event.Shard(id))
}
