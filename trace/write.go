package trace

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jetsaga/jetsaga/internal/stream"
)

// timeLayout prints occurrence times in UTC to the millisecond.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Write prints hops, as Load returns them, as a tree of causes: a summary
// line (events, total saga duration), then one line per event, indented under
// its cause, with its id, its latency since its cause ("(root)" for
// order.created), when it occurred and where it is stored; then a line per
// dead letter.
//
//	saga 0190...: 4 events in 5ms, order.created → order.confirmed
//	order.created          0190...  (root)  2026-11-24T06:00:00.123Z  ORDERS #1
//	└ inventory.reserved   0190...  +3.2ms  2026-11-24T06:00:00.126Z  INVENTORY #1
//	  └ payment.completed  0190...  +1.1ms  2026-11-24T06:00:00.127Z  PAYMENTS #1
//	    └ order.confirmed  0190...  +700µs  2026-11-24T06:00:00.128Z  ORDERS #2
func Write(w io.Writer, hops []Hop) {
	var b strings.Builder
	var events, dead []Hop
	for _, h := range hops {
		if h.Stream == stream.DLQ {
			dead = append(dead, h)
		} else {
			events = append(events, h)
		}
	}
	if len(hops) == 0 {
		b.WriteString("no events for this order\n")
		_, _ = io.WriteString(w, b.String())
		return
	}
	b.WriteString(summary(events, dead))

	labels := treeLabels(events)
	known := make(map[string]bool, len(events))
	for _, h := range events {
		known[h.EventID] = true
	}
	labelWidth, idWidth, latWidth := 0, 0, 0
	lats := make([]string, len(events))
	for i, h := range events {
		lats[i] = latency(h, known)
		labelWidth = max(labelWidth, utf8.RuneCountInString(labels[i]))
		idWidth = max(idWidth, len(h.EventID))
		latWidth = max(latWidth, utf8.RuneCountInString(lats[i]))
	}
	for i, h := range events {
		at := "no occurred-at"
		if !h.OccurredAt.IsZero() {
			at = h.OccurredAt.UTC().Format(timeLayout)
		}
		fmt.Fprintf(&b, "%s  %s  %s  %s  %s #%d\n",
			pad(labels[i], labelWidth), pad(h.EventID, idWidth), pad(lats[i], latWidth), at, h.Stream, h.Seq)
	}
	for _, h := range dead {
		fmt.Fprintf(&b, "dead letter %s #%d %s (consumer %s, event %s): %s\n",
			h.Stream, h.Seq, h.Subject, or(h.Consumer, "?"), or(h.EventID, "?"), or(h.DeadLetter, "no error given"))
	}
	_, _ = io.WriteString(w, b.String())
}

// summary is the first line: the order, how many events, how long the saga
// took from its first to its last event, and how it started and ended.
func summary(events, dead []Hop) string {
	var b strings.Builder
	orderID := "?"
	for _, h := range append(events[:len(events):len(events)], dead...) {
		if h.OrderID != "" {
			orderID = h.OrderID
			break
		}
	}
	fmt.Fprintf(&b, "saga %s: %d %s", orderID, len(events), plural(len(events), "event", "events"))
	var first, last *Hop
	for i := range events {
		h := &events[i]
		if h.OccurredAt.IsZero() {
			continue
		}
		if first == nil || h.OccurredAt.Before(first.OccurredAt) {
			first = h
		}
		if last == nil || !h.OccurredAt.Before(last.OccurredAt) {
			last = h
		}
	}
	if first != nil {
		fmt.Fprintf(&b, " in %s, %s → %s", duration(last.OccurredAt.Sub(first.OccurredAt)), first.Type, last.Type)
	}
	if len(dead) > 0 {
		fmt.Fprintf(&b, "; %d dead %s", len(dead), plural(len(dead), "letter", "letters"))
	}
	b.WriteByte('\n')
	return b.String()
}

// treeLabels returns, per event, its type behind the tree's branches:
// "└ " for the last child of its cause, "├ " for the others, and "│ " or
// "  " for each level above.
func treeLabels(events []Hop) []string {
	last := make([]bool, len(events)) // last child of its parent
	for i, h := range events {
		last[i] = true
		for _, next := range events[i+1:] {
			if next.Depth < h.Depth {
				break
			}
			if next.Depth == h.Depth {
				last[i] = false
				break
			}
		}
	}
	labels := make([]string, len(events))
	var path []bool // path[d]: the ancestor at depth d+1 is a last child
	for i, h := range events {
		if h.Depth == 0 {
			path = path[:0]
			labels[i] = string(h.Type)
			continue
		}
		path = append(path[:min(len(path), h.Depth-1)], last[i])
		var b strings.Builder
		for _, lastAbove := range path[:len(path)-1] {
			if lastAbove {
				b.WriteString("  ")
			} else {
				b.WriteString("│ ")
			}
		}
		if last[i] {
			b.WriteString("└ ")
		} else {
			b.WriteString("├ ")
		}
		b.WriteString(string(h.Type))
		labels[i] = b.String()
	}
	return labels
}

// latency is a hop's latency column.
func latency(h Hop, known map[string]bool) string {
	switch {
	case h.Depth > 0 && h.OccurredAt.IsZero():
		return "?"
	case h.Depth > 0:
		return "+" + duration(h.Latency)
	case h.CausationID != "" && !known[h.CausationID]:
		return "(cause " + h.CausationID + " not found)"
	default:
		return "(root)"
	}
}

// duration rounds d for reading: microseconds below a millisecond, a tenth of
// a millisecond below a second, milliseconds above.
func duration(d time.Duration) string {
	abs := d.Abs()
	switch {
	case abs < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case abs < time.Second:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

func pad(s string, width int) string {
	if n := utf8.RuneCountInString(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
