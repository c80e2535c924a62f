package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetsaga/jetsaga/client"
)

// sagasMaxPage is the read model's largest page (readmodel.MaxSagaLimit).
const sagasMaxPage = 1000

func sagasCmd(ctx context.Context, args []string) error {
	return runSagas(ctx, os.Stdout, args)
}

// runSagas lists the sagas in flight (or, with --stuck, those stuck) from
// the read model's GET /sagas into w: a table, oldest first, and a footer
// with the counts; or, with --json, the list as the read model gives it.
func runSagas(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("sagas", flag.ContinueOnError)
	var ep endpoints
	ep.flags(fs, "readmodel-url")
	stuck := fs.Bool("stuck", false, "only the sagas stuck: not CONFIRMED or CANCELLED and older than the threshold")
	var olderThan optionalDuration
	fs.Var(&olderThan, "older-than", "the stuck threshold, a `duration` such as 30s (default: the read model's --stuck-after, 1m)")
	limit := fs.Int("limit", 100, "list at most this many sagas, oldest first")
	asJSON := fs.Bool("json", false, "print the list as JSON (GET /sagas), all pages in one")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: usage: jetsaga sagas [--stuck] [--older-than D] [--limit N] [--json]", fs.Arg(0))
	}
	if *limit < 1 {
		return fmt.Errorf("--limit %d: want ≥ 1", *limit)
	}
	q := client.SagaQuery{Stuck: *stuck}
	if olderThan.set {
		q.OlderThan = &olderThan.d
	}
	c := &client.Client{ReadmodelURL: strings.TrimRight(ep.readmodelURL, "/")}
	list, err := fetchSagas(ctx, c, q, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	writeSagas(w, list)
	return nil
}

// optionalDuration is a duration flag that knows whether it was given (on
// the command line or in its environment variable).
type optionalDuration struct {
	d   time.Duration
	set bool
}

func (o *optionalDuration) String() string {
	if o == nil || !o.set {
		return ""
	}
	return o.d.String()
}

func (o *optionalDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("%s: want ≥ 0", s)
	}
	o.d, o.set = d, true
	return nil
}

// fetchSagas reads pages until it has limit sagas or the list ends; the
// result's Next is where a further page would start ("" at the end).
func fetchSagas(ctx context.Context, c *client.Client, q client.SagaQuery, limit int) (client.SagaList, error) {
	var all client.SagaList
	for {
		q.Limit = min(limit-len(all.Sagas), sagasMaxPage)
		page, err := c.Sagas(ctx, q)
		if err != nil {
			return all, err
		}
		if q.After == "" {
			all.State, all.AsOf, all.Counts = page.State, page.AsOf, page.Counts
		}
		all.Sagas = append(all.Sagas, page.Sagas...)
		all.Next = page.Next
		if page.Next == "" || len(all.Sagas) >= limit {
			if all.Sagas == nil {
				all.Sagas = []client.Saga{}
			}
			return all, nil
		}
		q.After = page.Next
	}
}

// writeSagas prints the table and its footer, or one line when there is
// nothing to list.
func writeSagas(w io.Writer, list client.SagaList) {
	cnt := list.Counts
	total, what := cnt.InFlight, "in flight"
	if list.State == "stuck" {
		total, what = cnt.Stuck, fmt.Sprintf("stuck (older than %s)", cnt.StuckAfter)
	}
	if len(list.Sagas) == 0 {
		if list.State == "stuck" {
			fmt.Fprintf(w, "no sagas stuck (older than %s); %d in flight\n", cnt.StuckAfter, cnt.InFlight)
		} else {
			fmt.Fprintln(w, "no sagas in flight")
		}
		return
	}
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tSTATUS\tAGE\tLAST EVENT\tWAITING FOR\tNOTE")
	for _, s := range list.Sagas {
		last := "-"
		if s.LastEvent.Type != "" {
			last = fmt.Sprintf("%s %s ago", s.LastEvent.Type, s.Idle)
		}
		waiting, note := "-", ""
		if wf := s.WaitingFor; wf != nil {
			waiting = fmt.Sprintf("%s (%s)", wf.Service, wf.Action)
			if len(wf.Missing) > 0 {
				note = "read model lacks " + strings.Join(wf.Missing, ", ")
			}
		}
		if s.Stuck && list.State != "stuck" {
			note = strings.TrimPrefix(note+"; stuck", "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.OrderID, s.Status, s.Age, last, waiting, note)
	}
	tw.Flush()
	for line := range strings.Lines(table.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n")) // rows without a note end in padding
	}
	fmt.Fprintf(w, "%d in flight, %d stuck (older than %s)", cnt.InFlight, cnt.Stuck, cnt.StuckAfter)
	if n := int64(len(list.Sagas)); n < total {
		fmt.Fprintf(w, "; showing the oldest %d of %d %s (--limit)", n, total, what)
	}
	fmt.Fprintln(w)
}
