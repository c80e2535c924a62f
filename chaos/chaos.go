// Package chaos runs the saga under fire and checks that it kept its promise.
// It is what `jetsaga chaos` and `make chaos` run.
//
// Run starts a fresh stack (stack.Up: nats-server, a throwaway PostgreSQL
// and the four services under the supervisor, which restarts a service when
// it exits) with failure injection on in every service: crashes right after
// a commit (and in the outbox relay right after JetStream acked a publish),
// duplicate publishes and redeliveries. It places a scripted mix of orders
// at a steady rate, each with an Idempotency-Key and retried with the same
// key while the order service is down, and meanwhile it kill -9s a random
// service every few seconds, kill -9s nats-server once and starts it again on
// the same store, and stops PostgreSQL once with `pg_ctl stop -m immediate`
// and starts it again. Then it waits until every order is terminal in the
// read model and the system is quiet, runs the invariant checker (package
// check), and reports: orders and outcomes, faults injected by kind (counted
// in the services' logs, which survive the restarts), kills and restarts,
// how long the saga took to settle after the last order, and each invariant.
//
// Everything random in the run (the order mix, which service is killed)
// comes from one seed (math/rand/v2), and each service gets --inject-seed
// from it too; the interleaving of processes, and so the faults and the
// outcomes, still differ from run to run.
package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/stack"
)

// Options configure a chaos run. Start from Defaults.
type Options struct {
	// Stack is where the run's stack lives and how it is wired. Its RunDir is
	// removed first; the run adds its flags to each service's Flags.
	Stack stack.Config

	Orders  int     // orders to place
	Rate    float64 // orders per second
	Workers int     // orders placed at once (a slow or refused POST does not hold the others up)
	Seed    int64   // seeds the order mix and the kills; service i gets --inject-seed=Seed+i

	Crash     float64       // --inject-crash-after-commit of every service
	Duplicate float64       // --inject-duplicate-publish of every service
	Redeliver float64       // --inject-redeliver of every service
	AckWait   time.Duration // --ack-wait of every service: how soon a crashed service's messages come back
	// Deadline is the order service's --saga-deadline: short enough that,
	// with the kills, some sagas time out mid-way (cancelled with reason
	// timeout, stock released, charges refunded); 0 keeps the service's
	// default.
	Deadline time.Duration

	KillEvery time.Duration // kill -9 a random service this often; 0: never
	NATSKill  bool          // kill -9 nats-server once, a third of the way in, and start it again
	PGRestart bool          // pg_ctl stop -m immediate once, two thirds of the way in, and start it again

	// Poison is how many hostile messages to inject while the orders are
	// placed, spread over the placing time, in turn: a subject that nearly
	// fills the server's control line, a message near max_payload, a body
	// that is not JSON. Each must be refused by its stream or dead-lettered
	// by every consumer that takes it (the report accounts for each), and
	// no service may lose its connection over it.
	Poison int

	Timeout time.Duration // after the last order: how long to wait for every order to be terminal and the system quiet
	Keep    bool          // leave the stack running afterwards

	Log *zap.Logger // the stack's start and stop; default: none
}

// Defaults are the options of `make chaos`: 2,000 orders in 80 seconds with
// 5% crashes, duplicates and redeliveries on every service, a kill -9 every
// 4 seconds, one NATS crash and one Postgres crash.
func Defaults() Options {
	return Options{
		Orders: 2000, Rate: 25, Workers: 8, Seed: 1,
		Crash: 0.05, Duplicate: 0.05, Redeliver: 0.05, AckWait: 3 * time.Second, Deadline: 3 * time.Second,
		KillEvery: 4 * time.Second, NATSKill: true, PGRestart: true,
		Timeout: 2 * time.Minute,
	}
}

func (o Options) validate() error {
	var errs []error
	if o.Stack.Root == "" {
		errs = append(errs, errors.New("chaos: Stack.Root is required"))
	}
	if d := filepath.Clean(o.Stack.RunDir); o.Stack.RunDir == "" || d == "/" || d == filepath.Clean(o.Stack.Root) {
		errs = append(errs, fmt.Errorf("chaos: run folder %q: want a folder of its own (it is removed first)", o.Stack.RunDir))
	}
	if o.Orders <= 0 {
		errs = append(errs, fmt.Errorf("--orders=%d: want at least 1", o.Orders))
	}
	if !(o.Rate > 0) {
		errs = append(errs, fmt.Errorf("--rate=%v: want orders per second > 0", o.Rate))
	}
	if o.Workers <= 0 {
		errs = append(errs, fmt.Errorf("--workers=%d: want at least 1", o.Workers))
	}
	for name, p := range map[string]float64{"crash": o.Crash, "duplicate": o.Duplicate, "redeliver": o.Redeliver} {
		if !(p >= 0 && p <= 1) {
			errs = append(errs, fmt.Errorf("--%s=%v: want a probability between 0 and 1", name, p))
		}
	}
	if o.AckWait <= 0 {
		errs = append(errs, fmt.Errorf("--ack-wait=%s: want > 0", o.AckWait))
	}
	if o.Poison < 0 {
		errs = append(errs, fmt.Errorf("--poison=%d: want ≥ 0", o.Poison))
	}
	if o.KillEvery < 0 {
		errs = append(errs, fmt.Errorf("--kill-every=%s: want ≥ 0", o.KillEvery))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout=%s: want > 0", o.Timeout))
	}
	if o.Deadline < 0 {
		errs = append(errs, fmt.Errorf("--deadline=%s: want ≥ 0", o.Deadline))
	}
	return errors.Join(errs...)
}

// stackConfig is opts.Stack with the run's flags in front of each service's
// own (flags given later win, so JETSAGA_*_FLAGS from the environment still
// override).
func stackConfig(opts Options) stack.Config {
	c := opts.Stack
	c.Flags = maps.Clone(c.Flags)
	if c.Flags == nil {
		c.Flags = map[string]string{}
	}
	for i, s := range stack.Services {
		flags := []string{
			fmt.Sprintf("--inject-crash-after-commit=%g", opts.Crash),
			fmt.Sprintf("--inject-duplicate-publish=%g", opts.Duplicate),
			fmt.Sprintf("--inject-redeliver=%g", opts.Redeliver),
			fmt.Sprintf("--inject-seed=%d", opts.Seed+int64(i)),
			fmt.Sprintf("--ack-wait=%s", opts.AckWait),
		}
		switch s {
		case "order":
			if opts.Deadline > 0 {
				flags = append(flags, fmt.Sprintf("--saga-deadline=%s", opts.Deadline))
			}
		case "inventory":
			flags = append(flags, "--seed-stock="+seedStock())
		case "payment":
			flags = append(flags, fmt.Sprintf("--decline-over-cents=%d", declineOverCents),
				fmt.Sprintf("--decline-rate=%g", declineRate), fmt.Sprintf("--seed=%d", opts.Seed))
		}
		c.Flags[s] = strings.TrimSpace(strings.Join(flags, " ") + " " + c.Flags[s])
	}
	return c
}

// Run runs the chaos and returns its report, which it also writes to w after
// its progress lines. It returns an error when the run could not be carried
// out or looked at (the stack did not start, the checker could not read);
// violations are in the report (Report.OK).
func Run(ctx context.Context, opts Options, w io.Writer) (Report, error) {
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	log := cmp.Or(opts.Log, zap.NewNop())
	began := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(w, "[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, a...))
	}
	c := stackConfig(opts)
	rep := Report{Options: opts, Scripted: opts.Orders, RunDir: c.RunDir}

	step("fresh stack in %s, seed %d", c.RunDir, opts.Seed)
	if err := os.RemoveAll(c.RunDir); err != nil {
		return rep, fmt.Errorf("remove the old run folder: %w", err)
	}
	if err := stack.Up(ctx, c, log); err != nil {
		_ = stack.Down(context.WithoutCancel(ctx), c, log)
		return rep, fmt.Errorf("start the stack: %w", err)
	}
	rep.StackUp = time.Since(began)
	step("stack up: nats-server, postgres, four services with --inject-crash-after-commit=%g --inject-duplicate-publish=%g --inject-redeliver=%g",
		opts.Crash, opts.Duplicate, opts.Redeliver)

	err := run(ctx, c, opts, &rep, step)

	if opts.Keep {
		rep.KeptStack = true
	} else {
		step("tearing the stack down")
		if derr := stack.Down(context.WithoutCancel(ctx), c, log); derr != nil {
			err = errors.Join(err, fmt.Errorf("tear the stack down: %w", derr))
		}
	}
	rep.Took = time.Since(began)
	if err != nil {
		return rep, err
	}
	fmt.Fprintln(w)
	rep.Write(w)
	return rep, nil
}

// run does the part between stack up and teardown.
func run(ctx context.Context, c stack.Config, opts Options, rep *Report, step func(string, ...any)) error {
	pool, err := pgxpool.New(ctx, c.DatabaseURL())
	if err != nil {
		return fmt.Errorf("database %s: %w", c.DatabaseURL(), err)
	}
	defer pool.Close()
	nc, err := nats.Connect(c.NATSURL(), nats.Name("jetsaga-chaos"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", c.NATSURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// JetStream stops delivering a message after MaxDeliver deliveries
	// without an ack, and says so only in an advisory: a message the
	// consumer loop never got to dead-letter (each delivery ended in a
	// crash, say) would vanish without a trace. Watch for them.
	drops := &dropWatch{}
	sub, err := nc.Subscribe(maxDeliverAdvisories, drops.record)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", maxDeliverAdvisories, err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	orders := script(opts.Seed, opts.Orders)
	cl := &client.Client{
		HTTP:         &http.Client{Timeout: 10 * time.Second},
		OrderURL:     c.URL("order"),
		ReadmodelURL: c.URL("readmodel"),
	}
	planned := time.Duration(float64(opts.Orders) / opts.Rate * float64(time.Second))

	// The chaos: goroutines owned here. The service kills stop when the
	// last order is placed; the NATS and Postgres crashes happen at a third
	// and two thirds of the planned placing time, and are waited for.
	k := newKiller(c, opts.Seed, step)
	killCtx, stopKills := context.WithCancel(ctx)
	defer stopKills()
	var wg sync.WaitGroup
	var chaosErrs []error
	var chaosMu sync.Mutex
	fail := func(err error) {
		if err != nil {
			chaosMu.Lock()
			chaosErrs = append(chaosErrs, err)
			chaosMu.Unlock()
		}
	}
	if opts.KillEvery > 0 {
		wg.Go(func() { k.services(killCtx, opts.KillEvery) })
	}
	if opts.NATSKill {
		wg.Go(func() { fail(k.natsOutage(ctx, planned/3, outage)) })
	}
	if opts.PGRestart {
		wg.Go(func() { fail(k.postgresOutage(ctx, 2*planned/3, outage)) })
	}
	poisons := make([]poison, opts.Poison)
	if opts.Poison > 0 {
		wg.Go(func() {
			every := planned / time.Duration(opts.Poison+1)
			for i := range poisons {
				pause(ctx, every)
				poisons[i] = injectPoison(ctx, nc, js, i)
				step("poison %d/%d (%s) on %s: %s", i+1, opts.Poison, poisons[i].Kind, poisons[i].Subject, poisons[i].fate())
			}
		})
	}

	kills := "no service kills"
	if opts.KillEvery > 0 {
		kills = fmt.Sprintf("meanwhile kill -9 a random service every %s", opts.KillEvery)
	}
	step("placing %d orders at %g/s (%s), %d at a time, each with an Idempotency-Key; %s",
		opts.Orders, opts.Rate, planned.Round(time.Second), opts.Workers, kills)
	p := &placer{cl: cl, orders: orders, rate: opts.Rate, workers: opts.Workers, keyPrefix: fmt.Sprintf("chaos-%d-", opts.Seed)}
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Go(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				step("placed %d/%d, %d retried POSTs, %d kills so far", p.placed.Load(), opts.Orders, p.retries.Load(), k.total())
			}
		}
	})
	res := p.run(ctx)
	close(progressDone)
	progressWG.Wait()
	stopKills()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := errors.Join(chaosErrs...); err != nil {
		return err
	}
	rep.Placed, rep.Retries, rep.Replayed = len(res.ids), int(p.retries.Load()), int(p.replayed.Load())
	rep.Kinds = res.kinds
	rep.Placing = res.last.Sub(res.first)
	rep.Kills = k.counts()
	for _, e := range res.errs[:min(len(res.errs), maxListed)] {
		rep.PlaceErr = append(rep.PlaceErr, e.Error())
	}
	if len(res.errs) > 0 {
		step("%d orders could not be placed; the first: %v", len(res.errs), res.errs[0])
	}
	step("placed %d orders in %s (%d retried POSTs, %d answered as idempotent replays); waiting for every saga to end",
		rep.Placed, round(rep.Placing), rep.Retries, rep.Replayed)

	// Settle: every order terminal in the read model, then quiet.
	deadline := res.last.Add(opts.Timeout)
	stuck, err := waitTerminal(ctx, pool, res.ids, deadline)
	if err != nil {
		return err
	}
	rep.Stuck = len(stuck)
	rep.NotTerminal = stuck[:min(len(stuck), maxListed)]
	if rep.Stuck > 0 {
		step("%d orders are not terminal after %s", rep.Stuck, opts.Timeout)
	} else {
		step("every order is terminal in the read model; waiting for quiescence")
	}
	qerr := check.Quiesce(ctx, check.OneDB(pool), js, max(time.Until(deadline), 15*time.Second))
	rep.Settle = time.Since(res.last)
	switch {
	case qerr == nil:
		rep.Quiet = true
		step("quiescent %s after the last order: every outbox empty, every consumer caught up", round(rep.Settle))
	case errors.Is(qerr, check.ErrNotQuiet):
		rep.QuietErr = qerr.Error()
		step("%v", qerr)
	default:
		return qerr
	}

	if opts.Poison > 0 {
		if err := accountPoison(ctx, pool, js, poisons); err != nil {
			return err
		}
		rep.Poison = poisons
	}
	if rep.Check, err = check.Run(ctx, check.OneDB(pool), js, check.Options{Injected: injected(poisons)}); err != nil {
		return err
	}
	_ = nc.Flush()
	rep.Dropped, rep.DroppedList = drops.result()
	if rep.OrderRows, rep.Outcomes, err = outcomes(ctx, pool); err != nil {
		return err
	}
	if rep.Payments, err = paymentsByStatus(ctx, pool); err != nil {
		return err
	}
	rep.Faults = map[string]map[string]int{}
	for _, s := range stack.Services {
		if rep.Faults[s], err = countFile(c.LogFile(s), countFaults); err != nil {
			return err
		}
	}
	if rep.Restarts, err = countFile(c.LogFile("supervisor"), countRestarts); err != nil {
		return err
	}
	return nil
}

// outage is how long NATS and Postgres stay down.
const outage = 2 * time.Second

// maxListed bounds the orders and errors a report lists.
const maxListed = 20

// terminalPoll is how often waitTerminal looks.
const terminalPoll = 250 * time.Millisecond

// waitTerminal waits until every order in ids is CONFIRMED or CANCELLED in
// the read model, or until deadline; it returns the ones that are not, each
// with its status in the read model and in the order service. A failing
// query is retried (Postgres may be restarting).
func waitTerminal(ctx context.Context, pool *pgxpool.Pool, ids []string, deadline time.Time) ([]string, error) {
	var stuck []string
	var lastErr error
	for {
		s, err := notTerminal(ctx, pool, ids)
		if err == nil && len(s) == 0 {
			return nil, nil
		}
		if err == nil {
			stuck = s
		}
		lastErr = err
		if time.Now().After(deadline) {
			if stuck == nil && lastErr != nil {
				return nil, fmt.Errorf("wait for the orders to end: %w", lastErr)
			}
			return stuck, nil
		}
		t := time.NewTimer(terminalPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func notTerminal(ctx context.Context, pool *pgxpool.Pool, ids []string) ([]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := pool.Query(qctx, `
		SELECT id, coalesce(v.status, 'absent'), coalesce(o.status, 'absent')
		FROM unnest($1::text[]) AS id
		LEFT JOIN readmodel.order_views v ON v.order_id = id
		LEFT JOIN orders.orders o ON o.order_id = id
		WHERE v.status IS NULL OR v.status NOT IN ('CONFIRMED', 'CANCELLED')
		ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("orders not terminal: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, view, order string
		if err := rows.Scan(&id, &view, &order); err != nil {
			return nil, fmt.Errorf("orders not terminal: %w", err)
		}
		out = append(out, fmt.Sprintf("%s: %s in the read model, %s in the order service", id, view, order))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("orders not terminal: %w", err)
	}
	return out, nil
}

// paymentsByStatus counts payment.payments by status.
func paymentsByStatus(ctx context.Context, pool *pgxpool.Pool) (map[string]int, error) {
	rows, err := pool.Query(ctx, `SELECT status, count(*) FROM payment.payments GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("payments by status: %w", err)
	}
	out := map[string]int{}
	var (
		st string
		n  int
	)
	if _, err := pgx.ForEachRow(rows, []any{&st, &n}, func() error { out[st] = n; return nil }); err != nil {
		return nil, fmt.Errorf("payments by status: %w", err)
	}
	return out, nil
}

// outcomes reads orders.orders: how many rows, and how many by status and
// reason.
func outcomes(ctx context.Context, pool *pgxpool.Pool) (int, []Outcome, error) {
	rows, err := pool.Query(ctx, `
		SELECT status, reason, count(*) FROM orders.orders GROUP BY 1, 2
		ORDER BY CASE status WHEN 'CONFIRMED' THEN 0 WHEN 'CANCELLED' THEN 1 ELSE 2 END, 1, 2`)
	if err != nil {
		return 0, nil, fmt.Errorf("order outcomes: %w", err)
	}
	defer rows.Close()
	var out []Outcome
	total := 0
	for rows.Next() {
		var o Outcome
		if err := rows.Scan(&o.Status, &o.Reason, &o.Orders); err != nil {
			return 0, nil, fmt.Errorf("order outcomes: %w", err)
		}
		out = append(out, o)
		total += o.Orders
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("order outcomes: %w", err)
	}
	return total, out, nil
}

// placer places the scripted orders at a steady rate.
type placer struct {
	cl        *client.Client
	orders    []scripted
	rate      float64
	workers   int
	keyPrefix string

	placed, retries, replayed atomic.Int64
}

type placeResult struct {
	ids         []string       // order ids, in script order, of the orders placed
	kinds       map[string]int // placed orders by kind
	errs        []error        // orders that could not be placed
	first, last time.Time      // the first POST, the last 202
}

// giveUp is how long one order is retried before the run gives up on it.
const giveUp = 90 * time.Second

// run sends order i at start + i/rate (later if every worker is busy
// retrying), and retries a failed POST with backoff and the same
// Idempotency-Key, so that each order is placed once.
func (p *placer) run(ctx context.Context) placeResult {
	ids := make([]string, len(p.orders))
	errs := make([]error, len(p.orders))
	next := make(chan int)
	var mu sync.Mutex
	var last time.Time
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() {
			for i := range next {
				id, err := p.placeOne(ctx, i)
				ids[i], errs[i] = id, err
				if err == nil {
					p.placed.Add(1)
					mu.Lock()
					last = time.Now()
					mu.Unlock()
				}
			}
		})
	}
	start := time.Now()
	period := time.Duration(float64(time.Second) / p.rate)
pace:
	for i := range p.orders {
		if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				break pace
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			break pace
		case next <- i:
		}
	}
	close(next)
	wg.Wait()

	res := placeResult{kinds: map[string]int{}, first: start, last: last}
	for i, id := range ids {
		switch {
		case id != "":
			res.ids = append(res.ids, id)
			res.kinds[p.orders[i].Kind]++
		case errs[i] != nil && ctx.Err() == nil:
			res.errs = append(res.errs, errs[i])
		}
	}
	if last.IsZero() {
		res.last = time.Now()
	}
	return res
}

func (p *placer) placeOne(ctx context.Context, i int) (string, error) {
	key := p.keyPrefix + fmt.Sprint(i)
	o := p.orders[i].Order
	began := time.Now()
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		placed, err := p.cl.Place(actx, o, key)
		cancel()
		if err == nil {
			if placed.Replayed {
				p.replayed.Add(1)
			}
			return placed.OrderID, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if !client.Retryable(err) || time.Since(began) > giveUp {
			return "", fmt.Errorf("order %d (Idempotency-Key %s): %w", i, key, err)
		}
		p.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, time.Second)
	}
}

// killRNG is the random source of the kills, seeded from the run's seed
// (a stream of its own, so that the order mix does not depend on it).
func killRNG(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x6b696c6c73)) // "kills"
}

// maxDeliverAdvisories is the subject of JetStream's advisory for a message
// that reached its consumer's MaxDeliver without an ack.
const maxDeliverAdvisories = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"

// dropWatch collects max_deliver advisories.
type dropWatch struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (d *dropWatch) record(msg *nats.Msg) {
	var a struct {
		Stream     string `json:"stream"`
		Consumer   string `json:"consumer"`
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if json.Unmarshal(msg.Data, &a) != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	if len(d.first) < maxListed {
		d.first = append(d.first, fmt.Sprintf("%s message %d, consumer %s, after %d deliveries", a.Stream, a.StreamSeq, a.Consumer, a.Deliveries))
	}
}

func (d *dropWatch) result() (int, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n, slices.Clone(d.first)
}
