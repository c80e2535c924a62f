package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/jetsaga/jetsaga/load"
)

// Write prints the report as a Markdown table, the form BENCHMARKS.md keeps.
func (rep Report) Write(w io.Writer) {
	fmt.Fprintf(w, "Machine: %s. Began %s, took %s.\n\n", rep.Machine, rep.Began.Format("2006-01-02 15:04 UTC"), rep.Took.Round(1e9))
	fmt.Fprintf(w, "Ceilings, each measured alone on the same stack:\n\n")
	fmt.Fprintf(w, "- publish: **%.0f msgs/s** — %s\n", rep.Publish.PerSec, rep.Publish.What)
	fmt.Fprintf(w, "- transactions: **%.0f tx/s** — %s\n\n", rep.Transaction.PerSec, rep.Transaction.What)

	header := []string{""}
	sep := []string{"---"}
	for _, r := range rep.Runs {
		header = append(header, r.Name)
		sep = append(sep, "---")
	}
	row := func(name string, f func(RunReport) string) {
		cells := []string{name}
		for _, r := range rep.Runs {
			cells = append(cells, f(r))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintf(w, "| %s |\n| %s |\n", strings.Join(header, " | "), strings.Join(sep, " | "))
	row("sagas/s completed", func(r RunReport) string { return fmt.Sprintf("**%.1f**", r.Result.SagasPerSec) })
	row("orders/s sent", func(r RunReport) string { return fmt.Sprintf("%.1f", r.Result.SentPerSec) })
	row("completed / not terminal / errors", func(r RunReport) string {
		return fmt.Sprintf("%d / %d / %d", r.Result.Completed, r.Result.NotTerminal, r.Result.Errors)
	})
	row("latency 202→terminal p50 / p90 / p99 / p99.9 / max (ms)", func(r RunReport) string { return pct(r.Result.LatencyMS) })
	row("latency due→terminal p50 / p90 / p99 / p99.9 / max (ms)", func(r RunReport) string { return pct(r.Result.LatencyFromScheduledMS) })
	row("read-model lag p50 / p99 (ms)", func(r RunReport) string {
		return fmt.Sprintf("%.1f / %.1f", r.Result.LagMS.P50, r.Result.LagMS.P99)
	})
	row("CPU ms per saga (services + nats + postgres)", func(r RunReport) string {
		if r.Result.CPUMSPerSaga == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", *r.Result.CPUMSPerSaga)
	})
	row("CPU ms per saga by process", func(r RunReport) string { return byProcess(r.Result.CPUMSPerSagaByProcess, "%.2f") })
	row("context switches per saga", func(r RunReport) string {
		if r.Result.ContextSwitchesPerSaga == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.0f (%s)", *r.Result.ContextSwitchesPerSaga, byProcess(r.Result.ContextSwitchesPerSagaByProcess, "%.0f"))
	})
	row("peak RSS MiB", func(r RunReport) string { return byProcess(r.Result.PeakRSSMiB, "%.0f") })
	row("events published per saga", func(r RunReport) string { return fmt.Sprintf("%.2f", r.EventsPerSaga) })
	row("messages handled per saga", func(r RunReport) string { return fmt.Sprintf("%.2f", r.HandlingsPerSaga) })
	row("Postgres commits per saga", func(r RunReport) string { return fmt.Sprintf("%.2f", r.TxPerSaga) })
	row("message rate / publish ceiling", func(r RunReport) string {
		return fmt.Sprintf("%.0f / %.0f = %.1f%%", r.Result.SagasPerSec*r.EventsPerSaga, rep.Publish.PerSec, 100*r.PublishShare)
	})
	row("transaction rate / transaction ceiling", func(r RunReport) string {
		return fmt.Sprintf("%.0f / %.0f = %.1f%%", r.Result.SagasPerSec*r.TxPerSaga, rep.Transaction.PerSec, 100*r.TxShare)
	})
	var notes []string
	for _, r := range rep.Runs {
		for _, n := range r.Result.Notes {
			notes = append(notes, r.Name+": "+n)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

func pct(p load.Percentiles) string {
	return fmt.Sprintf("%.1f / %.1f / %.1f / %.1f / %.1f", p.P50, p.P90, p.P99, p.P999, p.Max)
}

func byProcess(m map[string]float64, format string) string {
	if len(m) == 0 {
		return "n/a"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if name == "load" {
			continue
		}
		parts = append(parts, name+" "+fmt.Sprintf(format, m[name]))
	}
	return strings.Join(parts, ", ")
}
