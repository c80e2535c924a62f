package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/readmodel"
)

// placeMany places n orders, concurrency at a time: nine in ten confirm,
// one in twenty is declined, one in twenty asks for the scarce SKU (out of
// stock once it runs out).
func (w *world) placeMany(n, concurrency int, prefix string) []string {
	w.t.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				items := []item{{"sku-a", 1 + i%3, 1999}, {"sku-b", 1, 500}}
				switch i % 20 {
				case 7:
					items = []item{{"sku-b", 3, 5000}} // over declineOver
				case 13:
					items = []item{{"sku-scarce", 1, 100}}
				}
				id, err := w.post("", fmt.Sprintf("%s-%d", prefix, i%50), items)
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		w.t.Fatal(err)
	}
	return ids
}

// waitAllTerminal is waitTerminal with a deadline fit for many orders.
func (w *world) waitAllTerminal(timeout time.Duration, ids []string) {
	w.t.Helper()
	testenv.WaitFor(w.t, timeout, fmt.Sprintf("%d orders terminal in the order service and the read model", len(ids)), func() bool {
		var n int
		err := w.db.QueryRow(context.Background(), `
			SELECT count(*) FROM orders.orders o JOIN readmodel.order_views v USING (order_id)
			WHERE o.order_id = ANY($1) AND o.status IN ('CONFIRMED','CANCELLED') AND v.status = o.status`, ids).Scan(&n)
		return err == nil && n == len(ids)
	})
}

// views returns what the read model says of each order: status, reason,
// items, total and the timeline's events (id, type, occurrence), not when
// they were projected.
func (w *world) views() map[string]string {
	w.t.Helper()
	rows, err := w.db.Query(context.Background(), `
		SELECT order_id, format('%s|%s|%s|%s|%s', status, reason, items, total_cents,
			(SELECT jsonb_agg(jsonb_build_array(s->'event_id', s->'event_type', s->'occurred_at') ORDER BY n)
			 FROM jsonb_array_elements(timeline) WITH ORDINALITY AS t(s, n)))
		FROM readmodel.order_views`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, v string
		if err := rows.Scan(&id, &v); err != nil {
			w.t.Fatal(err)
		}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return out
}

// rebuild posts /admin/rebuild to the read model and returns its report.
func (w *world) rebuild() readmodel.RebuildReport {
	w.t.Helper()
	resp, err := http.Post(w.url("readmodel")+"/admin/rebuild", "", nil)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("POST /admin/rebuild: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Report   *readmodel.RebuildReport
			Progress *readmodel.RebuildProgress
			Error    string
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			w.t.Fatalf("POST /admin/rebuild: line %q: %v", sc.Text(), err)
		}
		switch {
		case line.Error != "":
			w.t.Fatalf("rebuild failed: %s", line.Error)
		case line.Report != nil:
			return *line.Report
		}
	}
	w.t.Fatalf("POST /admin/rebuild ended without a report: %v", sc.Err())
	return readmodel.RebuildReport{}
}

// TestRebuildReadModel runs a thousand sagas, corrupts the read model
// (views changed, views and events deleted), rebuilds it from the streams
// while more sagas run and readers read, and finds every view as it was,
// the new sagas projected, and invariant 5 holding.
func TestRebuildReadModel(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 1_000_000, "sku-b": 1_000_000, "sku-scarce": 20},
		declineOverCents: declineOver,
	})
	ids := w.placeMany(1000, 16, "rb")
	w.waitAllTerminal(3*time.Minute, ids)
	w.checkInvariants()
	before := w.views()
	if len(before) != len(ids) {
		t.Fatalf("%d views before the rebuild, want %d", len(before), len(ids))
	}

	// Corrupt: wrong statuses and timelines, views gone, events gone.
	for _, q := range []string{
		`UPDATE readmodel.order_views SET status = 'PENDING', reason = 'corrupt', total_cents = 1, timeline = '[]',
			orders_seqs = '{}', inventory_seqs = '{}', payments_seqs = '{}'
			WHERE order_id IN (SELECT order_id FROM readmodel.order_views ORDER BY order_id LIMIT 300)`,
		`DELETE FROM readmodel.order_views WHERE order_id IN (SELECT order_id FROM readmodel.order_views ORDER BY order_id DESC LIMIT 300)`,
		`DELETE FROM readmodel.events WHERE event_type = 'order.created'`,
	} {
		if _, err := w.db.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// Readers and new sagas meanwhile.
	untouched := ids[len(ids)/2]
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var reads, failedReads atomic.Int64
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Get(w.url("readmodel") + "/orders?limit=20")
			if err == nil {
				resp.Body.Close()
			}
			reads.Add(1)
			if err != nil || resp.StatusCode != http.StatusOK {
				failedReads.Add(1)
			}
		}
	})
	var more []string
	var placing sync.WaitGroup
	placing.Go(func() { more = w.placeMany(200, 4, "rb-during") })

	start := time.Now()
	rep := w.rebuild()
	took := time.Since(start)
	placing.Wait()
	close(stop)
	readers.Wait()
	t.Logf("rebuild: %d events (%+v), %d views, %.0f ms (switch %.1f ms; %v seen by the client); %d reads meanwhile",
		rep.Events, rep.Streams, rep.Views, rep.TookMS, rep.SwitchMS, took.Round(time.Millisecond), reads.Load())
	if n := failedReads.Load(); n > 0 {
		t.Errorf("%d of %d reads failed during the rebuild", n, reads.Load())
	}
	if rep.Events < int64(len(ids))*3 || len(rep.Streams) != 3 {
		t.Errorf("report: %+v", rep)
	}

	// Sagas after the switch: the live consumers, whose connections
	// prepared their statements against the old schema, project into the
	// new one.
	more = append(more, w.placeMany(50, 4, "rb-after")...)
	w.waitAllTerminal(2*time.Minute, append(append([]string(nil), ids...), more...))
	after := w.views()
	for _, id := range ids {
		if after[id] != before[id] {
			t.Errorf("order %s after the rebuild:\n%s\nbefore:\n%s", id, after[id], before[id])
		}
	}
	if len(after) != len(ids)+len(more) {
		t.Errorf("%d views after the rebuild, want %d", len(after), len(ids)+len(more))
	}
	if got := w.scalar(`SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'readmodel_%'`); got != "0" {
		t.Errorf("%s schemas readmodel_* left", got)
	}
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		s, err := w.js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		for c := range s.ListConsumers(t.Context()).Info() {
			if c.Config.Durable == "" {
				t.Errorf("stream %s: consumer %s left behind by the rebuild", name, c.Name)
			}
		}
	}
	if got := w.viewStatus(untouched); got == "" {
		t.Errorf("no view of %s", untouched)
	}
	w.checkInvariants()
}
