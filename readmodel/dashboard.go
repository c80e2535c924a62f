package readmodel

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/service"
)

// The dashboard: GET / serves a page (web/, embedded) that shows the saga
// live. GET /dashboard/events pushes its figures as Server-Sent Events: a
// "hello" event with the history (one point a second for the last 5
// minutes) and the current snapshot, then a "tick" event a second with the
// newest point and snapshot. One saga's page reads GET /orders/{id} and
// follows GET /orders/{id}/watch.

//go:embed web
var webFiles embed.FS

// DashMaxClients is how many dashboard streams one process serves at once;
// one more is answered 503.
const DashMaxClients = 32

// dashTick is how often the dashboard samples and pushes.
const dashTick = time.Second

// errDashFull and errDashStopped refuse a dashboard stream.
var (
	errDashFull    = errors.New("too many dashboard streams")
	errDashStopped = errors.New("dashboard stopped")
)

// dashHub samples the dashboard's figures every dashTick and pushes them to
// the open streams. Its Run owns the sampling; Run's end closes the streams.
type dashHub struct {
	rm      *readModel
	sampler sampler
	tick    time.Duration

	mu      sync.Mutex
	clients map[*dashClient]struct{}
	last    []byte // the latest snapshot, JSON; nil before the first tick
	stopped bool
}

// dashClient is one open stream: the hub sends it encoded ticks.
type dashClient struct {
	ch chan []byte // closed by the hub when it drops the client or stops
}

func newDashHub(rm *readModel) *dashHub {
	return &dashHub{
		rm:      rm,
		sampler: sampler{rm: rm, started: rm.now().UTC()},
		tick:    dashTick,
		clients: map[*dashClient]struct{}{},
	}
}

// Run samples every tick and pushes the snapshot to the streams until ctx
// is done, then closes them. The queries behind the snapshot run only while
// a stream is open.
func (h *dashHub) Run(ctx context.Context) error {
	t := time.NewTicker(h.tick)
	defer t.Stop()
	defer h.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p := h.sampler.sample(h.rm.now())
		h.mu.Lock()
		watched := len(h.clients) > 0
		h.mu.Unlock()
		snap := h.sampler.snapshot(ctx, p, watched)
		body, err := json.Marshal(snap)
		if err != nil {
			h.rm.log.Error("dashboard: encode snapshot", zap.Error(err))
			continue
		}
		h.broadcast(body)
	}
}

// broadcast hands body to every client; a client whose buffer is full (it
// has not read the last few ticks) is dropped: its page reconnects and
// gets the whole history again.
func (h *dashHub) broadcast(body []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = body
	for c := range h.clients {
		select {
		case c.ch <- body:
		default:
			delete(h.clients, c)
			close(c.ch)
		}
	}
}

func (h *dashHub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for c := range h.clients {
		delete(h.clients, c)
		close(c.ch)
	}
}

// subscribe opens a stream, or refuses it (errDashFull, errDashStopped).
// It returns the latest snapshot too (nil before the first tick).
func (h *dashHub) subscribe() (*dashClient, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.stopped:
		return nil, nil, errDashStopped
	case len(h.clients) >= DashMaxClients:
		return nil, nil, errDashFull
	}
	c := &dashClient{ch: make(chan []byte, 4)}
	h.clients[c] = struct{}{}
	return c, h.last, nil
}

func (h *dashHub) unsubscribe(c *dashClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.ch)
	}
}

// dashHello is the first event of a stream.
type dashHello struct {
	Outcomes []string        `json:"outcomes"`
	TickMS   int64           `json:"tick_ms"`
	History  []DashPoint     `json:"history"`
	Snapshot json.RawMessage `json:"snapshot,omitempty"` // the latest tick's, if any
}

// routeDashboard adds the page, its assets and its event stream.
func (rm *readModel) routeDashboard(mux *http.ServeMux) {
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	files := http.FileServerFS(web)
	static := func(w http.ResponseWriter, r *http.Request) {
		// Small files, embedded: always revalidate, so a new binary's page
		// is the one shown.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /{$}", static)
	mux.HandleFunc("GET /assets/", static)
	mux.HandleFunc("GET /dashboard/events", rm.dashboardEvents)
}

// dashboardEvents serves GET /dashboard/events (see the top of this file).
func (rm *readModel) dashboardEvents(w http.ResponseWriter, r *http.Request) {
	c, last, err := rm.hub.subscribe()
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer rm.hub.unsubscribe(c)
	hello, err := json.Marshal(dashHello{
		Outcomes: Outcomes, TickMS: rm.hub.tick.Milliseconds(),
		History: rm.hub.sampler.points(), Snapshot: last,
	})
	if err != nil {
		rm.internalError(w, r, fmt.Errorf("encode dashboard hello: %w", err))
		return
	}
	// A stream outlives the server's read and write timeouts: no read
	// deadline, and a write deadline moved on before every event.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	extend := func() { _ = rc.SetWriteDeadline(time.Now().Add(rm.hub.tick + service.HTTPWriteTimeout)) }
	extend()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how long the page's EventSource waits before reconnecting.
	if _, err := fmt.Fprintf(w, "retry: 2000\nevent: hello\ndata: %s\n\n", hello); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case body, ok := <-c.ch:
			if !ok {
				return // dropped as too slow, or the hub stopped
			}
			extend()
			if _, err := fmt.Fprintf(w, "event: tick\ndata: %s\n\n", body); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
