package readmodel

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/event"
)

// The states GET /sagas lists.
const (
	// SagasInFlight is every saga not terminal yet (PENDING or RESERVED).
	SagasInFlight = "in_flight"
	// SagasStuck is every saga in flight older than the stuck threshold.
	SagasStuck = "stuck"
)

// Page sizes of GET /sagas, and the default stuck threshold (--stuck-after).
const (
	DefaultSagaLimit  = 100
	MaxSagaLimit      = 1000
	DefaultStuckAfter = time.Minute
)

// Waiting says who a saga in flight waits for: the service that has to
// handle the saga's latest event, what it does then, and what it publishes.
type Waiting struct {
	Service string     `json:"service"` // inventory, payment or order; readmodel when only the read model is behind
	Action  string     `json:"action"`  // reserve, charge, confirm, cancel, release
	Event   event.Type `json:"event"`   // the event it has to handle
	// Expects lists the events that would take the saga on, one of them.
	Expects []event.Type `json:"expects"`
	// Missing lists earlier events of the saga the read model has not
	// projected (it is behind on their stream), in causal order.
	Missing []event.Type `json:"missing,omitempty"`
}

// waitRule is one row of WaitingFor's table: the saga's latest event, who
// handles it, what it needs to have happened before.
type waitRule struct {
	latest  event.Type
	service string
	action  string
	expects []event.Type
	before  []event.Type // certain causes of latest, in causal order
}

// waitRules go from the latest saga step to the earliest; the first rule
// whose event was seen decides.
var waitRules = []waitRule{
	{event.InventoryReleased, "order", "cancel", []event.Type{event.OrderCancelled},
		[]event.Type{event.OrderCreated, event.InventoryReserved}},
	{event.PaymentFailed, "inventory", "release", []event.Type{event.InventoryReleased},
		[]event.Type{event.OrderCreated, event.InventoryReserved}},
	{event.PaymentCompleted, "order", "confirm", []event.Type{event.OrderConfirmed},
		[]event.Type{event.OrderCreated, event.InventoryReserved}},
	{event.InventoryRejected, "order", "cancel", []event.Type{event.OrderCancelled},
		[]event.Type{event.OrderCreated}},
	{event.InventoryReserved, "payment", "charge", []event.Type{event.PaymentCompleted, event.PaymentFailed},
		[]event.Type{event.OrderCreated}},
	{event.OrderCreated, "inventory", "reserve", []event.Type{event.InventoryReserved, event.InventoryRejected},
		nil},
}

// WaitingFor derives, from the event types the read model has seen of one
// saga (in any order, duplicates allowed), who the saga waits for. ok is
// false when the saga waits for nobody: it is terminal (order.confirmed or
// order.cancelled seen) or no saga event was seen at all.
//
// The latest saga step decides (order.created → inventory reserves;
// inventory.reserved → payment charges; payment.completed → order
// confirms; inventory.rejected → order cancels; payment.failed → inventory
// releases; inventory.released → order cancels). The read model consumes
// three streams independently, so it may have seen a later step without
// its causes (inventory.reserved before order.created): the saga still
// waits for the later step's service, and Missing names the causes the
// read model has yet to project. payment.refunded without order.cancelled
// means the order was cancelled already and only the read model has not
// seen it: Service is then "readmodel".
func WaitingFor(seen []event.Type) (w Waiting, ok bool) {
	set := make(map[event.Type]bool, len(seen))
	for _, t := range seen {
		set[t] = true
	}
	if set[event.OrderConfirmed] || set[event.OrderCancelled] {
		return Waiting{}, false
	}
	if set[event.PaymentRefunded] {
		return Waiting{Service: Name, Action: "project", Event: event.OrderCancelled,
			Expects: []event.Type{}, Missing: []event.Type{event.OrderCancelled}}, true
	}
	for _, r := range waitRules {
		if !set[r.latest] {
			continue
		}
		w = Waiting{Service: r.service, Action: r.action, Event: r.latest, Expects: append([]event.Type(nil), r.expects...)}
		for _, b := range r.before {
			if !set[b] {
				w.Missing = append(w.Missing, b)
			}
		}
		return w, true
	}
	return Waiting{}, false
}

// sagaStart is when a view's saga began, the order_views.created_at that
// GET /sagas sorts and ages by: when order.created occurred, or, while the
// read model has not seen it, the earliest event it has seen of the order.
func sagaStart(v View) time.Time {
	var first time.Time
	for _, s := range v.Timeline {
		if s.EventType == event.OrderCreated {
			return s.OccurredAt
		}
		if first.IsZero() || s.OccurredAt.Before(first) {
			first = s.OccurredAt
		}
	}
	if first.IsZero() {
		return v.LastOccurredAt
	}
	return first
}

// SagaEvent names one event of a saga.
type SagaEvent struct {
	Type       event.Type `json:"type"`
	ID         string     `json:"id"`
	OccurredAt time.Time  `json:"occurred_at"`
}

// Saga is one saga in flight, as GET /sagas lists it.
type Saga struct {
	OrderID   string    `json:"order_id"`
	Status    Status    `json:"status"`
	CreatedAt time.Time `json:"created_at"` // see sagaStart
	AgeMS     int64     `json:"age_ms"`     // as of the list's as_of
	Age       string    `json:"age"`        // AgeMS for people: 850ms, 42s, 3m07s, 2h05m, 3d04h
	// LastEvent is the saga's latest step the read model has seen (the
	// last of its timeline); IdleMS is how long ago it occurred.
	LastEvent SagaEvent `json:"last_event"`
	IdleMS    int64     `json:"idle_ms"`
	Idle      string    `json:"idle"`  // IdleMS for people
	Stuck     bool      `json:"stuck"` // older than the list's stuck_after
	// WaitingFor is null only for a view without any saga event.
	WaitingFor *Waiting `json:"waiting_for"`
}

// SagaCounts counts the sagas in flight, and those of them stuck.
type SagaCounts struct {
	InFlight   int64  `json:"in_flight"`
	Stuck      int64  `json:"stuck"`
	StuckAfter string `json:"stuck_after"` // the threshold, e.g. "1m0s"
}

// SagaList is the body of GET /sagas: a page of sagas, oldest first. Next
// is the cursor of the following page (pass it as after=), "" on the last.
type SagaList struct {
	State  string     `json:"state"`
	AsOf   time.Time  `json:"as_of"`
	Counts SagaCounts `json:"counts"` // totals, not of this page
	Sagas  []Saga     `json:"sagas"`
	Next   string     `json:"next"`
}

// sagaQuery is a parsed GET /sagas request.
type sagaQuery struct {
	state      string
	stuckAfter time.Duration
	limit      int
	after      sagaCursor
}

// sagaCursor is a position in the list: after the saga that began at
// created (microseconds, as Postgres keeps it) with that order id.
type sagaCursor struct {
	created time.Time
	orderID string
}

func (c sagaCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.created.UnixMicro(), 10) + "," + c.orderID))
}

var errBadCursor = errors.New("after must be the next cursor of an earlier page")

func parseSagaCursor(s string) (sagaCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return sagaCursor{}, errBadCursor
	}
	micros, id, ok := strings.Cut(string(raw), ",")
	us, err := strconv.ParseInt(micros, 10, 64)
	if !ok || err != nil || event.ValidOrderID(id) != nil {
		return sagaCursor{}, errBadCursor
	}
	return sagaCursor{created: time.UnixMicro(us).UTC(), orderID: id}, nil
}

// parseSagaQuery reads state=, limit=, after= and older_than=; the error
// says what is wrong, for a 400.
func parseSagaQuery(r *http.Request, stuckAfter time.Duration) (sagaQuery, error) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "state", "limit", "after", "older_than":
		default:
			return sagaQuery{}, fmt.Errorf("unknown parameter %q: want state, limit, after or older_than", k)
		}
	}
	sq := sagaQuery{state: SagasInFlight, stuckAfter: stuckAfter, limit: DefaultSagaLimit}
	switch s := q.Get("state"); s {
	case "", SagasInFlight:
	case SagasStuck:
		sq.state = SagasStuck
	default:
		return sagaQuery{}, fmt.Errorf("state must be %s or %s, got %q", SagasInFlight, SagasStuck, s)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxSagaLimit {
			return sagaQuery{}, fmt.Errorf("limit must be an integer from 1 to %d, got %q", MaxSagaLimit, s)
		}
		sq.limit = n
	}
	if s := q.Get("older_than"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return sagaQuery{}, fmt.Errorf("older_than must be a duration ≥ 0 such as 30s or 5m, got %q", s)
		}
		sq.stuckAfter = d
	}
	if s := q.Get("after"); s != "" {
		c, err := parseSagaCursor(s)
		if err != nil {
			return sagaQuery{}, err
		}
		sq.after = c
	}
	return sq, nil
}

// listSagas serves GET /sagas?state=in_flight|stuck&limit=&after=&older_than=.
func (rm *readModel) listSagas(w http.ResponseWriter, r *http.Request) {
	sq, err := parseSagaQuery(r, rm.cfg.StuckAfter)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := rm.now().UTC()
	cutoff := now.Add(-sq.stuckAfter)
	rows, err := rm.store.sagas(r.Context(), sq, cutoff)
	if err != nil {
		rm.internalError(w, r, err)
		return
	}
	counts, err := rm.store.sagaCounts(r.Context(), cutoff)
	if err != nil {
		rm.internalError(w, r, err)
		return
	}
	counts.StuckAfter = sq.stuckAfter.String()
	list := SagaList{State: sq.state, AsOf: now, Counts: counts, Sagas: make([]Saga, 0, min(len(rows), sq.limit))}
	for i, row := range rows {
		if i == sq.limit {
			last := rows[i-1]
			list.Next = sagaCursor{created: last.createdAt, orderID: last.orderID}.String()
			break
		}
		s, err := row.saga(now, cutoff)
		if err != nil {
			rm.internalError(w, r, err)
			return
		}
		list.Sagas = append(list.Sagas, s)
	}
	writeJSON(w, http.StatusOK, list)
}

// sagaRow is one non-terminal view as read for GET /sagas.
type sagaRow struct {
	orderID   string
	status    string
	createdAt time.Time
	timeline  []byte
}

func (row sagaRow) saga(now, cutoff time.Time) (Saga, error) {
	var steps []Step
	if err := json.Unmarshal(row.timeline, &steps); err != nil {
		return Saga{}, fmt.Errorf("decode timeline of order %s: %w", row.orderID, err)
	}
	created := row.createdAt.UTC()
	s := Saga{
		OrderID: row.orderID, Status: Status(row.status), CreatedAt: created,
		AgeMS: now.Sub(created).Milliseconds(), Age: HumanAge(now.Sub(created)),
		Stuck: created.Before(cutoff),
	}
	seen := make([]event.Type, 0, len(steps))
	for _, st := range steps {
		seen = append(seen, st.EventType)
	}
	if len(steps) > 0 {
		last := steps[len(steps)-1]
		s.LastEvent = SagaEvent{Type: last.EventType, ID: last.EventID, OccurredAt: last.OccurredAt.UTC()}
		s.IdleMS, s.Idle = now.Sub(last.OccurredAt).Milliseconds(), HumanAge(now.Sub(last.OccurredAt))
	}
	if w, ok := WaitingFor(seen); ok {
		s.WaitingFor = &w
	}
	return s, nil
}

// inFlightSQL selects the views in flight; its condition is the predicate of
// the partial index order_views_in_flight, so the planner walks that index.
const inFlightSQL = `status IN ('PENDING', 'RESERVED')`

// sagas returns up to sq.limit+1 sagas in flight after the cursor, oldest
// first (created_at, then order id); with state stuck only those that began
// before cutoff.
func (s *store) sagas(ctx context.Context, sq sagaQuery, cutoff time.Time) ([]sagaRow, error) {
	// A far future bound for in_flight keeps one statement, one plan.
	until := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	if sq.state == SagasStuck {
		until = cutoff
	}
	// No cursor: the zero time and "" come before every row.
	rows, err := s.pool.Query(ctx, `
		SELECT order_id, status, created_at, timeline FROM order_views
		WHERE `+inFlightSQL+`
			AND (created_at, order_id) > ($1, $2) AND created_at < $3
		ORDER BY created_at, order_id
		LIMIT $4`, sq.after.created, sq.after.orderID, until, sq.limit+1)
	if err != nil {
		return nil, fmt.Errorf("list sagas %s: %w", sq.state, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sagaRow, error) {
		var r sagaRow
		err := row.Scan(&r.orderID, &r.status, &r.createdAt, &r.timeline)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list sagas %s: %w", sq.state, err)
	}
	return out, nil
}

// sagaCounts counts the sagas in flight and those that began before cutoff.
func (s *store) sagaCounts(ctx context.Context, cutoff time.Time) (SagaCounts, error) {
	var c SagaCounts
	err := s.pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE created_at < $1)
		FROM order_views WHERE `+inFlightSQL, cutoff).Scan(&c.InFlight, &c.Stuck)
	if err != nil {
		return SagaCounts{}, fmt.Errorf("count sagas in flight: %w", err)
	}
	return c, nil
}

// HumanAge writes d for people, to two units at most: 850ms, 42s, 3m07s,
// 2h05m, 3d04h. A negative d (clocks apart) is 0s.
func HumanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}
