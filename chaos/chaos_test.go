package chaos

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/stack"
)

func TestScript(t *testing.T) {
	t.Parallel()
	a, b, c := script(7, 2000), script(7, 2000), script(8, 2000)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two different scripts")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 7 and 8 gave the same script")
	}
	plentiful := map[string]bool{}
	for _, s := range stock {
		if s.Units >= 1000 {
			plentiful[s.SKU] = true
		}
	}
	kinds := map[string]int{}
	for i, s := range a {
		kinds[s.Kind]++
		o := s.Order
		if o.CustomerID == "" || len(o.Items) == 0 {
			t.Fatalf("order %d is empty: %+v", i, o)
		}
		skus := map[string]bool{}
		for _, it := range o.Items {
			if it.Qty < 1 || it.UnitPriceCents < 1 {
				t.Fatalf("order %d: item %+v", i, it)
			}
			if skus[it.SKU] {
				t.Fatalf("order %d names %s twice", i, it.SKU)
			}
			skus[it.SKU] = true
		}
		switch s.Kind {
		case kindOrdinary:
			for _, it := range o.Items {
				if !plentiful[it.SKU] {
					t.Fatalf("ordinary order %d wants %s, which is not plentiful", i, it.SKU)
				}
			}
			if total(o) > declineOverCents {
				t.Fatalf("ordinary order %d costs %d, over the decline limit", i, total(o))
			}
		case kindExpensive:
			if total(o) <= declineOverCents {
				t.Fatalf("expensive order %d costs %d, not over the decline limit", i, total(o))
			}
		case kindScarce:
			if !skus["sku-scarce"] {
				t.Fatalf("scarce order %d does not want sku-scarce", i)
			}
		case kindUnknown:
			if !skus[unknownSKU] {
				t.Fatalf("unknown-SKU order %d does not name %s", i, unknownSKU)
			}
		default:
			t.Fatalf("order %d: kind %q", i, s.Kind)
		}
	}
	// Roughly the advertised mix: 80/8/10/2 percent.
	for kind, want := range map[string]int{kindOrdinary: 1600, kindScarce: 160, kindExpensive: 200, kindUnknown: 40} {
		if got := kinds[kind]; got < want*6/10 || got > want*14/10 {
			t.Errorf("%d %s orders of 2000, want about %d", got, kind, want)
		}
	}
}

func TestSeedStock(t *testing.T) {
	t.Parallel()
	got := seedStock()
	if !strings.Contains(got, "sku-scarce=25") || strings.ContainsAny(got, " \t") || strings.Count(got, "=") != len(stock) {
		t.Fatalf("seedStock() = %q", got)
	}
}

func TestCountFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		log  string
		want map[string]int
	}{
		{"empty", "", map[string]int{}},
		{"by fault", `{"level":"info","msg":"ready"}
{"level":"warn","ts":"2026-01-01T00:00:00Z","logger":"order","msg":"fault injected","fault":"crash_after_commit","order_id":"o1"}
{"level":"warn","logger":"order","msg":"fault injected","fault":"redeliver","order_id":"o2"}
{"level":"warn","logger":"order","msg":"fault injected","fault":"redeliver","order_id":"o3"}
{"level":"warn","logger":"order","msg":"failure injection is on","crash_after_commit":0.05}
`, map[string]int{"crash_after_commit": 1, "redeliver": 2}},
		{"not JSON, or not the line", `panic: fault injected
goroutine 1 [running]:
{"level":"info","msg":"order placed","note":"fault injected"}
{"level":"warn","msg":"fault injected"}
{"level":"warn","msg":"fault injected","fault":"duplicate_publish"}`, map[string]int{"duplicate_publish": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := countFaults(strings.NewReader(tc.log))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("countFaults = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCountRestarts(t *testing.T) {
	t.Parallel()
	log := "2026-11-24T06:53:23.342Z\tINFO\tsupervisor\tjetsaga/stackcmd.go:57\tsupervising\t{\"run_dir\": \"/x\", \"services\": [\"order\"]}\n" +
		"2026-11-24T07:20:31.312Z\tWARN\tsupervisor\tstack/supervise.go:56\tprocess exited; restarting\t{\"service\": \"order\", \"exit_code\": 3, \"error\": \"exit status 3\", \"uptime\": \"43ms\", \"restart_in\": \"2s\", \"restarts\": 373}\n" +
		"github.com/jetsaga/jetsaga/stack.keep\n\t/work/main/stack/supervise.go:56\n" +
		"2026-11-24T07:20:31.976Z\tWARN\tsupervisor\tstack/supervise.go:56\tprocess exited; restarting\t{\"service\": \"inventory\", \"exit_code\": -1, \"error\": \"signal: killed\", \"restarts\": 53}\n" +
		"2026-11-24T07:20:32.976Z\tWARN\tsupervisor\tstack/supervise.go:56\tprocess exited; restarting\t{\"service\": \"inventory\", \"exit_code\": 1, \"error\": \"exit status 1\", \"restarts\": 54}\n" +
		"2026-11-24T07:20:33.350Z\tWARN\tsupervisor\tstack/supervise.go:56\tprocess exited; restarting\t{\"service\": \"order\", \"exit_code\": 3}\n" +
		"2026-11-24T07:20:34.000Z\tINFO\tsupervisor\tstack/supervise.go:47\tstopped\t{\"service\": \"order\", \"exit_code\": 0}\n"
	got, err := countRestarts(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Restarts{"order": {Crashed: 2}, "inventory": {Killed: 1, Other: 1}}
	if !maps.Equal(got, want) {
		t.Fatalf("countRestarts = %v, want %v", got, want)
	}
}

func TestStackConfig(t *testing.T) {
	t.Parallel()
	o := Defaults()
	o.Seed = 10
	o.Stack = stack.Config{Root: "/r", RunDir: "/r/.run/chaos", Flags: map[string]string{"payment": "--decline-rate=0.5"}}
	c := stackConfig(o)
	if o.Stack.Flags["order"] != "" {
		t.Fatal("stackConfig changed the caller's flags")
	}
	for i, s := range stack.Services {
		f := c.Flags[s]
		for _, want := range []string{"--inject-crash-after-commit=0.05", "--inject-duplicate-publish=0.05", "--inject-redeliver=0.05", "--ack-wait=3s"} {
			if !strings.Contains(f, want) {
				t.Errorf("%s flags %q lack %s", s, f, want)
			}
		}
		if want := fmt.Sprintf("--inject-seed=%d ", 10+i); !strings.Contains(f, want) {
			t.Errorf("%s flags %q lack %s", s, f, want)
		}
	}
	if !strings.Contains(c.Flags["inventory"], "--seed-stock=sku-apple=") {
		t.Errorf("inventory flags %q lack --seed-stock", c.Flags["inventory"])
	}
	// The environment's flags come last, so they win.
	if !strings.HasSuffix(c.Flags["payment"], " --decline-rate=0.5") || !strings.Contains(c.Flags["payment"], "--decline-over-cents=20000") {
		t.Errorf("payment flags %q", c.Flags["payment"])
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := Defaults()
	good.Stack = stack.Config{Root: "/r", RunDir: "/r/.run/chaos"}
	tests := []struct {
		name    string
		change  func(*Options)
		wantErr bool
	}{
		{"defaults", func(*Options) {}, false},
		{"no kills at all", func(o *Options) { o.KillEvery, o.NATSKill, o.PGRestart, o.Crash = 0, false, false, 0 }, false},
		{"no run folder", func(o *Options) { o.Stack.RunDir = "" }, true},
		{"run folder is the checkout", func(o *Options) { o.Stack.RunDir = "/r/" }, true},
		{"run folder is /", func(o *Options) { o.Stack.RunDir = "/" }, true},
		{"no orders", func(o *Options) { o.Orders = 0 }, true},
		{"zero rate", func(o *Options) { o.Rate = 0 }, true},
		{"no workers", func(o *Options) { o.Workers = 0 }, true},
		{"probability above 1", func(o *Options) { o.Duplicate = 1.5 }, true},
		{"negative probability", func(o *Options) { o.Crash = -0.1 }, true},
		{"negative kill interval", func(o *Options) { o.KillEvery = -time.Second }, true},
		{"no timeout", func(o *Options) { o.Timeout = 0 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := good
			tc.change(&o)
			if err := o.validate(); (err != nil) != tc.wantErr {
				t.Fatalf("validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func passingReport() Report {
	o := Defaults()
	return Report{
		Options: o, Scripted: 3, Placed: 3, OrderRows: 3, Retries: 4, Replayed: 1,
		Kinds:    map[string]int{kindOrdinary: 2, kindExpensive: 1},
		Outcomes: []Outcome{{"CONFIRMED", "", 2}, {"CANCELLED", "payment_failed", 1}},
		Faults: map[string]map[string]int{
			"order":     {"crash_after_commit": 2, "duplicate_publish": 1},
			"readmodel": {"redeliver": 3},
		},
		Kills:    map[string]int{"order": 1, targetNATS: 1, targetPostgres: 1},
		Restarts: map[string]Restarts{"order": {Crashed: 2, Killed: 1}},
		Quiet:    true,
		Check: check.Report{Results: []check.Result{
			{Invariant: 1, Name: "terminal", OK: true}, {Invariant: 2, Name: "stock", OK: true},
		}},
		RunDir: "/r/.run/chaos",
	}
}

func TestReportOK(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*Report)
		want   bool
		why    string
	}{
		{"clean", func(*Report) {}, true, ""},
		{"an order not placed", func(r *Report) { r.Placed, r.OrderRows = 2, 2 }, false, "2 of 3 orders placed"},
		{"an order placed twice", func(r *Report) { r.OrderRows = 4 }, false, "4 orders in the order service for 3 placed"},
		{"an order stuck", func(r *Report) { r.Stuck = 1 }, false, "1 orders not terminal"},
		{"not quiet", func(r *Report) { r.Quiet = false }, false, "not quiet"},
		{"check did not run", func(r *Report) { r.Check = check.Report{} }, false, "check did not run"},
		{"an invariant violated", func(r *Report) {
			r.Check.Results = []check.Result{{Invariant: 1, OK: true}, {Invariant: 2, OK: false, Count: 1}}
		}, false, "invariants [2] violated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := passingReport()
			tc.change(&r)
			if got := r.OK(); got != tc.want {
				t.Fatalf("OK() = %v, want %v", got, tc.want)
			}
			if !tc.want && !strings.Contains(r.failures(), tc.why) {
				t.Fatalf("failures() = %q, want it to say %q", r.failures(), tc.why)
			}
		})
	}
}

func TestReportWrite(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	passingReport().Write(&buf)
	out := strings.Join(strings.Fields(buf.String()), " ") // columns aligned with any number of spaces
	for _, want := range []string{
		"seed 1",
		"2000 orders at 25/s",
		"--inject-crash-after-commit=0.05",
		"kill -9 a random service every 4s; kill -9 nats-server once; pg_ctl stop -m immediate once",
		"orders: 3 of 3 placed (2 ordinary, 1 expensive); 4 retried POSTs, 1 idempotent replays; 3 rows in orders.orders",
		"CANCELLED payment_failed 1",
		"not terminal 0",
		"crash_after_commit",
		"jetsaga check:",
		"1 PASS terminal",
		"PASS: 3 orders placed once and terminal; 6 faults injected; 1 kill -9 of services, 1 of nats-server; 1 Postgres crash (stop -m immediate); 3 restarts; every invariant holds",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// crash_after_commit is listed before duplicate_publish, and redeliver after.
	if i, j, k := strings.Index(out, "crash_after_commit"), strings.Index(out, "duplicate_publish"), strings.Index(out, "redeliver 0"); !(i < j && j < k) {
		t.Errorf("faults out of order:\n%s", out)
	}

	r := passingReport()
	r.Stuck, r.NotTerminal = 1, []string{"o-7: RESERVED in the read model, RESERVED in the order service"}
	buf.Reset()
	r.Write(&buf)
	if out := buf.String(); !strings.Contains(out, "o-7: RESERVED") || !strings.Contains(out, "FAIL: 1 orders not terminal") {
		t.Errorf("failing report:\n%s", out)
	}
}
