package readmodel

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// saveViews runs saveViewsSQL's statement in tx and returns how many rows
// it changed.
func saveViews(ctx context.Context, tx pgx.Tx, views []View, updatedAt time.Time) (int64, error) {
	q, args, err := saveViewsSQL(views, updatedAt)
	if err != nil {
		return 0, err
	}
	var changed int64
	if err := tx.QueryRow(ctx, q, args...).Scan(&changed); err != nil {
		return 0, fmt.Errorf("save %d views: %w", len(views), err)
	}
	return changed, nil
}

// sequenced gives events the stream and sequence they would have been read
// at: each event's own stream, numbered from next[stream]+1.
func sequenced(next map[string]uint64, events ...event.Event) []event.Event {
	out := make([]event.Event, len(events))
	for i, e := range events {
		next[e.Type.Stream()]++
		e.Stream, e.Seq = e.Type.Stream(), next[e.Type.Stream()]
		out[i] = e
	}
	return out
}

// viewState is an order_views row as JSON, without the pruned mark.
func viewState(t *testing.T, pool *pgxpool.Pool, orderID string) string {
	t.Helper()
	var row string
	if err := pool.QueryRow(t.Context(), `SELECT (to_jsonb(v) - 'pruned')::text FROM order_views v WHERE order_id = $1`,
		orderID).Scan(&row); err != nil {
		t.Fatalf("read view of %s: %v", orderID, err)
	}
	return row
}

func TestSeen(t *testing.T) {
	t.Parallel()

	var s Seen
	for _, q := range []uint64{9, 3, 9, 0} {
		s.add(stream.Orders, q)
	}
	s.add(stream.Payments, 4)
	s.add("REPLAY", 5)
	if want := (Seen{Orders: []int64{3, 9}, Payments: []int64{4}}); !reflect.DeepEqual(s, want) {
		t.Fatalf("seen = %+v, want %+v", s, want)
	}
	tests := []struct {
		stream string
		seq    uint64
		want   bool
	}{
		{stream.Orders, 3, true},
		{stream.Orders, 4, false},
		{stream.Inventory, 3, false},
		{stream.Payments, 4, true},
		{"REPLAY", 5, false},
		{stream.Orders, 0, false},
	}
	for _, tt := range tests {
		if got := s.Has(tt.stream, tt.seq); got != tt.want {
			t.Errorf("Has(%s, %d) = %v, want %v", tt.stream, tt.seq, got, tt.want)
		}
	}
	less := Seen{Orders: []int64{9}}
	if !s.Covers(less) || less.Covers(s) || !s.Covers(s) {
		t.Errorf("Covers: %+v over %+v", s, less)
	}
	if u := less.union(Seen{Orders: []int64{1}, Inventory: []int64{2}}); !reflect.DeepEqual(u, Seen{Orders: []int64{1, 9}, Inventory: []int64{2}}) {
		t.Errorf("union = %+v", u)
	}
}

// TestFoldEqualsProject: folding any split of a saga's events (each part
// with duplicates and re-emitted events) into the view of the other part
// gives the view of all of them.
func TestFoldEqualsProject(t *testing.T) {
	t.Parallel()

	for _, p := range paths {
		events := saga(t, "order-fold", p)
		all := append(sequenced(map[string]uint64{}, events...), reemit(t, events[1], events[1].OccurredAt.Add(time.Second)))
		recs := recordedAt(all, time.Millisecond)
		want := Project(recs)
		for cut := range len(recs) + 1 {
			got := Fold(Project(recs[:cut]), append(recs[cut:], recs[0]))
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s, cut at %d: Fold =\n%+v\nwant\n%+v", p, cut, got, want)
			}
		}
	}
}

// recordedAt is recorded keeping each event's stream and sequence.
func recordedAt(events []event.Event, lag time.Duration) []Recorded {
	out := recorded(events, lag)
	for i, e := range events {
		out[i].Stream, out[i].Seq = e.Stream, e.Seq
	}
	return out
}

// TestOlderViewNeverOverwritesNewer: a view computed from fewer events (an
// older one) is not saved over the stored one, and history replayed over a
// view (the same events, the same sequences) changes nothing, updated_at
// included.
func TestOlderViewNeverOverwritesNewer(t *testing.T) {
	t.Parallel()

	pool := testenv.Pool(t, Schema, Migrations())
	c := newClock()
	rm := newTestReadModel(t, pool, nil, c)
	events := sequenced(map[string]uint64{}, saga(t, "order-newer", pathConfirmed)...)
	feed(t, rm, events...)
	newer := viewState(t, pool, "order-newer")
	var seqs string
	if err := pool.QueryRow(t.Context(), `SELECT format('%s %s %s', orders_seqs, inventory_seqs, payments_seqs)
		FROM order_views WHERE order_id = 'order-newer'`).Scan(&seqs); err != nil {
		t.Fatal(err)
	}
	if seqs != "{1,2} {1} {1}" {
		t.Errorf("sequences seen = %s, want {1,2} {1} {1}", seqs)
	}

	// The view of the first two events, saved as a projection that read
	// a stale set would save it.
	older := Project(recordedAt(events[:2], time.Millisecond))
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n, err := saveViews(t.Context(), tx, []View{older}, c.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("saveViews of an older view changed %d rows, want 0", n)
	}
	if got := viewState(t, pool, "order-newer"); got != newer {
		t.Errorf("an older view overwrote the newer:\n%s\nwas\n%s", got, newer)
	}

	// The whole history again, later: nothing changes.
	c.Advance(time.Hour)
	feed(t, rm, events...)
	if got := viewState(t, pool, "order-newer"); got != newer {
		t.Errorf("replayed history changed the view:\n%s\nwas\n%s", got, newer)
	}
}

// TestPruneBoundsEventsAndKeepsViews: the events of terminal orders older
// than the retention are deleted, their views stay as they were, and late
// events afterwards (a redelivered one, one re-emitted with a new id, the
// whole history replayed) leave the view correct without storing events
// again; an order still in flight keeps its events.
func TestPruneBoundsEventsAndKeepsViews(t *testing.T) {
	t.Parallel()

	pool := testenv.Pool(t, Schema, Migrations())
	c := newClock()
	rm := newTestReadModel(t, pool, nil, c)
	next := map[string]uint64{}
	done := map[string][]event.Event{}
	for _, p := range paths {
		id := "order-prune-" + string(p[:3])
		done[id] = sequenced(next, saga(t, id, p)...)
		feed(t, rm, done[id]...)
	}
	inFlight := sequenced(next, saga(t, "order-prune-wip", pathConfirmed)[:2]...)
	feed(t, rm, inFlight...)
	before := map[string]string{}
	for id := range done {
		before[id] = viewState(t, pool, id)
	}

	// Not yet past the retention: nothing goes.
	if v, e, err := rm.prune(t.Context()); err != nil || v != 0 || e != 0 {
		t.Fatalf("prune before the retention: %d views, %d events, %v", v, e, err)
	}
	c.Advance(25 * time.Hour)
	v, e, err := rm.prune(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v != 3 || e != 4+5+3 {
		t.Errorf("pruned %d views, %d events; want 3, 12", v, e)
	}
	var left int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM events`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != len(inFlight) {
		t.Errorf("events table holds %d rows, want the in-flight order's %d", left, len(inFlight))
	}
	for id := range done {
		if got := viewState(t, pool, id); got != before[id] {
			t.Errorf("%s: pruning changed the view:\n%s\nwas\n%s", id, got, before[id])
		}
	}

	// Late: every event again (redelivered past the inbox), then history
	// replayed: no change, nothing stored.
	c.Advance(time.Hour)
	for id, events := range done {
		feed(t, rm, events...)
		feed(t, rm, events...)
		if got := viewState(t, pool, id); got != before[id] {
			t.Errorf("%s: late duplicates changed the pruned view:\n%s\nwas\n%s", id, got, before[id])
		}
		if n := countEvents(t, pool, id); n != 0 {
			t.Errorf("%s: late duplicates stored %d events", id, n)
		}
	}

	// A re-emitted event (new id, new sequence) and one dead-lettered and
	// replayed from another stream (unknown sequence) are folded into the
	// view: the same view as if its events were still there, but for the
	// sequences, which now include the new one.
	id := "order-prune-con"
	late := sequenced(next, reemit(t, done[id][2], done[id][2].OccurredAt.Add(time.Second)))[0]
	replayed := done[id][1]
	replayed.Stream, replayed.Seq = "REPLAY", 1
	feed(t, rm, late, replayed)
	got, err := rm.store.view(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	want := Project(append(recordedAt(done[id], time.Second), recordedAt([]event.Event{late}, time.Second)...))
	if !sameView(got.View, want) {
		t.Errorf("folded view:\n%+v\nwant\n%+v", got.View, want)
	}
	if !got.Seen.Has(stream.Payments, late.Seq) {
		t.Errorf("folded view has not seen PAYMENTS %d: %+v", late.Seq, got.Seen)
	}
	if n := countEvents(t, pool, id); n != 0 {
		t.Errorf("the late events were stored: %d rows", n)
	}
}

// sameView compares what a view says of its order: everything but when its
// events were projected.
func sameView(a, b View) bool {
	strip := func(v View) View {
		v.LagMS = 0
		v.Seen = Seen{}
		v.Timeline = append([]Step(nil), v.Timeline...)
		for i := range v.Timeline {
			v.Timeline[i].ProjectedAt, v.Timeline[i].LagMS = time.Time{}, 0
		}
		return v
	}
	return reflect.DeepEqual(strip(a), strip(b))
}
