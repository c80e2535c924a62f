package chaos

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/stack"
)

// Outcome is how many orders ended one way in the order service.
type Outcome struct {
	Status string // CONFIRMED, CANCELLED (or PENDING, RESERVED if not terminal)
	Reason string // for CANCELLED: out_of_stock, unknown_sku, payment_failed
	Orders int
}

// Report is what a chaos run did and found.
type Report struct {
	Options Options // the settings the run used (defaults filled in)

	// Placing.
	Scripted int            // orders the run meant to place
	Placed   int            // orders the order service accepted (202), each once
	Kinds    map[string]int // placed orders by kind of script: ordinary, scarce, expensive, unknown
	Retries  int            // POST /orders sent again (same Idempotency-Key) after a failure
	Replayed int            // answers that were idempotent replays: an earlier attempt had placed the order
	PlaceErr []string       // why orders could not be placed (at most 20 listed)

	// Outcomes, from orders.orders.
	OrderRows   int            // rows in orders.orders; must equal Placed
	Outcomes    []Outcome      // by status and reason
	Payments    map[string]int // payment.payments rows by status: COMPLETED, FAILED, REFUNDED (a timed-out order's charge given back), CANCELLED (timed out before its charge)
	NotTerminal []string       // placed orders not terminal in the read model when the wait ended (at most 20 listed)
	Stuck       int            // how many placed orders that is in all

	// Messages JetStream stopped delivering after MaxDeliver deliveries
	// without an ack (its max_deliver advisories): never handled to the end
	// by that consumer, and not in the DLQ either.
	Dropped     int
	DroppedList []string // the first 20

	// Poison: the hostile messages injected (--poison) and what became of
	// each.
	Poison []poison

	// Faults and failures.
	Faults   map[string]map[string]int // service -> fault -> count, from the services' logs
	Kills    map[string]int            // kill target (a service, "nats-server", "postgres") -> count
	Restarts map[string]Restarts       // service -> the supervisor's restarts

	// Timing.
	StackUp   time.Duration // fresh stack until every service was ready
	Placing   time.Duration // first order sent until the last accepted
	Settle    time.Duration // last order accepted until quiescence (or until the wait gave up)
	Quiet     bool          // the system quiesced
	QuietErr  string        // why it did not
	Took      time.Duration // the whole run, teardown included
	Check     check.Report  // jetsaga check after quiescence (Deadline 0)
	RunDir    string        // where the logs are
	KeptStack bool          // the stack was left running (--keep)
}

// OK reports a clean run: every order placed once and terminal, the system
// quiet, every invariant holding.
func (r Report) OK() bool {
	return r.Placed == r.Scripted && r.OrderRows == r.Placed && r.Stuck == 0 && r.Quiet && r.Check.OK() &&
		r.unaccounted() == 0
}

// unaccounted counts the poison messages whose fate is not known.
func (r Report) unaccounted() int {
	n := 0
	for _, p := range r.Poison {
		if !p.accounted() {
			n++
		}
	}
	return n
}

// FaultTotals sums Faults over the services.
func (r Report) FaultTotals() map[string]int {
	t := map[string]int{}
	for _, byFault := range r.Faults {
		for f, n := range byFault {
			t[f] += n
		}
	}
	return t
}

// faultOrder lists the faults the run switches on first, then any other.
var faultOrder = []string{"crash_after_commit", "crash_after_publish", "duplicate_publish", "redeliver"}

// Write prints the report.
func (r Report) Write(w io.Writer) {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "jetsaga chaos — seed %d\n", o.Seed)
	fmt.Fprintf(&b, "settings: %d orders at %g/s by %d workers; every service --inject-crash-after-commit=%g --inject-duplicate-publish=%g --inject-redeliver=%g --ack-wait=%s\n",
		o.Orders, o.Rate, o.Workers, o.Crash, o.Duplicate, o.Redeliver, o.AckWait)
	var chaos []string
	if o.Deadline > 0 {
		chaos = append(chaos, fmt.Sprintf("order --saga-deadline=%s", o.Deadline))
	}
	if o.KillEvery > 0 {
		chaos = append(chaos, fmt.Sprintf("kill -9 a random service every %s", o.KillEvery))
	}
	if o.NATSKill {
		chaos = append(chaos, "kill -9 nats-server once")
	}
	if o.PGRestart {
		chaos = append(chaos, "pg_ctl stop -m immediate once")
	}
	if len(chaos) == 0 {
		chaos = append(chaos, "no kills")
	}
	fmt.Fprintf(&b, "          %s\n\n", strings.Join(chaos, "; "))

	fmt.Fprintf(&b, "orders: %d of %d placed", r.Placed, r.Scripted)
	kinds := make([]string, 0, len(r.Kinds))
	for _, k := range []string{kindOrdinary, kindScarce, kindExpensive, kindUnknown} {
		if n := r.Kinds[k]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
	}
	if len(kinds) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(kinds, ", "))
	}
	fmt.Fprintf(&b, "; %d retried POSTs, %d idempotent replays; %d rows in orders.orders", r.Retries, r.Replayed, r.OrderRows)
	if r.OrderRows != r.Placed {
		fmt.Fprintf(&b, "  <-- FAIL: want %d", r.Placed)
	}
	b.WriteByte('\n')
	for _, e := range r.PlaceErr {
		fmt.Fprintf(&b, "    not placed: %s\n", e)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, oc := range r.Outcomes {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", oc.Status, oc.Reason, oc.Orders)
	}
	fmt.Fprintf(tw, "  not terminal\t\t%d\n", r.Stuck)
	tw.Flush()
	if len(r.Payments) > 0 {
		var ps []string
		for _, st := range []string{"COMPLETED", "FAILED", "REFUNDED", "CANCELLED"} {
			ps = append(ps, fmt.Sprintf("%d %s", r.Payments[st], st))
		}
		fmt.Fprintf(&b, "payments: %s\n", strings.Join(ps, ", "))
	}
	for _, s := range r.NotTerminal {
		fmt.Fprintf(&b, "    %s\n", s)
	}
	if more := r.Stuck - len(r.NotTerminal); more > 0 {
		fmt.Fprintf(&b, "    ... and %d more\n", more)
	}
	b.WriteByte('\n')

	b.WriteString("faults injected (counted in the services' logs):\n")
	totals := r.FaultTotals()
	faults := make([]string, 0, len(totals))
	for f := range totals {
		faults = append(faults, f)
	}
	slices.SortFunc(faults, func(a, c string) int {
		ia, ic := rank(faultOrder, a), rank(faultOrder, c)
		return cmp.Or(cmp.Compare(ia, ic), cmp.Compare(a, c))
	})
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  FAULT\t%s\tTOTAL\t\n", strings.ToUpper(strings.Join(stack.Services, "\t")))
	for _, f := range faults {
		fmt.Fprintf(tw, "  %s\t", f)
		for _, s := range stack.Services {
			fmt.Fprintf(tw, "%d\t", r.Faults[s][f])
		}
		fmt.Fprintf(tw, "%d\t\n", totals[f])
	}
	if len(faults) == 0 {
		fmt.Fprintf(tw, "  none\t\n")
	}
	tw.Flush()
	b.WriteByte('\n')

	b.WriteString("kills and restarts:\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  PROCESS\tKILLED BY CHAOS\tRESTARTS\tAFTER CRASH (exit 3)\tAFTER KILL -9\tOTHER\t\n")
	var kills, restarts int
	for _, s := range stack.Services {
		rs := r.Restarts[s]
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\t\n", s, r.Kills[s], rs.Total(), rs.Crashed, rs.Killed, rs.Other)
		kills += r.Kills[s]
		restarts += rs.Total()
	}
	fmt.Fprintf(tw, "  nats-server\t%d\t%d\t\t\t\t\n", r.Kills[targetNATS], r.Kills[targetNATS])
	fmt.Fprintf(tw, "  postgres\t%d\t%d\t\t\t\t\n", r.Kills[targetPostgres], r.Kills[targetPostgres])
	tw.Flush()
	fmt.Fprintf(&b, "  (nats-server: kill -9, started again on the same store by the run; postgres: pg_ctl stop -m immediate, then start)\n\n")

	if r.Dropped > 0 {
		fmt.Fprintf(&b, "JetStream gave up on %d messages after MaxDeliver deliveries without an ack (max_deliver advisories; not dead-lettered):\n", r.Dropped)
		for _, d := range r.DroppedList {
			fmt.Fprintf(&b, "    %s\n", d)
		}
		if more := r.Dropped - len(r.DroppedList); more > 0 {
			fmt.Fprintf(&b, "    ... and %d more\n", more)
		}
		b.WriteByte('\n')
	}

	if len(r.Poison) > 0 {
		refused, stored, letters := 0, 0, 0
		for _, p := range r.Poison {
			if p.Stream != "" {
				stored++
				letters += len(p.Letters)
			} else if p.Refused != "" {
				refused++
			}
		}
		fmt.Fprintf(&b, "poison: %d injected: %d refused by their stream, %d stored and dead-lettered by every consumer that takes them (%d dead letters), %d unaccounted\n",
			len(r.Poison), refused, stored, letters, r.unaccounted())
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for i, p := range r.Poison {
			verdict := "ok"
			if !p.accounted() {
				verdict = "UNACCOUNTED"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", i+1, p.Kind, p.Subject, p.fate(), verdict)
		}
		tw.Flush()
		b.WriteByte('\n')
	}

	fmt.Fprintf(&b, "timing: stack up %s, placing %s, last order to quiescence %s, check %s, whole run %s\n",
		round(r.StackUp), round(r.Placing), round(r.Settle), round(r.Check.Took), round(r.Took))
	if !r.Quiet {
		fmt.Fprintf(&b, "NOT QUIET: %s\n", r.QuietErr)
	}
	b.WriteByte('\n')

	if len(r.Check.Results) > 0 {
		b.WriteString("jetsaga check:\n")
		_, _ = io.WriteString(w, b.String())
		b.Reset()
		r.Check.Write(w)
		b.WriteByte('\n')
	}
	if r.OK() {
		poisoned := ""
		if len(r.Poison) > 0 {
			poisoned = "; " + count(len(r.Poison), "poison message", "poison messages") + ", each accounted for"
		}
		fmt.Fprintf(&b, "PASS: %d orders placed once and terminal; %s injected; %s of services, %d of nats-server; %s; %s%s; every invariant holds\n",
			r.Placed, count(sum(totals), "fault", "faults"), count(kills, "kill -9", "kill -9s"), r.Kills[targetNATS],
			count(r.Kills[targetPostgres], "Postgres crash (stop -m immediate)", "Postgres crashes (stop -m immediate)"),
			count(restarts, "restart", "restarts"), poisoned)
	} else {
		fmt.Fprintf(&b, "FAIL:%s\n", r.failures())
	}
	fmt.Fprintf(&b, "logs: %s/logs/", r.RunDir)
	if r.KeptStack {
		fmt.Fprintf(&b, " (stack left running: bin/jetsaga down --run-dir %s)", r.RunDir)
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(w, b.String())
}

// failures says in a few words why a run is not OK.
func (r Report) failures() string {
	var why []string
	if r.Placed != r.Scripted {
		why = append(why, fmt.Sprintf("%d of %d orders placed", r.Placed, r.Scripted))
	}
	if r.OrderRows != r.Placed {
		why = append(why, fmt.Sprintf("%d orders in the order service for %d placed", r.OrderRows, r.Placed))
	}
	if r.Stuck > 0 {
		why = append(why, fmt.Sprintf("%d orders not terminal", r.Stuck))
	}
	if !r.Quiet {
		why = append(why, "not quiet")
	}
	if n := r.unaccounted(); n > 0 {
		why = append(why, fmt.Sprintf("%d poison messages unaccounted for", n))
	}
	if len(r.Check.Results) == 0 {
		why = append(why, "check did not run")
	} else if failed := r.Check.Failed(); len(failed) > 0 {
		why = append(why, fmt.Sprintf("invariants %v violated", failed))
	}
	return " " + strings.Join(why, "; ")
}

func rank(order []string, s string) int {
	if i := slices.Index(order, s); i >= 0 {
		return i
	}
	return len(order)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func round(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second / 10)
	}
	return d.Round(time.Millisecond)
}

// count is n and the noun for it: "1 restart", "3 restarts".
func count(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
