package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/bench"
	"github.com/jetsaga/jetsaga/load"
)

func benchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o bench.Options
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "length of each of the two load runs")
	fs.IntVar(&o.Concurrency, "concurrency", 128, "sagas in flight in the maximum-rate run (closed loop)")
	fs.Float64Var(&o.Rate, "rate", 500, "orders/s offered in the fixed-rate run (open loop)")
	fs.DurationVar(&o.CeilingDuration, "ceiling-duration", 0, "length of each ceiling measurement (default 10s, or --duration when shorter)")
	fs.IntVar(&o.TxClients, "tx-clients", 8, "connections of the Postgres transaction ceiling")
	fs.DurationVar(&o.Drain, "drain", bench.DefaultDrain, "after each load run, wait up to this long for its sagas to end (so that the figures leave none out)")
	fs.BoolVar(&o.Keep, "keep", false, "leave the stack running afterwards (stop it with: bin/jetsaga down --run-dir .run/bench)")
	runDir := fs.String("run-dir", filepath.Join(".run", "bench"), "run folder of the fresh stack (emptied first)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of the table")
	if err := parse(fs, args); err != nil {
		return err
	}
	o.Stack = localStack(absRunDir(*runDir))
	o.Log = cliLogger()
	o.Out = os.Stderr
	o.Progress = func(string) func(load.Progress) { return progressReporter(os.Stderr) }
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.Write(os.Stdout)
	return nil
}

func benchHistoryCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-history", flag.ContinueOnError)
	var o bench.HistoryOptions
	levels := fs.String("levels", "0,100000,1000000", "sagas of history to measure at, comma-separated")
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "length of each level's load run (closed loop)")
	fs.IntVar(&o.Concurrency, "concurrency", 128, "sagas in flight in each load run")
	fs.DurationVar(&o.Drain, "drain", bench.DefaultDrain, "after each load run, wait up to this long for its sagas to end")
	fs.DurationVar(&o.FillTimeout, "fill-timeout", 2*time.Hour, "wait up to this long for a level's filled sagas to end")
	fs.IntVar(&o.FillBacklog, "fill-backlog", 100_000, "during a fill, start the services once this many orders wait and publish the rest while they drain (0: publish the whole level first)")
	fs.BoolVar(&o.Check, "check", false, "after the last level, run jetsaga check over the whole history (scans every stream)")
	fs.BoolVar(&o.Keep, "keep", false, "leave the stack running afterwards (stop it with: bin/jetsaga down --run-dir .run/history)")
	runDir := fs.String("run-dir", filepath.Join(".run", "history"), "run folder of the fresh stack (emptied first)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of the table")
	if err := parse(fs, args); err != nil {
		return err
	}
	for part := range strings.SplitSeq(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.ReplaceAll(part, "_", "")))
		if err != nil || n < 0 {
			return fmt.Errorf("--levels %q: %q is not a number of sagas", *levels, part)
		}
		o.Levels = append(o.Levels, n)
	}
	o.Stack = localStack(absRunDir(*runDir))
	o.Log = cliLogger()
	o.Out = os.Stderr
	o.Progress = func(string) func(load.Progress) { return progressReporter(os.Stderr) }
	o.OnLevel = func(rep bench.HistoryReport) {
		fmt.Fprintln(os.Stderr, "so far:")
		rep.Write(os.Stderr)
	}
	rep, err := bench.RunHistory(ctx, o)
	if *asJSON && len(rep.Levels) > 0 {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rep); jerr != nil && err == nil {
			err = jerr
		}
	} else if len(rep.Levels) > 0 {
		rep.Write(os.Stdout)
	}
	return err
}
