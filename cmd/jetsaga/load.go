package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/jetsaga/jetsaga/internal/access"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/jetsaga/jetsaga/load"
)

// loadFlags are the flags of jetsaga load that bench shares.
type loadFlags struct {
	inventoryURL string
	mix          string
	declinePrice int64
	skus         int
	drain        time.Duration
	tokenFile    *string
}

func (l *loadFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.inventoryURL, "inventory-url", localStack("").URL("inventory"), "inventory service HTTP API (the load seeds its stock there)")
	fs.StringVar(&l.mix, "mix", "confirm=80,decline=10,oos=10", "weights of the orders' intended outcomes: confirm (in stock, cheap), decline (priced over payment's limit), oos (a SKU set to zero stock)")
	fs.Int64Var(&l.declinePrice, "decline-price-cents", load.DefaultDeclinePriceCents, "price of a decline order: over the payment service's --decline-over-cents")
	fs.IntVar(&l.skus, "skus", load.DefaultSKUs, "confirmable SKUs the orders spread over (fewer: more contention on stock rows)")
	fs.DurationVar(&l.drain, "drain", load.DefaultDrain, "after the last order, wait this long for sagas to end; the rest are reported not terminal")
	l.tokenFile = adminTokenFlag(fs)
}

func loadCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var (
		ep endpoints // no database: the load uses the public APIs and NATS only
		lf loadFlags
	)
	c := localStack("")
	fs.StringVar(&ep.natsURL, "nats-url", c.NATSURL(), "NATS server (the load subscribes to the terminal events there)")
	ep.nats.AddFlags(fs, access.InboxPrefix(access.Reader))
	fs.StringVar(&ep.orderURL, "order-url", c.URL("order"), "order service HTTP API")
	fs.StringVar(&ep.readmodelURL, "readmodel-url", c.URL("readmodel"), "readmodel service HTTP API (the load reads the lag there)")
	lf.register(fs)
	rate := fs.Float64("rate", 0, "orders per second, sent on a fixed schedule (open loop); 0: closed loop with --concurrency")
	concurrency := fs.Int("concurrency", 128, "closed loop (--rate 0): sagas in flight; a new order is placed when one ends")
	duration := fs.Duration("duration", 30*time.Second, "place orders for this long (0: until --orders are placed)")
	orders := fs.Int("orders", 0, "place this many orders (0: until --duration is over; with both, whichever comes first)")
	runDir := fs.String("run-dir", ".run", "the stack's run folder: the CPU and memory of its processes are read through its pid files")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on stdout")
	if err := parse(fs, args); err != nil {
		return err
	}
	mix, err := load.ParseMix(lf.mix)
	if err != nil {
		return err
	}
	token, err := readAdminToken(*lf.tokenFile)
	if err != nil {
		return err
	}
	natsOpts, err := ep.nats.Options()
	if err != nil {
		return err
	}
	cfg := load.Config{
		NATSOptions: natsOpts, AdminToken: token,
		OrderURL: ep.orderURL, InventoryURL: lf.inventoryURL, ReadmodelURL: ep.readmodelURL, NATSURL: ep.natsURL,
		Rate: *rate, Concurrency: *concurrency, Duration: *duration, Orders: *orders, Mix: mix,
		DeclinePriceCents: lf.declinePrice, SKUs: lf.skus, Drain: lf.drain, RunDir: absRunDir(*runDir),
		Progress: progressReporter(os.Stderr),
	}
	res, err := load.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.Write(os.Stdout)
	return nil
}

// progressReporter shows the load's progress on w: a bar when w is a
// terminal, a plain line every five seconds otherwise.
func progressReporter(w *os.File) func(load.Progress) {
	describe := func(p load.Progress) string {
		rate := 0.0
		if s := p.Elapsed.Seconds(); s > 0 {
			rate = float64(p.Completed) / s
		}
		phase := ""
		if p.Draining {
			phase = "draining: "
		}
		return fmt.Sprintf("%s%d sent, %d done (%.0f/s), %d in flight, %d errors", phase, p.Placed, p.Completed, rate, p.InFlight, p.Errors)
	}
	if !term.IsTerminal(int(w.Fd())) {
		var last time.Duration
		return func(p load.Progress) {
			if p.Elapsed-last < 5*time.Second && p.Fraction < 1 {
				return
			}
			last = p.Elapsed
			fmt.Fprintf(w, "[%5.1fs] %s\n", p.Elapsed.Seconds(), describe(p))
		}
	}
	const steps = 1000
	bar := progressbar.NewOptions(steps, progressbar.OptionSetWriter(w), progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(false), progressbar.OptionShowDescriptionAtLineEnd())
	return func(p load.Progress) {
		bar.Describe(describe(p))
		_ = bar.Set(int(p.Fraction * steps))
		if p.Fraction >= 1 && p.InFlight == 0 {
			_ = bar.Finish()
			_, _ = io.WriteString(w, "\n")
		}
	}
}
