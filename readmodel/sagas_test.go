package readmodel

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestWaitingFor(t *testing.T) {
	t.Parallel()

	type T = event.Type
	var (
		created   = event.OrderCreated
		reserved  = event.InventoryReserved
		rejected  = event.InventoryRejected
		completed = event.PaymentCompleted
		failed    = event.PaymentFailed
		released  = event.InventoryReleased
		confirmed = event.OrderConfirmed
		cancelled = event.OrderCancelled
	)
	tests := []struct {
		name   string
		seen   []T
		want   Waiting
		wantOK bool
	}{
		{"created", []T{created},
			Waiting{Service: "inventory", Action: "reserve", Event: created, Expects: []T{reserved, rejected}}, true},
		{"reserved", []T{created, reserved},
			Waiting{Service: "payment", Action: "charge", Event: reserved, Expects: []T{completed, failed}}, true},
		{"paid", []T{created, reserved, completed},
			Waiting{Service: "order", Action: "confirm", Event: completed, Expects: []T{confirmed}}, true},
		{"rejected", []T{created, rejected},
			Waiting{Service: "order", Action: "cancel", Event: rejected, Expects: []T{cancelled}}, true},
		{"payment failed", []T{created, reserved, failed},
			Waiting{Service: "inventory", Action: "release", Event: failed, Expects: []T{released}}, true},
		{"released", []T{created, reserved, failed, released},
			Waiting{Service: "order", Action: "cancel", Event: released, Expects: []T{cancelled}}, true},
		{"any order, duplicates", []T{released, failed, created, reserved, failed},
			Waiting{Service: "order", Action: "cancel", Event: released, Expects: []T{cancelled}}, true},

		// The read model is behind on a stream: later steps without their causes.
		{"reserved before created", []T{reserved},
			Waiting{Service: "payment", Action: "charge", Event: reserved, Expects: []T{completed, failed}, Missing: []T{created}}, true},
		{"rejected alone", []T{rejected},
			Waiting{Service: "order", Action: "cancel", Event: rejected, Expects: []T{cancelled}, Missing: []T{created}}, true},
		{"paid, no reservation seen", []T{created, completed},
			Waiting{Service: "order", Action: "confirm", Event: completed, Expects: []T{confirmed}, Missing: []T{reserved}}, true},
		{"failed alone", []T{failed},
			Waiting{Service: "inventory", Action: "release", Event: failed, Expects: []T{released}, Missing: []T{created, reserved}}, true},
		{"released alone", []T{released},
			Waiting{Service: "order", Action: "cancel", Event: released, Expects: []T{cancelled}, Missing: []T{created, reserved}}, true},
		{"refunded, cancel not seen", []T{created, reserved, completed, event.PaymentRefunded},
			Waiting{Service: "readmodel", Action: "project", Event: cancelled, Expects: []T{}, Missing: []T{cancelled}}, true},

		// Terminal, or nothing to go by.
		{"confirmed", []T{created, reserved, completed, confirmed}, Waiting{}, false},
		{"cancelled", []T{created, rejected, cancelled}, Waiting{}, false},
		{"cancelled alone", []T{cancelled}, Waiting{}, false},
		{"timeout then refund", []T{created, reserved, cancelled, released, completed, event.PaymentRefunded}, Waiting{}, false},
		{"confirmed, late duplicate", []T{confirmed, created, reserved}, Waiting{}, false},
		{"nothing", nil, Waiting{}, false},
		{"unknown type only", []T{"order.archived"}, Waiting{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := WaitingFor(tt.seen)
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("WaitingFor(%v) = %+v, %v; want %+v, %v", tt.seen, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestHumanAge(t *testing.T) {
	t.Parallel()

	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0ms"},
		{850 * time.Millisecond, "850ms"},
		{42*time.Second + 900*time.Millisecond, "42s"},
		{3*time.Minute + 7*time.Second, "3m07s"},
		{2*time.Hour + 5*time.Minute + 59*time.Second, "2h05m"},
		{76 * time.Hour, "3d04h"},
	}
	for _, tt := range tests {
		if got := HumanAge(tt.d); got != tt.want {
			t.Errorf("HumanAge(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestSagaCursor(t *testing.T) {
	t.Parallel()

	c := sagaCursor{created: t0.Add(1234567 * time.Microsecond), orderID: "ord_1-x"}
	got, err := parseSagaCursor(c.String())
	if err != nil || !got.created.Equal(c.created) || got.orderID != c.orderID {
		t.Fatalf("parseSagaCursor(%q) = %+v, %v; want %+v", c.String(), got, err, c)
	}
	for _, bad := range []string{"!!", "MTIz", "eCxvcmQ", "MTIzLA", "MTIzLGEgYg"} { // "123", "x,ord", "123,", "123,a b"
		if _, err := parseSagaCursor(bad); err == nil {
			t.Errorf("parseSagaCursor(%q) = nil error", bad)
		}
	}
}

// setupSagas is setupAPI without NATS (/stats says "behind" is unknown),
// on a clock the test moves.
func setupSagas(t *testing.T) (apiBundle, *clock) {
	t.Helper()
	pool := testenv.Pool(t, Schema, Migrations())
	c := newClock()
	rm := newTestReadModel(t, pool, nil, c)
	mux := http.NewServeMux()
	rm.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return apiBundle{pool: pool, rm: rm, srv: srv}, c
}

// shift returns events moved d later in time.
func shift(events []event.Event, d time.Duration) []event.Event {
	out := make([]event.Event, len(events))
	for i, e := range events {
		e.OccurredAt = e.OccurredAt.Add(d)
		out[i] = e
	}
	return out
}

// sagaIDs returns the order ids of a list.
func sagaIDs(l SagaList) []string {
	ids := make([]string, 0, len(l.Sagas))
	for _, s := range l.Sagas {
		ids = append(ids, s.OrderID)
	}
	return ids
}

// TestSagasInFlightAndStuck projects sagas stopped at every step (one of
// them seen only from its second event), lists those in flight and those
// stuck, pages through them, counts them in /stats, then completes the
// oldest: it leaves both lists.
func TestSagasInFlightAndStuck(t *testing.T) {
	t.Parallel()

	b, c := setupSagas(t)
	ms := time.Millisecond
	old := saga(t, "s-old", pathConfirmed)
	orphan := saga(t, "s-orphan", pathConfirmed)
	feed(t, b.rm, old[0])
	feed(t, b.rm, shift(saga(t, "s-res", pathConfirmed)[:2], 100*ms)...)
	feed(t, b.rm, shift(saga(t, "s-pf", pathPaymentFailed)[:3], 200*ms)...)
	feed(t, b.rm, shift(saga(t, "s-rel", pathPaymentFailed)[:4], 300*ms)...)
	feed(t, b.rm, shift(saga(t, "s-rej", pathOutOfStock)[:2], 400*ms)...)
	feed(t, b.rm, shift(saga(t, "s-paid", pathConfirmed)[:3], 500*ms)...)
	feed(t, b.rm, shift(orphan[1:2], 600*ms)...) // inventory.reserved, order.created not seen yet
	feed(t, b.rm, saga(t, "s-done", pathConfirmed)...)
	feed(t, b.rm, saga(t, "s-cancelled", pathOutOfStock)...)
	// Stuck after 1m: the four that began before now-1m = t0+350ms.
	c.Advance(time.Minute - 650*ms)
	now := c.Now()

	var all SagaList
	b.getJSON(t, "/sagas", &all)
	wantAll := []string{"s-old", "s-res", "s-pf", "s-rel", "s-rej", "s-paid", "s-orphan"}
	if got := sagaIDs(all); !reflect.DeepEqual(got, wantAll) || all.Next != "" || all.State != SagasInFlight {
		t.Fatalf("in flight = %v next %q state %q, want %v", got, all.Next, all.State, wantAll)
	}
	wantCounts := SagaCounts{InFlight: 7, Stuck: 4, StuckAfter: "1m0s"}
	if all.Counts != wantCounts || !all.AsOf.Equal(now) {
		t.Errorf("counts %+v as of %v, want %+v as of %v", all.Counts, all.AsOf, wantCounts, now)
	}
	wantWaiting := map[string]string{
		"s-old": "inventory reserve", "s-res": "payment charge", "s-pf": "inventory release",
		"s-rel": "order cancel", "s-rej": "order cancel", "s-paid": "order confirm", "s-orphan": "payment charge",
	}
	for _, s := range all.Sagas {
		if s.WaitingFor == nil || s.WaitingFor.Service+" "+s.WaitingFor.Action != wantWaiting[s.OrderID] {
			t.Errorf("%s waits for %+v, want %s", s.OrderID, s.WaitingFor, wantWaiting[s.OrderID])
		}
		if s.Stuck != (s.CreatedAt.Before(now.Add(-time.Minute))) {
			t.Errorf("%s created %v: stuck %v", s.OrderID, s.CreatedAt, s.Stuck)
		}
	}
	first := all.Sagas[0]
	want := Saga{
		OrderID: "s-old", Status: Pending, CreatedAt: t0, AgeMS: now.Sub(t0).Milliseconds(), Age: "1m00s",
		LastEvent: SagaEvent{Type: event.OrderCreated, ID: old[0].ID, OccurredAt: t0},
		IdleMS:    now.Sub(t0).Milliseconds(), Idle: "1m00s", Stuck: true,
		WaitingFor: &Waiting{Service: "inventory", Action: "reserve", Event: event.OrderCreated,
			Expects: []event.Type{event.InventoryReserved, event.InventoryRejected}},
	}
	if !reflect.DeepEqual(first, want) {
		t.Errorf("first saga\n got %+v\nwant %+v", first, want)
	}
	last := all.Sagas[len(all.Sagas)-1]
	if last.Status != Reserved || last.LastEvent.ID != orphan[1].ID || !last.CreatedAt.Equal(orphan[1].OccurredAt.Add(600*ms)) ||
		!reflect.DeepEqual(last.WaitingFor.Missing, []event.Type{event.OrderCreated}) {
		t.Errorf("orphan saga = %+v, waiting %+v", last, last.WaitingFor)
	}

	var stuck SagaList
	b.getJSON(t, "/sagas?state=stuck", &stuck)
	if got, want := sagaIDs(stuck), wantAll[:4]; !reflect.DeepEqual(got, want) || stuck.Counts != wantCounts {
		t.Errorf("stuck = %v %+v, want %v", got, stuck.Counts, want)
	}
	b.getJSON(t, "/sagas?state=stuck&older_than=0s", &stuck)
	if got := sagaIDs(stuck); !reflect.DeepEqual(got, wantAll) || stuck.Counts.Stuck != 7 || stuck.Counts.StuckAfter != "0s" {
		t.Errorf("stuck older than 0s = %v %+v, want all", got, stuck.Counts)
	}
	b.getJSON(t, "/sagas?state=stuck&older_than=1h", &stuck)
	if len(stuck.Sagas) != 0 || stuck.Sagas == nil || stuck.Counts.Stuck != 0 {
		t.Errorf("stuck older than 1h = %+v, want an empty list", stuck)
	}

	// Pages of three, oldest first, the cursor carrying on; the stuck list
	// pages alike.
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"state=in_flight&limit=3", wantAll},
		{"state=stuck&limit=3", wantAll[:4]},
		{"limit=4", wantAll},
	} {
		var got []string
		pages := 0
		for after := ""; ; {
			var page SagaList
			b.getJSON(t, "/sagas?"+tc.query+"&after="+url.QueryEscape(after), &page)
			got = append(got, sagaIDs(page)...)
			pages++
			if page.Next == "" {
				break
			}
			if pages > 10 {
				t.Fatalf("%s: more than 10 pages", tc.query)
			}
			after = page.Next
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: paged %v, want %v", tc.query, got, tc.want)
		}
	}

	var st Stats
	b.getJSON(t, "/stats", &st)
	if st.Sagas != wantCounts {
		t.Errorf("/stats sagas = %+v, want %+v", st.Sagas, wantCounts)
	}

	// The oldest completes; the orphan's order.created arrives, which moves
	// its start earlier and fills the gap.
	feed(t, b.rm, old[1:]...)
	feed(t, b.rm, shift(orphan[:1], 600*ms)...)
	b.getJSON(t, "/sagas", &all)
	if got, want := sagaIDs(all), []string{"s-res", "s-pf", "s-rel", "s-rej", "s-paid", "s-orphan"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after completing s-old: %v, want %v", got, want)
	}
	o := all.Sagas[len(all.Sagas)-1]
	if !o.CreatedAt.Equal(t0.Add(600*ms)) || o.WaitingFor.Missing != nil {
		t.Errorf("orphan after its order.created: created %v, waiting %+v", o.CreatedAt, o.WaitingFor)
	}
	b.getJSON(t, "/stats", &st)
	if want := (SagaCounts{InFlight: 6, Stuck: 3, StuckAfter: "1m0s"}); st.Sagas != want {
		t.Errorf("/stats sagas = %+v, want %+v", st.Sagas, want)
	}
}

func TestSagasBadRequests(t *testing.T) {
	t.Parallel()

	b, _ := setupSagas(t)
	for _, q := range []struct{ query, wantMsg string }{
		{"state=done", `state must be in_flight or stuck, got "done"`},
		{"state=STUCK", "state must be"},
		{"limit=0", "limit must be an integer from 1 to 1000"},
		{"limit=1001", "limit must be"},
		{"limit=ten", "limit must be"},
		{"older_than=5", "older_than must be a duration"},
		{"older_than=-1m", "older_than must be a duration"},
		{"after=zzz", "after must be the next cursor"},
		{"after=" + url.QueryEscape("x,y"), "after must be the next cursor"},
		{"stuck=true", `unknown parameter "stuck"`},
	} {
		code, body := b.get(t, "/sagas?"+q.query)
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || code != http.StatusBadRequest || !strings.Contains(e.Error, q.wantMsg) {
			t.Errorf("GET /sagas?%s = %d %s, want 400 with %q", q.query, code, body, q.wantMsg)
		}
	}
}

// TestSagasInFlightIndex checks that the list and the counts can walk the
// partial index (the planner proves the query's condition implies its
// predicate), whatever it prefers on a table this small.
func TestSagasInFlightIndex(t *testing.T) {
	t.Parallel()

	b, _ := setupSagas(t)
	ctx := t.Context()
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `RESET enable_seqscan`) }()
	for name, q := range map[string]string{
		"list": `EXPLAIN SELECT order_id, status, created_at, timeline FROM order_views WHERE ` + inFlightSQL + `
			AND (created_at, order_id) > ($1, $2) AND created_at < $3 ORDER BY created_at, order_id LIMIT $4`,
		"counts": `EXPLAIN SELECT count(*), count(*) FILTER (WHERE created_at < $1) FROM order_views WHERE ` + inFlightSQL,
	} {
		args := []any{t0, "", t0, 10}
		if name == "counts" {
			args = args[:1]
		}
		rows, err := conn.Query(ctx, q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
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
		if p := strings.Join(plan, "\n"); !strings.Contains(p, "order_views_in_flight") {
			t.Errorf("%s plan does not use order_views_in_flight:\n%s", name, p)
		}
	}
}

// TestSagasMigrationBackfill runs the migrations before 003, projects views
// the way the code before it did, then runs 003: each view gets its
// created_at from its timeline.
func TestSagasMigrationBackfill(t *testing.T) {
	t.Parallel()

	ctx := t.Context()
	before := migrationsBefore(t, "003", 2)
	pool := testenv.PoolOn(t, testenv.DatabaseURL(t), Schema, before)

	insert := func(v View) {
		tl, _ := json.Marshal(v.Timeline)
		if _, err := pool.Exec(ctx, `INSERT INTO order_views (order_id, status, version, timeline, last_occurred_at, updated_at, lag_ms)
			VALUES ($1, $2, $3, $4, $5, now(), 0)`, v.OrderID, string(v.Status), v.Version, tl, v.LastOccurredAt); err != nil {
			t.Fatal(err)
		}
	}
	full1 := Project(recorded(saga(t, "m-1", pathConfirmed)[:2], time.Millisecond))
	orphan := Project(recorded(shift(saga(t, "m-2", pathConfirmed)[1:2], time.Second), time.Millisecond))
	insert(full1)
	insert(orphan)
	if err := pg.Migrate(ctx, pool, Schema, Migrations()); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]time.Time{"m-1": t0, "m-2": t0.Add(time.Second + 10*time.Millisecond)} {
		var got time.Time
		if err := pool.QueryRow(ctx, `SELECT created_at FROM order_views WHERE order_id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !got.Equal(want) {
			t.Errorf("%s created_at = %v, want %v", id, got, want)
		}
	}
}

// TestSagasService runs the readmodel alone in the service runtime: an
// order.created published to ORDERS, which no inventory service handles,
// shows up stuck waiting for inventory; once the rest of its saga is
// published it leaves the list.
func TestSagasService(t *testing.T) {
	t.Parallel()

	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	base := testenv.RunService(t, service.Config{NATSURL: n.URL(), DatabaseURL: testenv.DatabaseURL(t)},
		Spec(Config{StuckAfter: time.Hour}))
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}

	events := shift(saga(t, "svc-stuck", pathConfirmed), time.Since(t0)-time.Second)
	if _, err := js.PublishMsg(t.Context(), events[0].Msg()); err != nil {
		t.Fatal(err)
	}
	var list SagaList
	testenv.WaitFor(t, 30*time.Second, "svc-stuck in flight", func() bool {
		getJSON("/sagas", &list)
		return len(list.Sagas) == 1
	})
	if list.Counts.Stuck != 0 || list.Sagas[0].Stuck {
		t.Errorf("stuck with --stuck-after 1h: %+v", list)
	}
	getJSON("/sagas?state=stuck&older_than=1ms", &list)
	if len(list.Sagas) != 1 || list.Sagas[0].OrderID != "svc-stuck" || !list.Sagas[0].Stuck ||
		list.Sagas[0].WaitingFor == nil || list.Sagas[0].WaitingFor.Service != "inventory" ||
		list.Sagas[0].LastEvent.ID != events[0].ID || list.Sagas[0].AgeMS < 1000 {
		t.Fatalf("stuck = %+v", list)
	}
	var st Stats
	getJSON("/stats", &st)
	if want := (SagaCounts{InFlight: 1, Stuck: 0, StuckAfter: "1h0m0s"}); st.Sagas != want {
		t.Errorf("/stats sagas = %+v, want %+v", st.Sagas, want)
	}

	for _, e := range events[1:] {
		if _, err := js.PublishMsg(t.Context(), e.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "svc-stuck to leave the list", func() bool {
		getJSON("/sagas?state=stuck&older_than=0s", &list)
		return len(list.Sagas) == 0 && list.Counts.InFlight == 0
	})
}

// migrationsBefore returns the read model's migrations numbered below
// prefix, which must be want of them: the schema as an older version left
// it, for a test of the migration that comes next.
func migrationsBefore(t *testing.T, prefix string, want int) fstest.MapFS {
	t.Helper()
	full := Migrations()
	before := fstest.MapFS{}
	names, err := fs.Glob(full, "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name >= prefix {
			continue
		}
		raw, err := fs.ReadFile(full, name)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = &fstest.MapFile{Data: raw}
	}
	if len(before) != want {
		t.Fatalf("migrations before %s: %v", prefix, names)
	}
	return before
}
