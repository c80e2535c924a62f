package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/load"
	"github.com/jetsaga/jetsaga/stack"
)

// Options of a benchmark run.
type Options struct {
	Stack           stack.Config  // the fresh stack's configuration; its run folder is emptied first
	Duration        time.Duration // of each load run (default 60s)
	Concurrency     int           // the maximum-rate run's sagas in flight (default 128)
	Rate            float64       // the fixed-rate run's orders/s offered (default 500)
	CeilingDuration time.Duration // of each ceiling measurement (default 10s)
	TxClients       int           // connections of the transaction ceiling (default 8: 4 services × 2 workers)
	// Drain is how long each load run waits after its last order for its
	// sagas to end (default 5m): long enough that every saga is followed to
	// its end, so the latency percentiles and CPU per saga leave none out.
	Drain time.Duration
	Keep  bool // leave the stack running
	Log   *zap.Logger
	// Progress gets a function per load run to report its progress, may be
	// nil.
	Progress func(name string) func(load.Progress)
	Out      io.Writer // step lines
}

// Report is what a benchmark run measured.
type Report struct {
	Began       time.Time     `json:"began"`
	Machine     string        `json:"machine"`
	MsgBytes    int           `json:"msg_bytes"`
	Publish     Ceiling       `json:"publish_ceiling"`
	Transaction Ceiling       `json:"transaction_ceiling"`
	Runs        []RunReport   `json:"runs"`
	Took        time.Duration `json:"took_ns"`
}

// RunReport is one load run with what each saga cost.
type RunReport struct {
	Name   string      `json:"name"`
	Result load.Result `json:"result"`
	// EventsPerSaga: messages the ORDERS, INVENTORY and PAYMENTS streams
	// gained over the run and until the stack was quiescent after it, per
	// accepted order (every one has ended by then).
	EventsPerSaga float64 `json:"events_per_saga"`
	// HandlingsPerSaga: messages the services' consumers handled or found
	// a duplicate (jetsaga_messages_total, outcomes handled and duplicate)
	// per accepted order, counted the same way.
	HandlingsPerSaga float64 `json:"handlings_per_saga"`
	// TxPerSaga: Postgres transactions committed in the stack's database
	// (pg_stat_database.xact_commit: the consumers' batches, the POSTs, the
	// relay's rounds; a statement outside a transaction counts as one) per
	// accepted order, counted the same way. Batching makes it far smaller
	// than HandlingsPerSaga.
	TxPerSaga float64 `json:"tx_per_saga"`
	// Shares of the ceilings the saga's rates used: sagas/s × events per
	// saga over the publish ceiling, sagas/s × transactions per saga over
	// the transaction ceiling.
	PublishShare float64 `json:"publish_share"`
	TxShare      float64 `json:"tx_share"`
}

func (o *Options) defaults() {
	if o.Duration <= 0 {
		o.Duration = 60 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 128
	}
	if o.Rate <= 0 {
		o.Rate = 500
	}
	if o.CeilingDuration <= 0 {
		o.CeilingDuration = min(10*time.Second, o.Duration)
	}
	if o.TxClients <= 0 {
		o.TxClients = 8
	}
	if o.Drain <= 0 {
		o.Drain = DefaultDrain
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// Run starts a fresh stack, measures the ceilings, runs the two loads and
// stops the stack (unless Keep).
func Run(ctx context.Context, o Options) (rep Report, err error) {
	o.defaults()
	rep.Began = time.Now().UTC()
	rep.Machine = machine()
	c := o.Stack
	step := func(format string, a ...any) {
		fmt.Fprintf(o.Out, "[%6.1fs] %s\n", time.Since(rep.Began).Seconds(), fmt.Sprintf(format, a...))
	}
	if err := freshStack(ctx, c, o.Log, step); err != nil {
		return rep, err
	}
	if !o.Keep {
		defer stopStack(ctx, c, o.Log, step, &err)
	}
	nc, err := nats.Connect(c.NATSURL(), nats.Name("jetsaga-bench"))
	if err != nil {
		return rep, fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return rep, err
	}
	pool, err := pgxpool.New(ctx, c.DatabaseURL())
	if err != nil {
		return rep, fmt.Errorf("database: %w", err)
	}
	defer pool.Close()

	step("ceiling: JetStream async publish for %s", o.CeilingDuration)
	if rep.Publish, rep.MsgBytes, err = publishCeiling(ctx, nc, o.CeilingDuration); err != nil {
		return rep, err
	}
	step("  %.0f msgs/s", rep.Publish.PerSec)
	step("ceiling: Postgres saga-step transactions for %s", o.CeilingDuration)
	if rep.Transaction, err = txCeiling(ctx, c.DatabaseURL(), o.TxClients, o.CeilingDuration); err != nil {
		return rep, err
	}
	step("  %.0f transactions/s", rep.Transaction.PerSec)

	runs := []struct {
		name string
		cfg  func(*load.Config)
	}{
		{fmt.Sprintf("max sustained (closed loop, %d in flight)", o.Concurrency), func(lc *load.Config) { lc.Concurrency = o.Concurrency }},
		{fmt.Sprintf("%g sagas/s offered (open loop)", o.Rate), func(lc *load.Config) { lc.Rate = o.Rate }},
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, r := range runs {
		step("%s for %s", r.name, o.Duration)
		lc := load.Config{
			OrderURL: c.URL("order"), InventoryURL: c.URL("inventory"), ReadmodelURL: c.URL("readmodel"), NATSURL: c.NATSURL(),
			Duration: o.Duration, Drain: o.Drain, RunDir: c.RunDir, AdminToken: adminToken(c),
		}
		r.cfg(&lc)
		if o.Progress != nil {
			lc.Progress = o.Progress(r.name)
		}
		before, err := counts(ctx, pool, js, hc, c)
		if err != nil {
			return rep, err
		}
		res, err := load.Run(ctx, lc)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", r.name, err)
		}
		// Let the stack finish what the run started, so that every saga it
		// accepted is counted whole and the next run starts on a quiet
		// stack.
		if err := check.Quiesce(ctx, check.OneDB(pool), js, QuiesceTimeout); err != nil {
			return rep, fmt.Errorf("%s: %w", r.name, err)
		}
		step("  quiescent: every saga of the run ended")
		after, err := counts(ctx, pool, js, hc, c)
		if err != nil {
			return rep, err
		}
		rr := RunReport{Name: r.name, Result: res}
		if res.Accepted > 0 && res.Completed > 0 {
			n := float64(res.Accepted)
			rr.EventsPerSaga = float64(after.events-before.events) / n
			rr.HandlingsPerSaga = float64(after.handled-before.handled) / n
			rr.TxPerSaga = float64(after.commits-before.commits) / n
			rr.PublishShare = res.SagasPerSec * rr.EventsPerSaga / rep.Publish.PerSec
			rr.TxShare = res.SagasPerSec * rr.TxPerSaga / rep.Transaction.PerSec
		}
		step("  %.1f sagas/s, p50 %.1fms p99 %.1fms, %d not terminal, %d errors", res.SagasPerSec, res.LatencyMS.P50, res.LatencyMS.P99, res.NotTerminal, res.Errors)
		rep.Runs = append(rep.Runs, rr)
	}
	rep.Took = time.Since(rep.Began)
	return rep, nil
}

// freshStack empties the run folder and starts a stack in it; a stack that
// failed to start is brought down again.
func freshStack(ctx context.Context, c stack.Config, log *zap.Logger, step func(string, ...any)) error {
	step("fresh stack in %s", c.RunDir)
	if err := os.RemoveAll(c.RunDir); err != nil {
		return err
	}
	if err := stack.Up(ctx, c, log); err != nil {
		_ = stack.Down(context.WithoutCancel(ctx), c, log)
		return fmt.Errorf("start the stack: %w", err)
	}
	return nil
}

// stopStack brings the stack down at the end of a run; its error becomes
// the run's when the run had none.
func stopStack(ctx context.Context, c stack.Config, log *zap.Logger, step func(string, ...any), errp *error) {
	step("stopping the stack")
	if err := stack.Down(context.WithoutCancel(ctx), c, log); err != nil && *errp == nil {
		*errp = err
	}
}

// DefaultDrain is Options.Drain's default.
const DefaultDrain = 5 * time.Minute

// QuiesceTimeout bounds the wait after each run for the stack to finish
// the sagas the run started.
const QuiesceTimeout = 5 * time.Minute

// tally is what the stack had done at one moment.
type tally struct {
	events  int64 // messages in the saga's streams
	handled int64 // messages the services' consumers handled or found duplicate
	commits int64 // transactions committed in the stack's database
}

func counts(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, hc *http.Client, c stack.Config) (tally, error) {
	var t tally
	// Backends report their commits to pg_stat_database at most once a
	// second (idle ones within ten): read after a quiesced run, the count
	// can miss the last second's commits of some backends, well under 1%
	// of a 60s run's.
	if err := pool.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&t.commits); err != nil {
		return t, fmt.Errorf("read commits: %w", err)
	}
	for _, name := range []string{"ORDERS", "INVENTORY", "PAYMENTS"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return t, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return t, fmt.Errorf("stream %s: %w", name, err)
		}
		t.events += int64(info.State.Msgs)
	}
	for _, svc := range stack.Services {
		n, err := handledMessages(ctx, hc, c.URL(svc)+"/metrics")
		if err != nil {
			return t, fmt.Errorf("%s metrics: %w", svc, err)
		}
		t.handled += n
	}
	return t, nil
}

// handledMessages sums jetsaga_messages_total with outcome handled or
// duplicate from a service's /metrics.
func handledMessages(ctx context.Context, hc *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	return sumMessages(resp.Body)
}

// sumMessages reads Prometheus' text format.
func sumMessages(r io.Reader) (int64, error) {
	var n float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "jetsaga_messages_total{") {
			continue
		}
		if !strings.Contains(line, `outcome="handled"`) && !strings.Contains(line, `outcome="duplicate"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		n += v
	}
	return int64(n), sc.Err()
}

// machine describes the host: CPUs, model, memory, kernel.
func machine() string {
	cpus, model := 0, ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, "processor") {
				cpus++
			}
			if v, ok := strings.CutPrefix(line, "model name"); ok && model == "" {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if f := strings.Fields(line); len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs (%s)%s%s", cpus, model, mem, kernel)
}

// adminToken is the token jetsaga up wrote for the stack's operator
// endpoints, "" when it has none.
func adminToken(c stack.Config) string {
	b, err := os.ReadFile(c.AdminTokenFile())
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
