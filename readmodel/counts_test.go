package readmodel

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// counted is what GET /stats reports: views per status and events recorded.
type counted struct {
	byStatus map[Status]int64
	events   int64
}

func (c counted) String() string {
	return fmt.Sprintf("%v, %d events", c.byStatus, c.events)
}

// countedByScan counts the tables the slow way, as /stats did.
func countedByScan(t *testing.T, pool *pgxpool.Pool) counted {
	t.Helper()
	c := counted{byStatus: map[Status]int64{Pending: 0, Reserved: 0, Confirmed: 0, Cancelled: 0}}
	rows, err := pool.Query(t.Context(), `SELECT status, count(*) FROM order_views GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	var st string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&st, &n}, func() error {
		c.byStatus[Status(st)] = n
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM events`).Scan(&c.events); err != nil {
		t.Fatal(err)
	}
	return c
}

// checkCounts compares store.counts with a scan of the tables.
func checkCounts(t *testing.T, rm *readModel, when string) counted {
	t.Helper()
	byStatus, events, err := rm.store.counts(t.Context())
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	got, want := counted{byStatus, events}, countedByScan(t, rm.store.pool)
	if !maps.Equal(got.byStatus, want.byStatus) || got.events != want.events {
		t.Errorf("%s: counts say %s, the tables hold %s", when, got, want)
	}
	return want
}

// TestCountsMatchTheTables projects sagas every way the read model does —
// one event at a time, in batches, shuffled, every event twice, re-emitted
// events, several transactions at once, compactions in between, events
// pruned, late events folded into pruned views — and checks after each step
// that the counts /stats and the dashboard report are exactly what counting
// the tables gives.
func TestCountsMatchTheTables(t *testing.T) {
	t.Parallel()

	pool := testenv.Pool(t, Schema, Migrations())
	c := newClock()
	rm := newTestReadModel(t, pool, nil, c)
	r := rand.New(rand.NewPCG(13, 13))
	next := map[string]uint64{}
	checkCounts(t, rm, "empty")

	// Three sagas of each path, the first two steps of each one by one: in
	// flight.
	sagas := map[string][]event.Event{}
	for _, p := range paths {
		for i := range 3 {
			id := fmt.Sprintf("order-count-%s-%d", p[:3], i)
			sagas[id] = sequenced(next, saga(t, id, p)...)
			feed(t, rm, sagas[id][:2]...)
		}
	}
	if got := checkCounts(t, rm, "in flight"); got.byStatus[Pending]+got.byStatus[Reserved] != 9 {
		t.Errorf("in flight: %s, want 9 views PENDING or RESERVED", got)
	}

	// The rest in shuffled batches, each event twice, with a compaction
	// between two batches.
	var rest []event.Event
	for _, events := range sagas {
		rest = append(rest, events[2:]...)
	}
	rest = append(shuffled(r, rest), shuffled(r, rest)...)
	for i := 0; i < len(rest); i += 5 {
		batch(t, rm, rest[i:min(i+5, len(rest))])
		if i == 10 {
			if err := rm.store.compactCounts(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := checkCounts(t, rm, "terminal"); got.byStatus[Confirmed] != 3 || got.byStatus[Cancelled] != 6 {
		t.Errorf("terminal: %s, want 3 CONFIRMED and 6 CANCELLED", got)
	}

	// A re-emitted payment.completed: a new event, no new status.
	confirmed := sagas["order-count-con-0"]
	feed(t, rm, sequenced(next, reemit(t, confirmed[2], confirmed[2].OccurredAt.Add(time.Second)))...)
	checkCounts(t, rm, "re-emitted")

	// Twenty more sagas, their events handled by eight transactions at once
	// (several on one order), while compactions run.
	var more []event.Event
	for i := range 20 {
		id := fmt.Sprintf("order-count-conc-%d", i)
		more = append(more, sequenced(next, saga(t, id, paths[i%len(paths)])...)...)
	}
	more = shuffled(r, append(more, more...))
	work := make(chan []event.Event)
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for b := range work {
				if err := pg.InTx(t.Context(), pool, func(tx pgx.Tx) error { return rm.handleBatch(t.Context(), tx, b) }); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if err := rm.store.compactCounts(t.Context()); err != nil {
				errs <- err
			}
		}
	})
	for i := 0; i < len(more); i += 3 {
		work <- more[i:min(i+3, len(more))]
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkCounts(t, rm, "concurrent")

	// Pruned: the events of the terminal orders go, the views stay; then
	// their events come again (folded, not stored).
	c.Advance(25 * time.Hour)
	if v, _, err := rm.prune(t.Context()); err != nil || v == 0 {
		t.Fatalf("prune: %d views, %v", v, err)
	}
	if got := checkCounts(t, rm, "pruned"); got.events != 0 {
		t.Errorf("pruned: %s, want no events left", got)
	}
	feed(t, rm, sequenced(next, reemit(t, confirmed[3], confirmed[3].OccurredAt.Add(time.Minute)))...)
	checkCounts(t, rm, "folded")

	// Compacted, twice (the second time a single row): one row, the same
	// counts.
	for range 2 {
		if err := rm.store.compactCounts(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM counts`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("counts holds %d rows after compaction, want 1", rows)
	}
	checkCounts(t, rm, "compacted")
}

// batch handles events as one batch in a transaction, as the consumer loop
// would.
func batch(t *testing.T, rm *readModel, events []event.Event) {
	t.Helper()
	if err := pg.InTx(t.Context(), rm.store.pool, func(tx pgx.Tx) error { return rm.handleBatch(t.Context(), tx, events) }); err != nil {
		t.Fatal(err)
	}
}

// TestCountsMigrationSeeds runs the migrations before 004 on a read model with
// views and events, then 004: the counts start from what the tables hold.
func TestCountsMigrationSeeds(t *testing.T) {
	t.Parallel()

	ctx := t.Context()
	before := migrationsBefore(t, "004", 3)
	pool := testenv.PoolOn(t, testenv.DatabaseURL(t), Schema, before)
	// Views and events as the code before 004 wrote them.
	if _, err := pool.Exec(ctx, `
		INSERT INTO order_views (order_id, status, version, timeline, last_occurred_at, updated_at, lag_ms, created_at)
		SELECT 'm-' || i, (ARRAY['PENDING', 'RESERVED', 'CONFIRMED', 'CANCELLED', 'CONFIRMED'])[1 + i % 5], 1, '[]', now(), now(), 0, now()
		FROM generate_series(1, 50) AS i;
		INSERT INTO events (event_id, order_id, event_type, occurred_at, projected_at, body)
		SELECT gen_random_uuid(), 'm-' || i, 'order.created', now(), now(), '{}'
		FROM generate_series(1, 37) AS i`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Migrate(ctx, pool, Schema, Migrations()); err != nil {
		t.Fatal(err)
	}
	rm := newTestReadModel(t, pool, nil, newClock())
	if got := checkCounts(t, rm, "after the migration"); got.byStatus[Confirmed] != 20 || got.events != 37 {
		t.Errorf("after the migration: %s, want 20 CONFIRMED and 37 events", got)
	}
}

// TestCountsUseTheInFlightIndex: on a table of many views, few of them in
// flight, the counts query walks order_views_in_flight and reads no more of
// order_views or events than that — no sequential scan of either, whatever
// the history.
func TestCountsUseTheInFlightIndex(t *testing.T) {
	t.Parallel()

	pool := testenv.Pool(t, Schema, Migrations())
	ctx := t.Context()
	// 50,000 terminal views and 40 in flight, as a long history leaves
	// them, and as many events; statistics up to date.
	if _, err := pool.Exec(ctx, `
		INSERT INTO order_views (order_id, status, version, timeline, last_occurred_at, updated_at, lag_ms, created_at)
		SELECT 'h-' || i, CASE WHEN i % 1250 = 0 THEN 'PENDING' WHEN i % 1250 = 1 THEN 'RESERVED'
			WHEN i % 10 = 0 THEN 'CANCELLED' ELSE 'CONFIRMED' END,
			4, '[]', now(), now(), 0, now() - i * interval '1 second'
		FROM generate_series(1, 50000) AS i;
		INSERT INTO events (event_id, order_id, event_type, occurred_at, projected_at, body)
		SELECT gen_random_uuid(), 'h-' || i, 'order.created', now(), now(), '{}'
		FROM generate_series(1, 50000) AS i;
		ANALYZE order_views;
		ANALYZE events`); err != nil {
		t.Fatal(err)
	}
	rm := newTestReadModel(t, pool, nil, newClock())
	byStatus, _, err := rm.store.counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The rows went in behind the projection's back: only the in-flight
	// counts, read from order_views itself, know of them.
	if byStatus[Pending] != 40 || byStatus[Reserved] != 40 {
		t.Errorf("in flight: %v, want 40 PENDING and 40 RESERVED", byStatus)
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var plan []string
	rows, err := conn.Query(ctx, `EXPLAIN `+countsSQL)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	p := strings.Join(plan, "\n")
	t.Logf("plan:\n%s", p)
	if !strings.Contains(p, "order_views_in_flight") {
		t.Errorf("the counts do not use order_views_in_flight:\n%s", p)
	}
	for _, table := range []string{"order_views", "events"} {
		if strings.Contains(p, "Seq Scan on "+table) {
			t.Errorf("the counts scan %s:\n%s", table, p)
		}
	}
	if !strings.Contains(p, "on counts") {
		t.Errorf("the counts do not read the counts table:\n%s", p)
	}
}
