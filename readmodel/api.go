package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/stream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
)

// Page sizes of GET /orders.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// OrderList is the body of GET /orders. Next is the cursor of the following
// page (pass it as after=), "" on the last page.
type OrderList struct {
	Orders []Summary `json:"orders"`
	Next   string    `json:"next"`
}

// Stats is the body of GET /stats.
type Stats struct {
	Orders          map[Status]int64 `json:"orders"`           // views per status
	EventsProjected int64            `json:"events_projected"` // rows of the events table
	Lag             LagSummary       `json:"lag_ms"`           // over the last 1,000 events this process projected
	// Behind maps each durable consumer of the event streams (every
	// service's, e.g. "inventory-orders") to the messages it has not
	// acknowledged yet (pending + ack pending); -1 for one of the read
	// model's when JetStream could not say.
	Behind map[string]int64 `json:"behind"`
	// Sagas counts the sagas in flight and those stuck (GET /sagas).
	Sagas SagaCounts `json:"sagas"`
	// SinceStart counts events this process handled since it started.
	SinceStart struct {
		Projected  int64 `json:"projected"`  // recorded for the first time
		Duplicates int64 `json:"duplicates"` // already recorded: no-ops
	} `json:"since_start"`
}

// listOrders serves GET /orders?status=&limit=&after=.
func (rm *readModel) listOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := Status(strings.ToUpper(q.Get("status")))
	if status != "" && !status.Valid() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status must be one of %s, got %q", statusList(), q.Get("status")))
		return
	}
	limit := DefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 1 to %d, got %q", MaxLimit, s))
			return
		}
		limit = n
	}
	after := q.Get("after")
	if after != "" && event.ValidOrderID(after) != nil {
		writeError(w, http.StatusBadRequest, "after must be an order id: 1-64 chars of [A-Za-z0-9_-]")
		return
	}
	orders, err := rm.store.list(r.Context(), status, after, limit+1)
	if err != nil {
		rm.internalError(w, r, err)
		return
	}
	page := OrderList{Orders: orders}
	if len(orders) > limit {
		page.Orders = orders[:limit]
		page.Next = orders[limit-1].OrderID
	}
	if page.Orders == nil {
		page.Orders = []Summary{}
	}
	writeJSON(w, http.StatusOK, page)
}

// getOrder serves GET /orders/{id}.
func (rm *readModel) getOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	v, err := rm.store.view(r.Context(), id)
	if errors.Is(err, errNotFound) {
		writeError(w, http.StatusNotFound, "order "+service.Clip(id)+" not found")
		return
	}
	if err != nil {
		rm.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// stats serves GET /stats.
func (rm *readModel) stats(w http.ResponseWriter, r *http.Request) {
	byStatus, events, err := rm.store.counts(r.Context())
	if err != nil {
		rm.internalError(w, r, err)
		return
	}
	sagas, err := rm.store.sagaCounts(r.Context(), rm.now().Add(-rm.cfg.StuckAfter))
	if err != nil {
		rm.internalError(w, r, err)
		return
	}
	sagas.StuckAfter = rm.cfg.StuckAfter.String()
	st := Stats{Orders: byStatus, EventsProjected: events, Lag: rm.lags.summary(), Behind: rm.behind(r.Context()), Sagas: sagas}
	st.SinceStart.Projected = rm.projected.Load()
	st.SinceStart.Duplicates = rm.duplicates.Load()
	writeJSON(w, http.StatusOK, st)
}

// behind reads how many messages each consumer has yet to acknowledge.
func (rm *readModel) behind(ctx context.Context) map[string]int64 {
	out := map[string]int64{}
	for _, c := range consumers {
		out[c.durable] = -1 // until JetStream says
	}
	if rm.js == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// Every durable consumer of the event streams, the other services' too:
	// /stats shows where the whole saga stands, not only the read model.
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		st, err := rm.js.Stream(ctx, name)
		if err != nil {
			rm.log.Warn("stats: stream", zap.String("stream", name), zap.Error(err))
			continue
		}
		list := st.ListConsumers(ctx)
		for info := range list.Info() {
			out[info.Name] = int64(info.NumPending) + int64(info.NumAckPending)
		}
		if err := list.Err(); err != nil {
			rm.log.Warn("stats: list consumers", zap.String("stream", name), zap.Error(err))
		}
	}
	return out
}

// watchOrder serves GET /orders/{id}/watch as Server-Sent Events: an "order"
// event carrying the view (as GET /orders/{id}) each time its version
// changes, with the version as the event id. It polls the view every
// watchPoll, and ends after sending a terminal view or when the client goes
// away. A client that reconnects with Last-Event-ID gets only newer versions.
// An order the read model has not seen within watchGrace (an order just
// placed is usually projected in milliseconds) is 404, as GET /orders/{id}.
//
// At most Config.MaxWatchers streams are open at once; one more is answered
// 503 with Retry-After. A stream is exempt from the server's read timeout
// and pushes its write deadline forward before each write.
func (rm *readModel) watchOrder(w http.ResponseWriter, r *http.Request) {
	if n := rm.watchers.Add(1); n > int64(rm.cfg.MaxWatchers) {
		rm.watchers.Add(-1)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many watch streams open (%d); retry later", rm.cfg.MaxWatchers))
		return
	}
	defer rm.watchers.Add(-1)
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	// The request has been read: the read timeout must not end the stream
	// (the server's background read would cancel its context).
	_ = rc.SetReadDeadline(time.Time{})
	extend := func() { _ = rc.SetWriteDeadline(time.Now().Add(rm.watchHeartbeat + service.HTTPWriteTimeout)) }
	extend()
	if err := rm.awaitView(r.Context(), id); errors.Is(err, errNotFound) {
		writeError(w, http.StatusNotFound, "order "+service.Clip(id)+" not found")
		return
	} else if err != nil {
		if r.Context().Err() == nil {
			rm.internalError(w, r, err)
		}
		return
	}
	sent, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	ctx := r.Context()
	poll := time.NewTicker(rm.watchPoll)
	defer poll.Stop()
	lastWrite := time.Now()
	for {
		v, err := rm.store.view(ctx, id)
		switch {
		case err == nil && v.Version != sent:
			body, jerr := json.Marshal(v)
			if jerr != nil {
				rm.log.Error("watch: encode view", zap.String("order_id", id), zap.Error(jerr))
				return
			}
			extend()
			if _, err := fmt.Fprintf(w, "event: order\nid: %d\ndata: %s\n\n", v.Version, body); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			sent, lastWrite = v.Version, time.Now()
			if v.Status.Terminal() {
				return
			}
		case err == nil && v.Status.Terminal():
			return // the client saw this terminal version already
		case err != nil && !errors.Is(err, errNotFound):
			if ctx.Err() == nil {
				rm.log.Error("watch: read view", zap.String("order_id", id), zap.Error(err))
			}
			return
		case time.Since(lastWrite) >= rm.watchHeartbeat:
			// A comment keeps proxies from timing the stream out and finds
			// clients that went away.
			extend()
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			lastWrite = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

// orderID returns the {id} path value, or answers 400 if it cannot be an
// order id.
func orderID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if event.ValidOrderID(id) != nil {
		writeError(w, http.StatusBadRequest, "order id must be 1-64 chars of [A-Za-z0-9_-]")
		return "", false
	}
	return id, true
}

func statusList() string {
	s := make([]string, 0, 4)
	for _, st := range Statuses() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

func (rm *readModel) internalError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	rm.log.Error("http", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	writeError(w, http.StatusInternalServerError, "internal error")
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // ">= 0" reads as written, not "\u003e= 0"
	_ = enc.Encode(v)
}

// awaitView waits up to watchGrace for the order's view to exist: nil once it
// does, errNotFound when it still does not.
func (rm *readModel) awaitView(ctx context.Context, id string) error {
	deadline := time.Now().Add(rm.watchGrace)
	for {
		_, err := rm.store.view(ctx, id)
		if !errors.Is(err, errNotFound) || !time.Now().Before(deadline) {
			return err
		}
		t := time.NewTimer(rm.watchPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
