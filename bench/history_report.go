package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Write prints the history report as Markdown tables, the form
// BENCHMARKS.md keeps.
func (rep HistoryReport) Write(w io.Writer) {
	fmt.Fprintf(w, "Machine: %s. Began %s, took %s.\n\n", rep.Machine, rep.Began.Format("2006-01-02 15:04 UTC"), rep.Took.Round(time.Second))
	header := []string{""}
	sep := []string{"---"}
	for _, l := range rep.Levels {
		header = append(header, fmt.Sprintf("%d sagas of history", l.History))
		sep = append(sep, "---")
	}
	fmt.Fprintf(w, "| %s |\n| %s |\n", strings.Join(header, " | "), strings.Join(sep, " | "))
	row := func(name string, f func(LevelReport) string) {
		cells := []string{name}
		for _, l := range rep.Levels {
			cells = append(cells, f(l))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	row("filled: orders / publish / drain / total / sagas/s", func(l LevelReport) string {
		if l.Fill == nil {
			return "—"
		}
		return fmt.Sprintf("%d / %s / %s / %s / %.0f", l.Fill.Orders, l.Fill.Took.Round(time.Second), l.Fill.Drain.Round(time.Second),
			l.Fill.Total.Round(time.Second), l.Fill.SagasPerSec)
	})
	row("load average at the run's start", func(l LevelReport) string { return l.LoadAvg })
	row("sagas/s completed (closed loop)", func(l LevelReport) string { return fmt.Sprintf("**%.1f**", l.Result.SagasPerSec) })
	row("completed / not terminal / errors", func(l LevelReport) string {
		return fmt.Sprintf("%d / %d / %d", l.Result.Completed, l.Result.NotTerminal, l.Result.Errors)
	})
	row("latency p50 / p99 / max (ms)", func(l LevelReport) string {
		return fmt.Sprintf("%.1f / **%.1f** / %.1f", l.Result.LatencyMS.P50, l.Result.LatencyMS.P99, l.Result.LatencyMS.Max)
	})
	row("read-model lag p50 / p99 (ms)", func(l LevelReport) string {
		return fmt.Sprintf("%.1f / %.1f", l.Result.LagMS.P50, l.Result.LagMS.P99)
	})
	row("CPU ms per saga", func(l LevelReport) string {
		if l.Result.CPUMSPerSaga == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", *l.Result.CPUMSPerSaga)
	})
	row("CPU ms per saga by process", func(l LevelReport) string { return byProcess(l.Result.CPUMSPerSagaByProcess, "%.2f") })
	row("nats-server RSS after the run / peak since start (MiB)", func(l LevelReport) string {
		return fmt.Sprintf("%.0f / %.0f", l.NATSRSSMiB, l.Result.PeakRSSMiB["nats"])
	})
	row("nats store on disk (MiB)", func(l LevelReport) string { return fmt.Sprintf("%.0f", mib(l.NATSStoreBytes)) })
	for i := range maxLen(rep.Levels, func(l LevelReport) int { return len(l.Streams) }) {
		name := rep.Levels[len(rep.Levels)-1].Streams[i].Name
		row("stream "+name+" msgs / MiB / subjects", func(l LevelReport) string {
			for _, s := range l.Streams {
				if s.Name == name {
					return fmt.Sprintf("%d / %.0f / %d", s.Msgs, mib(int64(s.Bytes)), s.Subjects)
				}
			}
			return "—"
		})
	}
	row("database size (MiB)", func(l LevelReport) string { return fmt.Sprintf("%.0f", mib(l.Postgres)) })
	if len(rep.Levels) > 0 {
		for _, t := range rep.Levels[len(rep.Levels)-1].Tables {
			row(t.Name+" MiB (indexes) rows/dead", func(l LevelReport) string {
				for _, u := range l.Tables {
					if u.Name == t.Name {
						return fmt.Sprintf("%.1f (%.1f) %d/%d", mib(u.Total), mib(u.Indexes), u.Live, u.Dead)
					}
				}
				return "—"
			})
		}
	}
	if rep.Check != nil {
		fmt.Fprintf(w, "\njetsaga check after the last level: ")
		if rep.Check.OK() {
			fmt.Fprintf(w, "every invariant holds over %s orders (%s).\n", orderTotal(rep.Check.Orders), rep.Check.Took.Round(time.Second))
		} else {
			fmt.Fprintf(w, "VIOLATIONS of invariants %v (%s):\n\n", rep.Check.Failed(), rep.Check.Took.Round(time.Second))
			rep.Check.Write(w)
		}
	}
}

func maxLen(ls []LevelReport, f func(LevelReport) int) int {
	n := 0
	for _, l := range ls {
		n = max(n, f(l))
	}
	return n
}

func orderTotal(m map[string]int) string {
	n := 0
	for _, v := range m {
		n += v
	}
	return fmt.Sprint(n)
}
