package load

import (
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	var got []finished
	tr := newTracker(func(f finished) { got = append(got, f) })
	t0 := time.Now()

	// The usual order: 202, then the terminal event.
	a := &saga{class: Confirm, scheduled: t0, accepted: t0.Add(time.Millisecond)}
	tr.placed("a", a)
	if tr.notTerminal() != 1 {
		t.Fatalf("not terminal = %d, want 1", tr.notTerminal())
	}
	tr.terminal("a", outcome{confirmed: true, at: t0.Add(10 * time.Millisecond)})
	select {
	case <-a.done:
	default:
		t.Fatal("a's done is not closed")
	}

	// The terminal event before the 202: matched when the order is placed.
	tr.terminal("b", outcome{reason: "out_of_stock", at: t0.Add(2 * time.Millisecond)})
	if tr.foreign() != 1 {
		t.Fatalf("early events = %d, want 1", tr.foreign())
	}
	b := &saga{class: OOS, scheduled: t0, accepted: t0.Add(3 * time.Millisecond)}
	tr.placed("b", b)
	select {
	case <-b.done:
	default:
		t.Fatal("b's done is not closed although its event came first")
	}

	// Repeats of a terminal event (a republished event) count once.
	tr.terminal("a", outcome{confirmed: true, at: t0.Add(time.Second)})
	tr.terminal("b", outcome{reason: "out_of_stock", at: t0.Add(time.Second)})
	// An order this run did not place stays foreign.
	tr.terminal("z", outcome{confirmed: true, at: t0})

	if len(got) != 2 || got[0].class != Confirm || !got[0].confirmed || got[1].class != OOS || got[1].reason != "out_of_stock" {
		t.Fatalf("recorded %+v, want a confirmed then b out_of_stock", got)
	}
	if tr.notTerminal() != 0 || tr.foreign() != 1 {
		t.Errorf("not terminal %d, foreign %d; want 0 and 1", tr.notTerminal(), tr.foreign())
	}
	if ids := tr.placedIDs(10); len(ids) != 2 || ids[0] != "a" || ids[1] != "b" {
		t.Errorf("placed ids = %v, want [a b]", ids)
	}
}

func TestOutcomeExpected(t *testing.T) {
	for _, tc := range []struct {
		o     outcome
		class Class
		want  bool
	}{
		{outcome{confirmed: true}, Confirm, true},
		{outcome{reason: "payment_failed"}, Confirm, false},
		{outcome{reason: "payment_failed"}, Decline, true},
		{outcome{confirmed: true}, Decline, false},
		{outcome{reason: "out_of_stock"}, OOS, true},
		{outcome{reason: "timeout"}, OOS, false},
	} {
		if got := tc.o.expected(tc.class); got != tc.want {
			t.Errorf("%+v expected for %v = %v, want %v", tc.o, tc.class, got, tc.want)
		}
	}
}

func TestPlacedIDsSpread(t *testing.T) {
	tr := newTracker(func(finished) {})
	for i := range 100 {
		tr.placed(string(rune('A'+i%26))+string(rune('0'+i/26)), &saga{})
	}
	ids := tr.placedIDs(4)
	if len(ids) != 4 || ids[0] != tr.ids[0] || ids[1] != tr.ids[25] || ids[3] != tr.ids[75] {
		t.Errorf("placedIDs(4) = %v, want ids 0, 25, 50, 75", ids)
	}
}
