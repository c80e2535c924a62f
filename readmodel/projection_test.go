package readmodel

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
)

const lag = 7 * time.Millisecond

func TestProjectPaths(t *testing.T) {
	t.Parallel()

	tests := []struct {
		path       path
		wantStatus Status
		wantReason string
	}{
		{pathConfirmed, Confirmed, ""},
		{pathPaymentFailed, Cancelled, event.ReasonPaymentFailed},
		{pathOutOfStock, Cancelled, event.ReasonOutOfStock},
	}
	for _, tt := range tests {
		t.Run(string(tt.path), func(t *testing.T) {
			t.Parallel()

			events := saga(t, "order-1", tt.path)
			want := View{
				OrderID:        "order-1",
				CustomerID:     "cust-7",
				Items:          testItems,
				TotalCents:     testTotal,
				Status:         tt.wantStatus,
				Reason:         tt.wantReason,
				Version:        len(events),
				LastOccurredAt: events[len(events)-1].OccurredAt,
				LagMS:          7,
			}
			for _, e := range events {
				want.Timeline = append(want.Timeline, Step{
					EventID: e.ID, EventType: e.Type, CausationID: e.CausationID, OccurredAt: e.OccurredAt, ProjectedAt: e.OccurredAt.Add(lag), LagMS: 7,
				})
			}

			n := 0
			permutations(recorded(events, lag), func(perm []Recorded) {
				n++
				if got := Project(perm); !reflect.DeepEqual(got, want) {
					t.Fatalf("Project(%s) =\n%+v\nwant\n%+v", typesOf(perm), got, want)
				}
				// Every event twice, and each re-emitted later with a new
				// id: still the same view.
				dup := append(slices.Clone(perm), perm...)
				for _, e := range events {
					dup = append(dup, recorded([]event.Event{reemit(t, e, e.OccurredAt.Add(time.Second))}, lag)...)
				}
				if got := Project(dup); !reflect.DeepEqual(got, want) {
					t.Fatalf("Project(%s with duplicates and re-emitted events) =\n%+v\nwant\n%+v", typesOf(perm), got, want)
				}
			})
			if want := factorial(len(events)); n != want {
				t.Fatalf("checked %d permutations, want %d", n, want)
			}
		})
	}
}

func TestProjectStatusRules(t *testing.T) {
	t.Parallel()

	confirmed := saga(t, "o-1", pathConfirmed)
	failed := saga(t, "o-1", pathPaymentFailed)
	outOfStock := saga(t, "o-1", pathOutOfStock)
	pick := func(events []event.Event, types ...event.Type) []event.Event {
		var out []event.Event
		for _, e := range events {
			if slices.Contains(types, e.Type) {
				out = append(out, e)
			}
		}
		return out
	}

	tests := []struct {
		name         string
		events       []event.Event
		wantStatus   Status
		wantReason   string
		wantCustomer string
		wantVersion  int
	}{
		{name: "nothing", wantStatus: Pending},
		{name: "created", events: pick(confirmed, event.OrderCreated),
			wantStatus: Pending, wantCustomer: "cust-7", wantVersion: 1},
		{name: "reserved before created", events: pick(confirmed, event.InventoryReserved),
			wantStatus: Reserved, wantVersion: 1},
		{name: "payment completed is not confirmed yet",
			events:     pick(confirmed, event.OrderCreated, event.InventoryReserved, event.PaymentCompleted),
			wantStatus: Reserved, wantCustomer: "cust-7", wantVersion: 3},
		{name: "payment failed keeps the reservation until cancelled",
			events:     pick(failed, event.OrderCreated, event.InventoryReserved, event.PaymentFailed, event.InventoryReleased),
			wantStatus: Reserved, wantCustomer: "cust-7", wantVersion: 4},
		{name: "rejected is pending until cancelled",
			events:     pick(outOfStock, event.OrderCreated, event.InventoryRejected),
			wantStatus: Pending, wantCustomer: "cust-7", wantVersion: 2},
		{name: "confirmed alone", events: pick(confirmed, event.OrderConfirmed),
			wantStatus: Confirmed, wantVersion: 1},
		{name: "cancelled alone", events: pick(failed, event.OrderCancelled),
			wantStatus: Cancelled, wantReason: event.ReasonPaymentFailed, wantVersion: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got := Project(recorded(tt.events, lag))
			if got.Status != tt.wantStatus || got.Reason != tt.wantReason || got.CustomerID != tt.wantCustomer || got.Version != tt.wantVersion {
				t.Errorf("Project = status %s, reason %q, customer %q, version %d; want %s, %q, %q, %d",
					got.Status, got.Reason, got.CustomerID, got.Version, tt.wantStatus, tt.wantReason, tt.wantCustomer, tt.wantVersion)
			}
			if got.Items == nil || got.Timeline == nil {
				t.Errorf("Items or Timeline is nil: %+v", got)
			}
			if len(got.Timeline) != tt.wantVersion {
				t.Errorf("timeline has %d steps, want %d", len(got.Timeline), tt.wantVersion)
			}
		})
	}
}

func TestProjectEdgeCases(t *testing.T) {
	t.Parallel()

	events := saga(t, "o-1", pathConfirmed)
	base := recorded(events, lag)

	t.Run("re-emitted earlier wins", func(t *testing.T) {
		t.Parallel()
		early := reemit(t, events[1], events[1].OccurredAt.Add(-time.Millisecond))
		got := Project(append(slices.Clone(base), recorded([]event.Event{early}, lag)...))
		if got.Version != 4 || got.Timeline[1].EventID != early.ID {
			t.Errorf("version %d, timeline[1] %s; want 4, the earlier event %s", got.Version, got.Timeline[1].EventID, early.ID)
		}
	})
	t.Run("same time, smaller id wins", func(t *testing.T) {
		t.Parallel()
		twin := recorded([]event.Event{reemit(t, events[2], events[2].OccurredAt)}, lag)[0]
		want := min(twin.EventID, events[2].ID)
		for _, in := range [][]Recorded{append(slices.Clone(base), twin), append([]Recorded{twin}, base...)} {
			if got := Project(in); got.Timeline[2].EventID != want {
				t.Errorf("timeline[2] = %s, want %s", got.Timeline[2].EventID, want)
			}
		}
	})
	t.Run("unknown type ignored", func(t *testing.T) {
		t.Parallel()
		odd := base[0]
		odd.EventID, odd.Type = "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d", "order.shipped"
		if got, want := Project(append(slices.Clone(base), odd)), Project(base); !reflect.DeepEqual(got, want) {
			t.Errorf("an unknown type changed the view:\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("undecodable body leaves fields empty", func(t *testing.T) {
		t.Parallel()
		bad := slices.Clone(base)
		bad[0].Body = []byte(`{"order_id":`)
		got := Project(bad)
		if got.CustomerID != "" || len(got.Items) != 0 || got.TotalCents != 0 || got.Status != Confirmed || got.Version != 4 {
			t.Errorf("Project = %+v", got)
		}
	})
	t.Run("lag of the latest projected", func(t *testing.T) {
		t.Parallel()
		in := slices.Clone(base)
		in[1].ProjectedAt = in[1].OccurredAt.Add(time.Hour) // reserved was projected last, an hour late
		if got := Project(in); got.LagMS != float64(time.Hour/time.Millisecond) {
			t.Errorf("LagMS = %v, want an hour", got.LagMS)
		}
	})
	t.Run("times in UTC", func(t *testing.T) {
		t.Parallel()
		in := slices.Clone(base)
		cet := time.FixedZone("CET", 3600)
		for i := range in {
			in[i].OccurredAt, in[i].ProjectedAt = in[i].OccurredAt.In(cet), in[i].ProjectedAt.In(cet)
		}
		if got, want := Project(in), Project(base); !reflect.DeepEqual(got, want) {
			t.Errorf("zone changed the view:\n%+v\nwant\n%+v", got, want)
		}
	})
}

func TestStatus(t *testing.T) {
	t.Parallel()

	tests := []struct {
		s               Status
		valid, terminal bool
	}{
		{Pending, true, false},
		{Reserved, true, false},
		{Confirmed, true, true},
		{Cancelled, true, true},
		{"", false, false},
		{"confirmed", false, false},
	}
	for _, tt := range tests {
		if tt.s.Valid() != tt.valid || tt.s.Terminal() != tt.terminal {
			t.Errorf("%q: Valid %v Terminal %v, want %v %v", tt.s, tt.s.Valid(), tt.s.Terminal(), tt.valid, tt.terminal)
		}
	}
}

func typesOf(rs []Recorded) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r.Type)
	}
	return fmt.Sprint(s)
}

func factorial(n int) int {
	if n <= 1 {
		return 1
	}
	return n * factorial(n-1)
}

// TestProjectTimeoutAfterCharge: a timeout that lands after the charge
// interleaves the saga's steps: order.cancelled (caused by order.created)
// occurs after payment.completed, and causes inventory.released and
// payment.refunded. The view is CANCELLED(timeout) and its timeline puts
// each event after its cause, in occurrence order otherwise, whatever
// order the events arrive in — even when a clock puts an effect before its
// cause.
func TestProjectTimeoutAfterCharge(t *testing.T) {
	t.Parallel()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	mk := func(typ event.Type, cause string, p event.Payload, ms int) event.Event {
		e, err := event.New(typ, "order-1", cause, p, at(ms))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	created := mk(event.OrderCreated, "", payload(event.OrderCreated, "order-1", pathConfirmed), 0)
	reserved := mk(event.InventoryReserved, created.ID, payload(event.InventoryReserved, "order-1", pathConfirmed), 10)
	completed := mk(event.PaymentCompleted, reserved.ID, payload(event.PaymentCompleted, "order-1", pathConfirmed), 20)
	cancelled := mk(event.OrderCancelled, created.ID, event.OrderCancelledPayload{OrderID: "order-1", Reason: event.ReasonTimeout}, 30)
	// The refund's clock runs behind: it says it occurred before its cause.
	refunded := mk(event.PaymentRefunded, cancelled.ID, event.PaymentRefundedPayload{
		OrderID: "order-1", PaymentID: "pay-1", AmountCents: testTotal, Reason: event.ReasonTimeout}, 25)
	released := mk(event.InventoryReleased, cancelled.ID, event.InventoryReleasedPayload{OrderID: "order-1", Items: testItems}, 40)
	events := []event.Event{created, reserved, completed, cancelled, refunded, released}
	want := []event.Type{event.OrderCreated, event.InventoryReserved, event.PaymentCompleted,
		event.OrderCancelled, event.PaymentRefunded, event.InventoryReleased}

	permutations(recorded(events, lag), func(perm []Recorded) {
		v := Project(perm)
		if v.Status != Cancelled || v.Reason != event.ReasonTimeout || v.Version != 6 {
			t.Fatalf("view %s %q version %d, want CANCELLED timeout version 6", v.Status, v.Reason, v.Version)
		}
		var got []event.Type
		for _, s := range v.Timeline {
			got = append(got, s.EventType)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("timeline %v from %s, want %v", got, typesOf(perm), want)
		}
	})
}

// TestCausalOrderBreaksCycles: forged events that name each other as
// causes still come out, every one, in occurrence order.
func TestCausalOrderBreaksCycles(t *testing.T) {
	t.Parallel()
	a := Recorded{EventID: "a", CausationID: "b", Type: event.OrderCreated, OccurredAt: t0}
	b := Recorded{EventID: "b", CausationID: "a", Type: event.InventoryReserved, OccurredAt: t0.Add(time.Millisecond)}
	c := Recorded{EventID: "a", CausationID: "", Type: event.PaymentCompleted, OccurredAt: t0.Add(2 * time.Millisecond)}
	got := causalOrder([]Recorded{c, b, a})
	if len(got) != 3 {
		t.Fatalf("%d events out of 3", len(got))
	}
	if got[0].Type != event.PaymentCompleted && got[0].Type != event.OrderCreated {
		t.Errorf("first %s", got[0].Type)
	}
}

// TestProjectFirstTerminalWins: the order service publishes one terminal
// event per order, so of a confirmed and a cancelled one the first in the
// ORDERS stream is the order's, whatever their Jetsaga-Occurred-At says; the
// other (a forgery or a bug) is left out of the view. A second, old-dated
// order.created does not replace the first one's customer and total.
func TestProjectFirstTerminalWins(t *testing.T) {
	t.Parallel()
	confirmed := saga(t, "o1", pathConfirmed)
	forgedCreated := confirmed[0]
	forgedCreated.ID = "01a21955-0000-7000-8000-0000000000f1"
	forgedCreated.OccurredAt = confirmed[0].OccurredAt.Add(-time.Hour)
	forgedCreated.Body = []byte(`{"order_id":"o1","customer_id":"mallory","items":[{"sku":"a","qty":1,"unit_price_cents":1}],"total_cents":1}`)
	forgedCancel := mustEvent(t, event.OrderCancelled, "o1", confirmed[0].ID,
		event.OrderCancelledPayload{OrderID: "o1", Reason: event.ReasonTimeout}, confirmed[0].OccurredAt.Add(-time.Minute))

	recs := recorded(append(confirmed, forgedCreated, forgedCancel), lag)
	seqs := map[string]uint64{}
	for i := range recs {
		r := &recs[i]
		r.Stream = r.Type.Stream()
		seqs[r.Stream]++
		r.Seq = seqs[r.Stream]
	}
	permutations(recs[len(recs)-4:], func(tail []Recorded) {
		got := Project(append(append([]Recorded(nil), recs[:len(recs)-4]...), tail...))
		if got.Status != Confirmed || got.Reason != "" || got.CustomerID != "cust-7" || got.Version != len(confirmed) {
			t.Fatalf("Project = %s %q customer %q version %d; want the genuine CONFIRMED view of %d events",
				got.Status, got.Reason, got.CustomerID, got.Version, len(confirmed))
		}
		for _, s := range got.Timeline {
			if s.EventID == forgedCancel.ID || s.EventID == forgedCreated.ID {
				t.Fatalf("timeline holds the forged %s", s.EventType)
			}
		}
	})

	// Cancelled first (a timeout), then a forged order.confirmed: CANCELLED.
	timedOut := mustEvent(t, event.OrderCancelled, "o2", confirmed[0].ID,
		event.OrderCancelledPayload{OrderID: "o2", Reason: event.ReasonTimeout}, confirmed[0].OccurredAt)
	forgedConfirm := mustEvent(t, event.OrderConfirmed, "o2", confirmed[0].ID,
		event.OrderConfirmedPayload{OrderID: "o2", TotalCents: 1}, confirmed[0].OccurredAt.Add(-time.Hour))
	two := recorded([]event.Event{timedOut, forgedConfirm}, lag)
	two[0].Stream, two[0].Seq, two[1].Stream, two[1].Seq = "ORDERS", 5, "ORDERS", 9
	if got := Project(two); got.Status != Cancelled || got.Reason != event.ReasonTimeout || got.Version != 1 {
		t.Fatalf("Project = %s %q version %d, want CANCELLED timeout, 1 event", got.Status, got.Reason, got.Version)
	}
}

func mustEvent(t *testing.T, typ event.Type, orderID, cause string, p event.Payload, at time.Time) event.Event {
	t.Helper()
	e, err := event.New(typ, orderID, cause, p, at)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
