package readmodel

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// TestDashboardCounts feeds sagas through both projection paths (one by
// one and batched), twice, and reads what the dashboard counted: sagas
// placed once each, outcomes by reason, accepted→terminal latencies, and the
// latest sagas newest first with their status.
func TestDashboardCounts(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, false)
	rm := b.rm

	ok, failed, oos := saga(t, "dash-ok", pathConfirmed), saga(t, "dash-failed", pathPaymentFailed), saga(t, "dash-oos", pathOutOfStock)
	later := saga(t, "dash-later", pathConfirmed)
	for i := range later {
		later[i].OccurredAt = later[i].OccurredAt.Add(time.Minute)
	}
	feed(t, rm, ok...)
	feed(t, rm, failed...)
	batch := append(append([]event.Event{}, oos...), later...)
	handleBatch(t, rm, batch)
	// Again: duplicates count nothing.
	feed(t, rm, ok...)
	handleBatch(t, rm, batch)

	if got := rm.dash.placed.Load(); got != 4 {
		t.Errorf("placed %d, want 4", got)
	}
	want := map[string]int64{"confirmed": 2, event.ReasonPaymentFailed: 1, event.ReasonOutOfStock: 1}
	for i, o := range Outcomes {
		if got := rm.dash.outcomes[i].Load(); got != want[o] {
			t.Errorf("outcome %s: %d, want %d", o, got, want[o])
		}
	}
	// The terminal events occur 30ms, 40ms, 20ms and 30ms after order.created.
	if got := rm.dash.latency.summary(); got != (LagSummary{P50: 30, P99: 40, Samples: 4}) {
		t.Errorf("latency %+v, want p50 30ms, p99 40ms over 4 sagas", got)
	}
	latest := rm.dash.latestSagas()
	if len(latest) != 4 || latest[0].OrderID != "dash-later" || latest[0].Status != Confirmed || latest[0].Events != 4 {
		t.Fatalf("latest sagas %+v, want 4, dash-later first, CONFIRMED with 4 events", latest)
	}
	for _, l := range latest {
		if l.OrderID == "dash-oos" && (l.Status != Cancelled || l.Reason != event.ReasonOutOfStock) {
			t.Errorf("dash-oos listed as %s/%s", l.Status, l.Reason)
		}
	}
}

// TestDashboardLatestCapped keeps the latest sagas to a few, the newest.
func TestDashboardLatestCapped(t *testing.T) {
	t.Parallel()
	var d dashCounters
	for i := range 100 {
		at := t0.Add(time.Duration(i) * time.Second)
		d.noteLatest([]View{{OrderID: string(rune('a'+i%26)) + strings.Repeat("x", i/26), Status: Pending, Version: 1,
			Timeline: []Step{{EventType: event.OrderCreated, OccurredAt: at}}, LastOccurredAt: at}})
	}
	if len(d.latest) > 2*dashLatest {
		t.Errorf("%d sagas kept, want at most %d", len(d.latest), 2*dashLatest)
	}
	got := d.latestSagas()
	if len(got) != dashLatest || !got[0].CreatedAt.Equal(t0.Add(99*time.Second)) || !got[dashLatest-1].CreatedAt.Equal(t0.Add(time.Duration(100-dashLatest)*time.Second)) {
		t.Errorf("latest %d sagas from %v to %v, want the %d newest", len(got), got[0].CreatedAt, got[len(got)-1].CreatedAt, dashLatest)
	}
}

func handleBatch(t *testing.T, rm *readModel, events []event.Event) {
	t.Helper()
	ctx := t.Context()
	tx, err := rm.store.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := rm.handleBatch(ctx, tx, events); err != nil {
		t.Fatalf("handleBatch: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// stream opens an SSE stream at path and returns its events, closed at the
// end of the stream, and the response.
func (b apiBundle) stream(t *testing.T, path string) (<-chan sse, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan sse, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var cur sse
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "":
				if cur.event != "" {
					ch <- cur
				}
				cur = sse{}
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				cur.data = []byte(strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return ch, resp
}

// nextEvent waits up to 10s for the stream's next event; ok is false at its
// end.
func nextEvent(t *testing.T, ch <-chan sse) (e sse, ok bool) {
	t.Helper()
	select {
	case e, ok = <-ch:
		return e, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no dashboard event within 10s")
	}
	return sse{}, false
}

// TestDashboardStream serves the page and its event stream: a hello with
// the history, then ticks carrying the counts, the consumers' backlog and
// the dead letters; at most DashMaxClients streams at once; every stream
// ends when the sampler stops, and no new one starts.
func TestDashboardStream(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, true)
	b.rm.hub.tick = 20 * time.Millisecond
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.rm.hub.Run(ctx) }()
	stopHub := sync.OnceFunc(func() { stop(); <-done })
	t.Cleanup(stopHub)

	for path, ctype := range map[string]string{"/": "text/html", "/assets/app.js": "text/javascript", "/assets/app.css": "text/css"} {
		resp, err := b.srv.Client().Get(b.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %s %s, %d bytes, %v; want 200 %s", path, resp.Status, resp.Header.Get("Content-Type"), len(body), err, ctype)
		}
		if path == "/" && !strings.Contains(string(body), `<script src="/assets/app.js">`) {
			t.Errorf("GET / is not the dashboard: %.200s", body)
		}
	}

	ch, resp := b.stream(t, "/dashboard/events")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /dashboard/events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	e, ok := nextEvent(t, ch)
	var hello dashHello
	if !ok || e.event != "hello" || json.Unmarshal(e.data, &hello) != nil || len(hello.Outcomes) != len(Outcomes) {
		t.Fatalf("first event %q %s, want hello with the outcomes", e.event, e.data)
	}

	feed(t, b.rm, saga(t, "stream-ok", pathConfirmed)...)
	for {
		e, ok := nextEvent(t, ch)
		if !ok {
			t.Fatal("the stream ended")
		}
		var snap DashSnapshot
		if e.event != "tick" || json.Unmarshal(e.data, &snap) != nil {
			t.Fatalf("event %q %s, want a tick", e.event, e.data)
		}
		// The counters move before the projection commits: wait for the
		// views to have caught up too (nothing in flight).
		if snap.Totals.Placed == 1 && snap.Totals.Outcomes["confirmed"] == 1 && snap.Sagas != nil &&
			snap.Orders[Confirmed] == 1 && len(snap.Consumers) == 3 && snap.DeadLetters != nil {
			if snap.Sagas.InFlight != 0 || snap.Sagas.Stuck == nil || *snap.Sagas.Stuck != 0 || snap.Sagas.StuckAfter == "" ||
				*snap.DeadLetters != 0 || snap.Latency.Samples != 1 {
				t.Errorf("snapshot %s: want no saga in flight, none stuck (with the threshold), no dead letter, one latency", e.data)
			}
			break
		}
	}

	// DashMaxClients streams at once (this one included), then 503.
	var others []<-chan sse
	for range DashMaxClients - 1 {
		c, r := b.stream(t, "/dashboard/events")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %s", len(others)+2, r.Status)
		}
		others = append(others, c)
	}
	_, r := b.stream(t, "/dashboard/events")
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream %d: %s, want 503", DashMaxClients+1, r.Status)
	}

	// Stopping the sampler ends every stream.
	stopHub()
	for _, c := range append(others, ch) {
		for {
			if _, ok := nextEvent(t, c); !ok {
				break
			}
		}
	}
	_, r = b.stream(t, "/dashboard/events")
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream after the stop: %s %s, want 503", r.Status, body)
	}
}

// TestDashboardStreamOutlivesTimeouts: the server's read and write timeouts
// bound ordinary requests; the dashboard's stream moves its own deadlines,
// so it keeps ticking long past them.
func TestDashboardStreamOutlivesTimeouts(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	base := testenv.RunService(t, service.Config{
		NATSURL: n.URL(), DatabaseURL: testenv.DatabaseURL(t),
		HTTPReadTimeout: 200 * time.Millisecond, HTTPWriteTimeout: 200 * time.Millisecond,
	}, Spec(Config{}))
	resp, err := http.Get(base + "/dashboard/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ticks := make(chan struct{}, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			if sc.Text() == "event: tick" {
				ticks <- struct{}{}
			}
		}
		close(ticks)
	}()
	deadline := time.After(10 * time.Second)
	for got := 0; got < 3; {
		select {
		case _, ok := <-ticks:
			if !ok {
				t.Fatalf("the stream ended after %d ticks (the write timeout is 200ms)", got)
			}
			got++
		case <-deadline:
			t.Fatalf("%d ticks in 10s, want 3", got)
		}
	}
}
