package load

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what a run measured. Its JSON is what jetsaga load --json
// prints.
type Result struct {
	Mode        string  `json:"mode"`                  // "closed" (concurrency) or "open" (rate)
	Concurrency int     `json:"concurrency,omitempty"` // closed loop: sagas in flight
	RateOffered float64 `json:"rate_offered,omitempty"`
	Mix         string  `json:"mix"`

	PlacingS float64 `json:"placing_s"` // from the first order sent to the last
	ElapsedS float64 `json:"elapsed_s"` // from the first order to the last terminal event seen

	Sent        int64   `json:"sent"`          // POST /orders sent
	Accepted    int64   `json:"accepted"`      // answered 202
	Completed   int64   `json:"completed"`     // accepted and seen terminal
	SagasPerSec float64 `json:"sagas_per_sec"` // completed / elapsed_s
	SentPerSec  float64 `json:"sent_per_sec"`  // sent / placing_s: in the open loop, the rate achieved
	NotTerminal int     `json:"not_terminal"`  // accepted, not seen terminal by the end of the drain
	Errors      int64   `json:"errors"`        // orders not accepted (HTTP error or no answer)
	// ErrorSamples counts the first kinds of error by their text.
	ErrorSamples map[string]int64 `json:"error_samples,omitempty"`
	// Outcomes counts completed sagas by the class of the order and how it
	// ended ("confirmed", "cancelled:out_of_stock", …).
	Outcomes map[string]map[string]int64 `json:"outcomes"`
	// Unexpected counts sagas that ended otherwise than their class aims at
	// (e.g. a decline confirmed: payment's limit is off or above the price).
	Unexpected int64 `json:"unexpected_outcomes"`

	// LatencyMS is from the 202 to the terminal event seen.
	LatencyMS Percentiles `json:"latency_ms"`
	// LatencyFromScheduledMS is from when the order was due to be sent
	// (open loop: its slot in the schedule; closed loop: the send) to the
	// terminal event: it includes the time the POST took and any wait for
	// a free connection, so a stack that answers slowly cannot hide it.
	LatencyFromScheduledMS Percentiles `json:"latency_from_scheduled_ms"`

	LagMS Lag `json:"lag_ms"`

	// CPUMSPerSaga is the CPU (user+system) the stack's processes — every
	// instance of the four services, every nats-server and every Postgres
	// process — used from the first order to the end of the drain, divided
	// by completed sagas; null when the run folder holds no pid files.
	CPUMSPerSaga *float64 `json:"cpu_ms_per_saga"`
	// CPUMSPerSagaByProcess is the same per process, as the run folder's
	// pid files name them: "order", "nats" on the single-node stack;
	// "order-1", "order-2", "nats-1", … in the cluster.
	CPUMSPerSagaByProcess map[string]float64 `json:"cpu_ms_per_saga_by_process,omitempty"`
	// CPUMSPerSagaByService sums the processes of each service (and the
	// nats-server nodes) when the stack runs several: the cluster.
	CPUMSPerSagaByService map[string]float64 `json:"cpu_ms_per_saga_by_service,omitempty"`
	CPUMS                 map[string]float64 `json:"cpu_ms,omitempty"` // per process, over the run; "load" is this process
	// ContextSwitchesPerSaga is the context switches (voluntary and
	// involuntary, every thread) of the same processes over the same time,
	// divided by completed sagas: each is a process put to sleep or woken,
	// which the saga pays for in system time; null like CPUMSPerSaga.
	ContextSwitchesPerSaga *float64 `json:"context_switches_per_saga"`
	// ContextSwitchesPerSagaByProcess is the same per process.
	ContextSwitchesPerSagaByProcess map[string]float64 `json:"context_switches_per_saga_by_process,omitempty"`
	// PeakRSSMiB is each process's peak resident memory (VmHWM) since it
	// started; for postgres, its largest process.
	PeakRSSMiB map[string]float64 `json:"peak_rss_mib,omitempty"`
	Notes      []string           `json:"notes,omitempty"`
}

// Percentiles of a latency, in milliseconds.
type Percentiles struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Count int64   `json:"count"`
}

// percentiles reads a histogram of microseconds.
func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return math.Round(float64(us)/10) / 100 } // µs → ms, 2 decimals
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Count: h.TotalCount(),
	}
}

func (r *run) result(ctx context.Context, start, placingEnd time.Time, cpuStart, cpuEnd cpuSample) Result {
	res := Result{
		Mode: "closed", Concurrency: r.cfg.Concurrency, Mix: r.cfg.Mix.String(),
		PlacingS:     round(placingEnd.Sub(start).Seconds(), 3),
		Sent:         r.placed.Load(),
		Errors:       r.errs.Load(),
		NotTerminal:  r.track.notTerminal(),
		ErrorSamples: r.errSamples,
	}
	if r.cfg.Rate > 0 {
		res.Mode, res.Concurrency, res.RateOffered = "open", 0, r.cfg.Rate
	}
	res.Accepted = res.Sent - res.Errors
	r.track.mu.Lock()
	res.Completed = r.completed
	res.Unexpected = r.unexpected
	res.Outcomes = r.outcomes
	res.LatencyMS = percentiles(r.latency)
	res.LatencyFromScheduledMS = percentiles(r.fromScheduled)
	last := r.lastTerminal
	r.track.mu.Unlock()
	if len(res.ErrorSamples) == 0 {
		res.ErrorSamples = nil
	}
	if !last.IsZero() {
		res.ElapsedS = round(last.Sub(start).Seconds(), 3)
	}
	if res.ElapsedS > 0 {
		res.SagasPerSec = round(float64(res.Completed)/res.ElapsedS, 1)
	}
	if res.PlacingS > 0 {
		res.SentPerSec = round(float64(res.Sent)/res.PlacingS, 1)
	}
	if res.NotTerminal > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("latency covers the completed sagas only: %d accepted sagas had not ended %s after the last order (--drain)", res.NotTerminal, r.cfg.Drain))
	}
	if n := r.track.foreign(); n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d terminal events of orders this run did not place (another client of the stack)", n))
	}
	if res.Unexpected > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d sagas ended otherwise than their class: is payment's --decline-over-cents below %d?", res.Unexpected, r.cfg.DeclinePriceCents))
	}

	if r.cfg.ReadmodelURL != "" {
		lag, notes := measureLag(ctx, r.cfg.HTTP, r.cfg.ReadmodelURL, r.track.placedIDs(lagSample), max(r.cfg.Drain, 5*time.Second))
		res.LagMS = lag
		res.Notes = append(res.Notes, notes...)
	}

	cpu, cpuNotes := cpuDelta(cpuStart, cpuEnd)
	total, names := stackCPU(cpu)
	if len(names) == 0 {
		note := fmt.Sprintf("CPU not measured: no processes of the stack found in run folder %q", r.cfg.RunDir)
		if cluster := filepath.Join(r.cfg.RunDir, "cluster"); r.cfg.RunDir != "" && hasPids(cluster) {
			note += fmt.Sprintf(" (the cluster stack's is %s: --run-dir)", cluster)
		}
		res.Notes = append(res.Notes, note)
	} else {
		res.CPUMS = map[string]float64{}
		for name, ms := range cpu {
			res.CPUMS[name] = round(ms, 0)
		}
		if missing := missingProcs(names); len(missing) > 0 {
			res.Notes = append(res.Notes, "CPU not measured for "+strings.Join(missing, ", ")+" (no pid in the run folder)")
		}
		res.Notes = append(res.Notes, cpuNotes...)
		if res.Completed > 0 {
			per := round(total/float64(res.Completed), 3)
			res.CPUMSPerSaga = &per
			res.CPUMSPerSagaByProcess = map[string]float64{}
			for name, ms := range cpu {
				res.CPUMSPerSagaByProcess[name] = round(ms/float64(res.Completed), 3)
			}
			if sums, several := byKind(cpu); several {
				res.CPUMSPerSagaByService = map[string]float64{}
				for kind, ms := range sums {
					res.CPUMSPerSagaByService[kind] = round(ms/float64(res.Completed), 3)
				}
			}
			switches := switchDelta(cpuStart, cpuEnd)
			all, _ := stackCPU(switches)
			perSwitch := round(all/float64(res.Completed), 1)
			res.ContextSwitchesPerSaga = &perSwitch
			res.ContextSwitchesPerSagaByProcess = map[string]float64{}
			for name, n := range switches {
				res.ContextSwitchesPerSagaByProcess[name] = round(n/float64(res.Completed), 1)
			}
		}
		res.PeakRSSMiB = map[string]float64{}
		for name, kib := range peakRSSByProcess(r.cfg.RunDir) {
			res.PeakRSSMiB[name] = round(float64(kib)/1024, 1)
		}
	}
	return res
}

// missingProcs lists the kinds of process (the services, nats, postgres)
// of which found has none.
func missingProcs(found []string) []string {
	var out []string
	for _, kind := range append(slices.Clone(stackKinds), postgres) {
		if !slices.ContainsFunc(found, func(name string) bool { k, _ := kindOf(name); return k == kind }) {
			out = append(out, kind)
		}
	}
	return out
}

// hasPids reports whether runDir has pid files.
func hasPids(runDir string) bool {
	files, _ := filepath.Glob(filepath.Join(runDir, "pids", "*.pid"))
	return len(files) > 0
}

func round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}

// Write prints the result for a person.
func (res Result) Write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	mode := fmt.Sprintf("closed loop, %d sagas in flight", res.Concurrency)
	if res.Mode == "open" {
		mode = fmt.Sprintf("open loop, %g orders/s offered", res.RateOffered)
	}
	fmt.Fprintf(tw, "load\t%s, mix %s\n", mode, res.Mix)
	fmt.Fprintf(tw, "orders\t%d sent in %.1fs (%.1f/s), %d accepted, %d errors\n", res.Sent, res.PlacingS, res.SentPerSec, res.Accepted, res.Errors)
	fmt.Fprintf(tw, "sagas\t%d completed in %.1fs: %.1f sagas/s; %d not terminal\n", res.Completed, res.ElapsedS, res.SagasPerSec, res.NotTerminal)
	for _, class := range slices.Sorted(maps.Keys(res.Outcomes)) {
		var parts []string
		for _, o := range slices.Sorted(maps.Keys(res.Outcomes[class])) {
			parts = append(parts, fmt.Sprintf("%s %d", o, res.Outcomes[class][o]))
		}
		fmt.Fprintf(tw, "  %s\t%s\n", class, strings.Join(parts, ", "))
	}
	p := res.LatencyMS
	fmt.Fprintf(tw, "latency (202→terminal)\tp50 %.1fms  p90 %.1fms  p99 %.1fms  p99.9 %.1fms  max %.1fms\n", p.P50, p.P90, p.P99, p.P999, p.Max)
	p = res.LatencyFromScheduledMS
	fmt.Fprintf(tw, "latency (due→terminal)\tp50 %.1fms  p90 %.1fms  p99 %.1fms  p99.9 %.1fms  max %.1fms\n", p.P50, p.P90, p.P99, p.P999, p.Max)
	fmt.Fprintf(tw, "read-model lag\tp50 %.1fms  p99 %.1fms  max %.1fms (%d events)\n", res.LagMS.P50, res.LagMS.P99, res.LagMS.Max, res.LagMS.Samples)
	if res.CPUMSPerSaga != nil {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(res.CPUMSPerSagaByProcess)) {
			if name != "load" {
				parts = append(parts, fmt.Sprintf("%s %.2f", name, res.CPUMSPerSagaByProcess[name]))
			}
		}
		fmt.Fprintf(tw, "CPU per saga\t%.2fms (%s); this load %.2fms, not counted\n", *res.CPUMSPerSaga, strings.Join(parts, ", "), res.CPUMSPerSagaByProcess["load"])
		if len(res.CPUMSPerSagaByService) > 0 {
			parts = parts[:0]
			for _, kind := range slices.Sorted(maps.Keys(res.CPUMSPerSagaByService)) {
				parts = append(parts, fmt.Sprintf("%s %.2f", kind, res.CPUMSPerSagaByService[kind]))
			}
			fmt.Fprintf(tw, "  by service\t%s (every instance and node summed)\n", strings.Join(parts, ", "))
		}
	}
	if res.ContextSwitchesPerSaga != nil {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(res.ContextSwitchesPerSagaByProcess)) {
			if name != "load" {
				parts = append(parts, fmt.Sprintf("%s %.0f", name, res.ContextSwitchesPerSagaByProcess[name]))
			}
		}
		fmt.Fprintf(tw, "context switches per saga\t%.0f (%s)\n", *res.ContextSwitchesPerSaga, strings.Join(parts, ", "))
	}
	if len(res.PeakRSSMiB) > 0 {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(res.PeakRSSMiB)) {
			parts = append(parts, fmt.Sprintf("%s %.0f", name, res.PeakRSSMiB[name]))
		}
		fmt.Fprintf(tw, "peak RSS (MiB)\t%s\n", strings.Join(parts, ", "))
	}
	for msg, n := range res.ErrorSamples {
		fmt.Fprintf(tw, "error ×%d\t%s\n", n, msg)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	tw.Flush()
}
