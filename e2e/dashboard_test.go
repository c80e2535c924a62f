package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetsaga/jetsaga/internal/browser"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// openBrowser starts a headless Chromium for the test, closed at cleanup.
// A machine without one fails the test: CI installs Debian's chromium.
func openBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := browser.Find()
	if err != nil {
		t.Fatalf("the dashboard test drives a real browser: %v", err)
	}
	ctx, cancel, err := browser.Start(context.Background(), browser.Config{Path: path, Width: 1400, Height: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return ctx
}

// in runs browser actions with a deadline and fails the test on an error.
func in(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

// until waits, in the page, for a JavaScript predicate to hold.
func until(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		t.Fatalf("browser: wait for %s: %v", what, err)
	}
}

// dashFigures are what the overview shows, read from the page.
type dashFigures struct {
	Placed     int     `json:"placed"`     // the placed total
	Completed  int     `json:"completed"`  // the completed total
	Throughput float64 `json:"throughput"` // what the throughput chart drew
	Outcomes   float64 `json:"outcomes"`   // what the outcome chart drew
	Latency    float64 `json:"latency"`    // what the latency chart drew
	Load       string  `json:"load"`       // changes only when the page is loaded anew
}

const readFigures = `(() => {
	const n = (sel) => +document.querySelector(sel).textContent.replace(/[^0-9]/g, '');
	const sum = (sel) => +(document.querySelector(sel).dataset.sum || 0);
	return {placed: n('#kpi-placed-total'), completed: n('#kpi-completed-total'),
		throughput: sum('#chart-throughput'), outcomes: sum('#chart-outcomes'), latency: sum('#chart-latency'),
		load: window.jetsagaPageLoad};
})()`

// shownStep is one row of a saga's timeline as the page shows it.
type shownStep struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Cause string `json:"cause"`
}

const readTimeline = `[...document.querySelectorAll('#saga-timeline .step')].map((e) =>
	({id: e.dataset.eventId, type: e.dataset.eventType, cause: e.dataset.causationId}))`

// TestDashboard opens the read model's dashboard in headless Chromium on a
// running world, places orders and watches the counters and charts move
// without a reload, then opens sagas' pages: one found with the search box,
// its timeline every event of the saga in causal order; one followed live
// while it runs (the payment service stopped, then started again).
func TestDashboard(t *testing.T) {
	t.Parallel()
	w := defaultWorld(t)
	ctx := openBrowser(t)
	base := w.url("readmodel")

	in(t, ctx, "open the dashboard", chromedp.Navigate(base+"/"))
	until(t, ctx, "the event stream to deliver a tick",
		`document.querySelector('#live').dataset.state === 'open' && document.querySelector('#live').dataset.tick !== undefined`)
	before := eval[dashFigures](t, ctx, readFigures)
	if before.Placed != 0 || before.Completed != 0 {
		t.Fatalf("a fresh world's dashboard shows %+v", before)
	}

	// Confirmed, declined by payment (stock released), out of stock.
	var ids []string
	for i := range 6 {
		ids = append(ids, w.place(fmt.Sprintf("c%d", i), item{"sku-a", 1, 1999}))
	}
	declined := w.place("c-declined", item{"sku-b", 3, 5000})
	outOfStock := w.place("c-oos", item{"sku-scarce", 2, 100})
	ids = append(ids, declined, outOfStock)
	w.waitTerminal(ids...)

	until(t, ctx, "the counters and charts to count 8 sagas", fmt.Sprintf(`(() => {
		const f = %s;
		return f.placed === %d && f.completed === %d && f.throughput > 0 && f.outcomes > 0 && f.latency > 0;
	})()`, readFigures, len(ids), len(ids)))
	after := eval[dashFigures](t, ctx, readFigures)
	if after.Load != before.Load {
		t.Fatalf("the page was reloaded (%s, then %s): the figures must arrive over the event stream", before.Load, after.Load)
	}
	until(t, ctx, "the outcome legend to count the cancellations by reason", `(() => {
		const v = (n) => { const e = document.querySelector('#legend-outcomes [data-name="' + n + '"] b'); return e ? +e.textContent : -1; };
		return v('confirmed') === 6 && v('payment_failed') === 1 && v('out_of_stock') === 1;
	})()`)
	until(t, ctx, "the latest sagas to list the declined one, CANCELLED",
		fmt.Sprintf(`(document.querySelector('#latest tr[data-order-id=%q] .chip') || {}).textContent === 'CANCELLED'`, declined))
	until(t, ctx, "the consumers' backlog and the dead letters",
		`document.querySelector('#consumers tr[data-consumer="inventory-orders"]') !== null && document.querySelector('#dlq-count').textContent === '0'`)
	until(t, ctx, "saga latency and lag figures", `document.querySelector('#kpi-latency').textContent.includes('/') && document.querySelector('#kpi-lag').textContent.includes('/')`)

	// A saga's page, found with the search box.
	in(t, ctx, "search for the declined order",
		chromedp.SetValue(chromedp.CSS("#search-id"), declined),
		chromedp.Click(chromedp.CSS("#search button")))
	until(t, ctx, "the declined saga's timeline",
		`document.querySelector('#saga').dataset.status === 'CANCELLED' && document.querySelectorAll('#saga-timeline .step').length === 5`)
	wantTimeline(t, w, declined, eval[[]shownStep](t, ctx, readTimeline), []event.Type{
		event.OrderCreated, event.InventoryReserved, event.PaymentFailed, event.InventoryReleased, event.OrderCancelled,
	})

	// A saga followed live: without a payment service it waits RESERVED;
	// once payment is back it goes on to CONFIRMED on the open page.
	w.stop("payment")
	live := w.place("c-live", item{"sku-a", 1, 700})
	in(t, ctx, "open the live saga's page", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = '#/orders/%s'`, live)))
	until(t, ctx, "the live saga, RESERVED and watched",
		`document.querySelector('#saga').dataset.status === 'RESERVED' && document.querySelectorAll('#saga-timeline .step').length === 2 &&
		 document.querySelector('#saga-watch').dataset.state === 'watching'`)
	w.start("payment")
	until(t, ctx, "the live saga to reach CONFIRMED on the open page",
		`document.querySelector('#saga').dataset.status === 'CONFIRMED' && document.querySelectorAll('#saga-timeline .step').length === 4`)
	wantTimeline(t, w, live, eval[[]shownStep](t, ctx, readTimeline), []event.Type{
		event.OrderCreated, event.InventoryReserved, event.PaymentCompleted, event.OrderConfirmed,
	})
	if load := eval[string](t, ctx, `window.jetsagaPageLoad`); load != before.Load {
		t.Fatalf("the page was reloaded while following the saga")
	}

	// Back to the overview: the new saga is counted there too.
	in(t, ctx, "go back to the overview", chromedp.Click(chromedp.CSS("a.back")))
	until(t, ctx, "the overview to count the live saga", fmt.Sprintf(`(%s).placed === %d`, readFigures, len(ids)+1))
}

// wantTimeline asserts that the page's timeline of an order shows every
// event of the order in the streams, once each, each after its cause, in
// the order want.
func wantTimeline(t *testing.T, w *world, orderID string, shown []shownStep, want []event.Type) {
	t.Helper()
	got := w.events(orderID)
	inStreams := map[string]event.Event{}
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		for _, e := range got[name] {
			inStreams[e.ID] = e
		}
	}
	var types []event.Type
	at := map[string]int{}
	for i, s := range shown {
		types = append(types, event.Type(s.Type))
		if _, dup := at[s.ID]; dup {
			t.Errorf("order %s: event %s shown twice", orderID, s.ID)
		}
		at[s.ID] = i
		e, ok := inStreams[s.ID]
		if !ok {
			t.Errorf("order %s: the page shows %s %s, which no stream holds", orderID, s.Type, s.ID)
			continue
		}
		if string(e.Type) != s.Type || e.CausationID != s.Cause {
			t.Errorf("order %s: the page shows %s caused by %q, the stream %s caused by %q", orderID, s.Type, s.Cause, e.Type, e.CausationID)
		}
	}
	for id, e := range inStreams {
		i, ok := at[id]
		if !ok {
			t.Errorf("order %s: %s %s is missing from the page's timeline", orderID, e.Type, id)
			continue
		}
		if e.CausationID == "" {
			continue
		}
		if j, ok := at[e.CausationID]; !ok || j >= i {
			t.Errorf("order %s: %s (row %d) is not after its cause %s (row %d)", orderID, e.Type, i, e.CausationID, j)
		}
	}
	if !slices.Equal(types, want) {
		t.Errorf("order %s: the page's timeline is %s, want %s", orderID, join(types), join(want))
	}
}

func join(ts []event.Type) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, " → ")
}
