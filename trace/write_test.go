package trace_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/trace"
)

// id makes a readable fake event id.
func id(n int) string { return fmt.Sprintf("0190e000-0000-7000-8000-%012d", n) }

func hop(n int, typ event.Type, cause int, afterMs float64, streamName string, seq uint64) trace.Hop {
	h := trace.Hop{
		Seq: seq, Stream: streamName, Type: typ, EventID: id(n),
		Subject:    event.Subject(typ, "o-7"),
		OrderID:    "o-7",
		OccurredAt: t0.Add(time.Duration(afterMs * float64(time.Millisecond))),
	}
	if cause > 0 {
		h.CausationID = id(cause)
	}
	return h
}

func TestSortBranchesAndOrphans(t *testing.T) {
	t.Parallel()
	// Given in no particular order: a saga that forked (two payment
	// decisions for one reservation, as a broken payment service would
	// make), a copy of an event, and an event whose cause is missing.
	in := []trace.Hop{
		hop(5, event.OrderCancelled, 99, 9, "ORDERS", 3),
		hop(4, event.PaymentFailed, 2, 2, "PAYMENTS", 2),
		hop(3, event.PaymentCompleted, 2, 1, "PAYMENTS", 1),
		hop(6, event.OrderConfirmed, 3, 3, "ORDERS", 2),
		hop(1, event.OrderCreated, 0, 0, "ORDERS", 1),
		hop(2, event.InventoryReserved, 1, 0.5, "INVENTORY", 1),
		hop(3, event.PaymentCompleted, 2, 1, "PAYMENTS", 3), // copy
	}
	hops := trace.Sort(in)
	want := []struct {
		n       int
		seq     uint64
		depth   int
		latency time.Duration
	}{
		{1, 1, 0, 0},
		{2, 1, 1, 500 * time.Microsecond},
		{3, 1, 2, 500 * time.Microsecond},
		{6, 2, 3, 2 * time.Millisecond},
		{4, 2, 2, 1500 * time.Microsecond},
		{5, 3, 0, 0},
	}
	if len(hops) != len(want) {
		t.Fatalf("%d hops, want %d: %+v", len(hops), len(want), hops)
	}
	for i, w := range want {
		if h := hops[i]; h.EventID != id(w.n) || h.Seq != w.seq || h.Depth != w.depth || h.Latency != w.latency {
			t.Errorf("hop %d: %s #%d depth %d latency %v; want event %d #%d depth %d latency %v",
				i, h.EventID, h.Seq, h.Depth, h.Latency, w.n, w.seq, w.depth, w.latency)
		}
	}

	var b bytes.Buffer
	trace.Write(&b, hops)
	got := b.String()
	wantOut := `saga o-7: 6 events in 9ms, order.created → order.cancelled
order.created          ` + id(1) + `  (root)                                                  2026-11-24T06:00:00.123Z  ORDERS #1
└ inventory.reserved   ` + id(2) + `  +500µs                                                  2026-11-24T06:00:00.123Z  INVENTORY #1
  ├ payment.completed  ` + id(3) + `  +500µs                                                  2026-11-24T06:00:00.124Z  PAYMENTS #1
  │ └ order.confirmed  ` + id(6) + `  +2ms                                                    2026-11-24T06:00:00.126Z  ORDERS #2
  └ payment.failed     ` + id(4) + `  +1.5ms                                                  2026-11-24T06:00:00.125Z  PAYMENTS #2
order.cancelled        ` + id(5) + `  (cause ` + id(99) + ` not found)  2026-11-24T06:00:00.132Z  ORDERS #3
`
	if got != wantOut {
		t.Errorf("Write:\n%s\nwant:\n%s", got, wantOut)
	}
}

func TestWriteMissingOccurredAt(t *testing.T) {
	t.Parallel()
	root := hop(1, event.OrderCreated, 0, 0, "ORDERS", 1)
	child := hop(2, event.InventoryRejected, 1, 0, "INVENTORY", 1)
	child.OccurredAt = time.Time{}
	var b bytes.Buffer
	trace.Write(&b, trace.Sort([]trace.Hop{child, root}))
	out := b.String()
	if !strings.Contains(out, "└ inventory.rejected  "+id(2)+"  ?     ") || !strings.Contains(out, "no occurred-at  INVENTORY #1") {
		t.Errorf("Write:\n%s", out)
	}
}

func ExampleWrite() {
	at := time.Date(2026, 11, 24, 6, 0, 0, 123_000_000, time.UTC)
	hops := trace.Sort([]trace.Hop{
		{Stream: "ORDERS", Seq: 1, Type: event.OrderCreated, EventID: "0190-a", Subject: "order.created.28", OrderID: "o-1", OccurredAt: at},
		{Stream: "INVENTORY", Seq: 1, Type: event.InventoryReserved, EventID: "0190-b", CausationID: "0190-a", Subject: "inventory.reserved.28", OrderID: "o-1", OccurredAt: at.Add(3200 * time.Microsecond)},
		{Stream: "PAYMENTS", Seq: 1, Type: event.PaymentCompleted, EventID: "0190-c", CausationID: "0190-b", Subject: "payment.completed.28", OrderID: "o-1", OccurredAt: at.Add(4300 * time.Microsecond)},
		{Stream: "ORDERS", Seq: 2, Type: event.OrderConfirmed, EventID: "0190-d", CausationID: "0190-c", Subject: "order.confirmed.28", OrderID: "o-1", OccurredAt: at.Add(5 * time.Millisecond)},
	})
	trace.Write(os.Stdout, hops)
	// Output:
	// saga o-1: 4 events in 5ms, order.created → order.confirmed
	// order.created          0190-a  (root)  2026-11-24T06:00:00.123Z  ORDERS #1
	// └ inventory.reserved   0190-b  +3.2ms  2026-11-24T06:00:00.126Z  INVENTORY #1
	//   └ payment.completed  0190-c  +1.1ms  2026-11-24T06:00:00.127Z  PAYMENTS #1
	//     └ order.confirmed  0190-d  +700µs  2026-11-24T06:00:00.128Z  ORDERS #2
}
