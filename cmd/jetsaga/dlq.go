package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/jetsaga/jetsaga/internal/access"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetsaga/jetsaga/dlq"
)

const dlqUsage = `usage:
  jetsaga dlq ls [--service S] [--json]          the dead letters, oldest first
  jetsaga dlq show SEQ                           one dead letter: headers, body, error
  jetsaga dlq replay SEQ... | --all [--service S] [--dry-run]
                    hand dead letters again to the consumer that dead-lettered them
  jetsaga dlq purge [--service S]                remove dead letters for good
`

// dlqCmd runs jetsaga dlq: ls, show, replay, purge.
func dlqCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, dlqUsage)
		if len(args) == 0 {
			return exitError{code: 2}
		}
		return nil
	}
	sub, args := args[0], args[1:]
	cmds := map[string]func(context.Context, []string) error{
		"ls": dlqLs, "show": dlqShow, "replay": dlqReplay, "purge": dlqPurge,
	}
	run, ok := cmds[sub]
	if !ok {
		fmt.Fprintf(os.Stderr, "jetsaga dlq: unknown command %q\n\n%s", sub, dlqUsage)
		return exitError{code: 2}
	}
	return run(ctx, args)
}

func dlqLs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dlq ls", flag.ContinueOnError)
	ep := endpoints{identity: access.Operator}
	ep.flags(fs, "nats-url")
	service := fs.String("service", "", "only the dead letters of this service")
	asJSON := fs.Bool("json", false, "one JSON array of the dead letters, for scripts")
	if err := parse(fs, args); err != nil {
		return err
	}
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	entries, err := dlq.List(ctx, js, *service)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(append([]dlq.Entry{}, entries...))
	}
	writeEntries(os.Stdout, entries)
	return nil
}

// writeEntries prints entries as a table, the error cut to fit a line.
func writeEntries(w io.Writer, entries []dlq.Entry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tWHEN\tSERVICE\tSUBJECT\tEVENT TYPE\tORDER\tDELIVERIES\tERROR")
	for _, e := range entries {
		cause := e.Error
		if len(e.Truncated) > 0 {
			cause = "[truncated " + strings.Join(e.Truncated, ",") + "] " + cause
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Seq, e.Time.Format(time.DateTime), or(e.Service, "?"),
			cut(e.Subject, 60), or(e.EventType, "?"), or(e.OrderID, "?"), e.Deliveries, cut(cause, 80))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%s (times UTC); jetsaga dlq show SEQ for one\n", deadLetters(len(entries)))
}

func dlqShow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dlq show", flag.ContinueOnError)
	ep := endpoints{identity: access.Operator}
	ep.flags(fs, "nats-url")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: jetsaga dlq show SEQ")
	}
	seq, err := strconv.ParseUint(fs.Arg(0), 10, 64)
	if err != nil {
		return fmt.Errorf("SEQ %q: want a DLQ sequence number (jetsaga dlq ls lists them)", fs.Arg(0))
	}
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := dlq.Get(ctx, js, seq)
	if err != nil {
		return err
	}
	writeMessage(os.Stdout, m)
	return nil
}

// writeMessage prints one dead letter: where it came from, its headers
// (sorted), its body, and its error.
func writeMessage(w io.Writer, m dlq.Message) {
	fmt.Fprintf(w, "DLQ #%d  %s  dead-lettered by %s (%s) after %d deliveries\n", m.Seq, m.Time.Format(time.RFC3339Nano),
		or(m.Consumer, "?"), or(m.Service, "?"), m.Deliveries)
	fmt.Fprintf(w, "message: %s #%d %s\n", or(m.Stream, "?"), m.StreamSeq, or(m.Subject, "?"))
	fmt.Fprintln(w, "\nheaders:")
	keys := make([]string, 0, len(m.Header))
	for k := range m.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range m.Header[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
	fmt.Fprintf(w, "\nbody (%d bytes", len(m.Body))
	if len(m.Truncated) > 0 {
		fmt.Fprintf(w, " of %d; truncated: %s", m.BodySize, strings.Join(m.Truncated, ","))
	}
	fmt.Fprintf(w, "):\n%s\n", m.Body)
	fmt.Fprintf(w, "\nerror:\n%s\n", or(m.Error, "(none given)"))
	if err := m.Replayable(); err != nil {
		fmt.Fprintf(w, "\ncannot be replayed: %v\n", err)
	}
}

func dlqReplay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	ep := endpoints{identity: access.Operator}
	ep.flags(fs, "nats-url")
	all := fs.Bool("all", false, "replay every dead letter (of --service)")
	service := fs.String("service", "", "only the dead letters of this service")
	dryRun := fs.Bool("dry-run", false, "say what would be replayed; change nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *all == (fs.NArg() > 0) {
		return errors.New("usage: jetsaga dlq replay SEQ... | --all [--service S] [--dry-run]")
	}
	var seqs []uint64
	for _, a := range fs.Args() {
		seq, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return fmt.Errorf("SEQ %q: want a DLQ sequence number (jetsaga dlq ls lists them)", a)
		}
		seqs = append(seqs, seq)
	}
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	var replayed, skipped int
	err = dlq.Replay(ctx, js, seqs, dlq.Options{Service: *service, DryRun: *dryRun}, func(o dlq.Outcome) {
		if o.Skipped != nil {
			skipped++
			fmt.Printf("skipped DLQ #%d: %v\n", o.Seq, o.Skipped)
			return
		}
		replayed++
		fmt.Printf("%s DLQ #%d: %s (event %s) for %s, on %s\n", verb, o.Seq, o.Subject, o.EventID, o.Consumer, o.To)
	})
	if replayed+skipped > 0 || err == nil {
		fmt.Printf("%s %d, skipped %d\n", verb, replayed, skipped)
	}
	if err != nil {
		return err
	}
	if len(seqs) > 0 && skipped > 0 {
		return exitError{code: 1}
	}
	return nil
}

func dlqPurge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dlq purge", flag.ContinueOnError)
	ep := endpoints{identity: access.Operator}
	ep.flags(fs, "nats-url")
	service := fs.String("service", "", "only the dead letters of this service")
	if err := parse(fs, args); err != nil {
		return err
	}
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	gone, err := dlq.Purge(ctx, js, *service)
	if err != nil {
		return err
	}
	fmt.Print(purgeReport(gone))
	return nil
}

// purgeReport says what a purge removed: how many dead letters, per
// service, and their sequences.
func purgeReport(gone []dlq.Entry) string {
	if len(gone) == 0 {
		return "purged nothing: no dead letters\n"
	}
	per := map[string]int{}
	var names []string
	for _, e := range gone {
		if per[e.Service] == 0 {
			names = append(names, e.Service)
		}
		per[e.Service]++
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", or(n, "?"), per[n])
	}
	return fmt.Sprintf("purged %s (%s), DLQ #%d to #%d; the services' dead_letters tables still record them (jetsaga check reports them)\n",
		deadLetters(len(gone)), strings.Join(parts, ", "), gone[0].Seq, gone[len(gone)-1].Seq)
}

func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return strconv.Itoa(n) + " dead letters"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// cut shortens s to n bytes with an ellipsis.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}
