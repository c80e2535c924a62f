package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/load"
	"github.com/jetsaga/jetsaga/stack"
)

// HistoryOptions of a history benchmark run.
type HistoryOptions struct {
	Stack       stack.Config  // the fresh stack's configuration; its run folder is emptied first
	Levels      []int         // sagas of history to measure at, ascending (default 0, 100,000, 1,000,000)
	Duration    time.Duration // of each level's load run (default 60s)
	Concurrency int           // sagas in flight in each load run (default 128)
	Drain       time.Duration // as Options.Drain
	// FillTimeout bounds the wait for a level's filled sagas to end (default 2h).
	FillTimeout time.Duration
	// FillBacklog: during a level's fill, the services start again once
	// this many of its orders wait in ORDERS, and the rest is published
	// while they drain the backlog (publishing and draining overlap);
	// 0 publishes the whole level first.
	FillBacklog int
	Check       bool // run jetsaga check (every invariant, the streams scanned) after the last level
	// OnLevel, when not nil, gets the report so far after each level.
	OnLevel  func(HistoryReport)
	Keep     bool // leave the stack running
	Log      *zap.Logger
	Progress func(name string) func(load.Progress)
	Out      io.Writer // step lines
}

// HistoryReport is what a history benchmark run measured.
type HistoryReport struct {
	Began   time.Time      `json:"began"`
	Machine string         `json:"machine"`
	Levels  []LevelReport  `json:"levels"`
	Check   *check.Report  `json:"check,omitempty"`
	Took    time.Duration  `json:"took_ns"`
	Options map[string]any `json:"options"`
}

// LevelReport is one level: how its history was made, the load run on it,
// and the sizes after the run.
type LevelReport struct {
	Level   int         `json:"level"`   // the level asked for
	History int64       `json:"history"` // orders in the order service when the load run began
	Fill    *FillReport `json:"fill,omitempty"`
	LoadAvg string      `json:"load_avg"` // /proc/loadavg when the load run began
	Result  load.Result `json:"result"`
	// NATSRSSMiB is nats-server's resident memory after the run (VmRSS);
	// Result.PeakRSSMiB["nats"] is its peak since it started (the fills'
	// included).
	NATSRSSMiB     float64       `json:"nats_rss_mib"`
	NATSStoreBytes int64         `json:"nats_store_bytes"` // du of the run folder's nats store
	Streams        []StreamSize  `json:"streams"`
	Tables         []TableSize   `json:"tables"`
	Postgres       int64         `json:"postgres_db_bytes"` // pg_database_size
	Quiesce        time.Duration `json:"quiesce_ns"`        // after the run, until the stack was quiet
}

// FillReport is how a level's history was made.
type FillReport struct {
	FillResult
	// Drain is from the services' start on the backlog until every order
	// was terminal and the stack quiescent; Total from stopping the
	// services until then.
	Drain time.Duration `json:"drain_ns"`
	Total time.Duration `json:"total_ns"`
	// SagasPerSec is the filled sagas over Total.
	SagasPerSec float64 `json:"sagas_per_sec"`
}

// StreamSize is one stream's state.
type StreamSize struct {
	Name     string `json:"name"`
	Msgs     uint64 `json:"msgs"`
	Bytes    uint64 `json:"bytes"`
	Subjects uint64 `json:"subjects"`
}

// TableSize is one table's size (pg_total_relation_size, pg_indexes_size)
// and its live and dead tuples (estimates, pg_stat_user_tables).
type TableSize struct {
	Name    string `json:"name"` // schema.table
	Total   int64  `json:"total_bytes"`
	Indexes int64  `json:"index_bytes"`
	Live    int64  `json:"live_tuples"`
	Dead    int64  `json:"dead_tuples"`
}

func (o *HistoryOptions) defaults() {
	if len(o.Levels) == 0 {
		o.Levels = []int{0, 100_000, 1_000_000}
	}
	o.Levels = slices.Sorted(slices.Values(o.Levels))
	o.Duration = cmp.Or(o.Duration, 60*time.Second)
	o.Concurrency = cmp.Or(o.Concurrency, 128)
	o.Drain = cmp.Or(o.Drain, DefaultDrain)
	o.FillTimeout = cmp.Or(o.FillTimeout, 2*time.Hour)
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// RunHistory starts a fresh stack and, for each level, fills the history
// up to it (Fill: services stopped, orders copied in and their
// order.created published, services started on the backlog and waited for
// until every saga ended), then measures the maximum sustained rate on it
// (closed loop) and the sizes of the store, the streams and the tables.
// The load runs add to the history: a level's fill tops it up to the level.
func RunHistory(ctx context.Context, o HistoryOptions) (rep HistoryReport, err error) {
	o.defaults()
	rep.Began = time.Now().UTC()
	rep.Machine = machine()
	rep.Options = map[string]any{"levels": o.Levels, "duration": o.Duration.String(), "concurrency": o.Concurrency, "fill_backlog": o.FillBacklog}
	c := o.Stack
	step := func(format string, a ...any) {
		fmt.Fprintf(o.Out, "[%7.1fs] %s\n", time.Since(rep.Began).Seconds(), fmt.Sprintf(format, a...))
	}
	if err := freshStack(ctx, c, o.Log, step); err != nil {
		return rep, err
	}
	if !o.Keep {
		defer stopStack(ctx, c, o.Log, step, &err)
	}
	nc, err := nats.Connect(c.NATSURL(), nats.Name("jetsaga-bench-history"), nats.MaxReconnects(-1))
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
	hc := &http.Client{Timeout: 30 * time.Second}
	f := &Fill{Pool: pool, NC: nc, AdminToken: adminToken(c)}
	if err := f.SeedStock(ctx, hc, c.URL("inventory")); err != nil {
		return rep, err
	}

	for _, level := range o.Levels {
		lr := LevelReport{Level: level}
		history, err := orderCount(ctx, pool)
		if err != nil {
			return rep, err
		}
		if need := int64(level) - history; need > 0 {
			step("history %d → %d: stopping the services", history, level)
			fillBegan := time.Now()
			if _, err := stack.StopServices(c); err != nil {
				return rep, err
			}
			step("fill: copying %d orders and publishing their order.created", need)
			last := time.Now()
			var began time.Time // when the services started on the backlog
			var upErr error
			startServices := func() {
				began = time.Now()
				upErr = stack.Up(ctx, c, o.Log)
			}
			fr, err := f.Run(ctx, int(need), func(done int) {
				if time.Since(last) >= 10*time.Second || done == int(need) {
					step("  %d of %d", done, need)
					last = time.Now()
				}
				if o.FillBacklog > 0 && began.IsZero() && done >= o.FillBacklog && done < int(need) {
					step("  %d waiting: starting the services on the backlog; publishing goes on", done)
					startServices()
				}
			})
			if err == nil && upErr != nil {
				err = fmt.Errorf("start the services again: %w", upErr)
			}
			if err != nil {
				return rep, err
			}
			step("  written and published in %s (%.0f orders/s)", fr.Took.Round(time.Second), fr.PerSec)
			if began.IsZero() {
				step("  starting the services on the backlog")
				if startServices(); upErr != nil {
					return rep, fmt.Errorf("start the services again: %w", upErr)
				}
			}
			if err := WaitTerminal(ctx, pool, o.FillTimeout, 30*time.Second, func(open int64) {
				done := need - open
				step("  drain: %d open, %.0f sagas/s so far", open, float64(done)/time.Since(began).Seconds())
			}); err != nil {
				return rep, err
			}
			if err := check.Quiesce(ctx, check.OneDB(pool), js, QuiesceTimeout); err != nil {
				return rep, fmt.Errorf("after the fill: %w", err)
			}
			fl := &FillReport{FillResult: fr, Drain: time.Since(began), Total: time.Since(fillBegan)}
			fl.SagasPerSec = float64(need) / fl.Total.Seconds()
			lr.Fill = fl
			step("  every saga ended; drained in %s: %.0f sagas/s filled (publish + drain)", fl.Drain.Round(time.Second), fl.SagasPerSec)
			if history, err = orderCount(ctx, pool); err != nil {
				return rep, err
			}
		}
		lr.History = history
		lr.LoadAvg = loadAvg()
		name := fmt.Sprintf("%d sagas of history", history)
		step("%s: closed loop, %d in flight, for %s (load average %s)", name, o.Concurrency, o.Duration, lr.LoadAvg)
		lc := load.Config{
			OrderURL: c.URL("order"), InventoryURL: c.URL("inventory"), ReadmodelURL: c.URL("readmodel"), NATSURL: c.NATSURL(),
			Duration: o.Duration, Drain: o.Drain, RunDir: c.RunDir, Concurrency: o.Concurrency, AdminToken: f.AdminToken,
		}
		if o.Progress != nil {
			lc.Progress = o.Progress(name)
		}
		if lr.Result, err = load.Run(ctx, lc); err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
		qb := time.Now()
		if err := check.Quiesce(ctx, check.OneDB(pool), js, QuiesceTimeout); err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
		lr.Quiesce = time.Since(qb)
		res := lr.Result
		step("  %.1f sagas/s, p50 %.1fms p99 %.1fms, %d not terminal, %d errors", res.SagasPerSec, res.LatencyMS.P50, res.LatencyMS.P99, res.NotTerminal, res.Errors)
		if err := lr.sizes(ctx, pool, js, c); err != nil {
			return rep, err
		}
		step("  nats-server RSS %.0f MiB, store %.0f MiB; database %.0f MiB", lr.NATSRSSMiB, mib(lr.NATSStoreBytes), mib(lr.Postgres))
		rep.Levels = append(rep.Levels, lr)
		rep.Took = time.Since(rep.Began)
		if o.OnLevel != nil {
			o.OnLevel(rep)
		}
	}
	if o.Check {
		step("jetsaga check over the whole history (every invariant, the streams scanned)")
		cr, err := check.Run(ctx, check.OneDB(pool), js, check.Options{})
		if err != nil {
			return rep, fmt.Errorf("check: %w", err)
		}
		rep.Check = &cr
		step("  check: ok %v in %s", cr.OK(), cr.Took.Round(time.Second))
	}
	rep.Took = time.Since(rep.Began)
	return rep, nil
}

func orderCount(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders.orders`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count orders: %w", err)
	}
	return n, nil
}

// sizes reads nats-server's memory and store, the streams and the tables.
func (lr *LevelReport) sizes(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, c stack.Config) error {
	lr.NATSRSSMiB = float64(rssKiB(stack.Pid(c.PidFile("nats")))) / 1024
	lr.NATSStoreBytes = du(c.NATSStoreDir())
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		lr.Streams = append(lr.Streams, StreamSize{Name: name, Msgs: info.State.Msgs, Bytes: info.State.Bytes, Subjects: uint64(info.State.NumSubjects)})
	}
	rows, err := pool.Query(ctx, `
		SELECT schemaname || '.' || relname, pg_total_relation_size(relid), pg_indexes_size(relid), n_live_tup, n_dead_tup
		FROM pg_stat_user_tables
		WHERE schemaname IN ('orders', 'inventory', 'payment', 'readmodel')
		ORDER BY pg_total_relation_size(relid) DESC`)
	if err != nil {
		return fmt.Errorf("table sizes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t TableSize
		if err := rows.Scan(&t.Name, &t.Total, &t.Indexes, &t.Live, &t.Dead); err != nil {
			return fmt.Errorf("table sizes: %w", err)
		}
		lr.Tables = append(lr.Tables, t)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("table sizes: %w", err)
	}
	if err := pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&lr.Postgres); err != nil {
		return fmt.Errorf("database size: %w", err)
	}
	return nil
}

// rssKiB is VmRSS of a process in KiB, 0 when unknown.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var n int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &n)
			return n
		}
	}
	return 0
}

// du is the disk space of the files under dir (allocated blocks, as du).
func du(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// loadAvg is /proc/loadavg's three load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
