package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Waiting says who a saga in flight waits for (readmodel.Waiting).
type Waiting struct {
	Service string   `json:"service"`
	Action  string   `json:"action"`
	Event   string   `json:"event"`
	Expects []string `json:"expects"`
	Missing []string `json:"missing"`
}

// SagaEvent names one event of a saga.
type SagaEvent struct {
	Type       string    `json:"type"`
	ID         string    `json:"id"`
	OccurredAt time.Time `json:"occurred_at"`
}

// Saga is one saga in flight as the read model lists it (GET /sagas).
type Saga struct {
	OrderID    string    `json:"order_id"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	AgeMS      int64     `json:"age_ms"`
	Age        string    `json:"age"`
	LastEvent  SagaEvent `json:"last_event"`
	IdleMS     int64     `json:"idle_ms"`
	Idle       string    `json:"idle"`
	Stuck      bool      `json:"stuck"`
	WaitingFor *Waiting  `json:"waiting_for"`
}

// SagaCounts counts the sagas in flight and those stuck.
type SagaCounts struct {
	InFlight   int64  `json:"in_flight"`
	Stuck      int64  `json:"stuck"`
	StuckAfter string `json:"stuck_after"`
}

// SagaList is one page of GET /sagas.
type SagaList struct {
	State  string     `json:"state"`
	AsOf   time.Time  `json:"as_of"`
	Counts SagaCounts `json:"counts"`
	Sagas  []Saga     `json:"sagas"`
	Next   string     `json:"next"`
}

// SagaQuery selects a page of GET /sagas; zero fields take the read model's
// defaults.
type SagaQuery struct {
	Stuck     bool           // state=stuck, else in_flight
	OlderThan *time.Duration // older_than=, the stuck threshold, when not nil
	Limit     int            // limit= when > 0
	After     string         // after=: the Next of the page before
}

// Sagas reads one page of the sagas in flight (or stuck) from the read
// model.
func (c *Client) Sagas(ctx context.Context, q SagaQuery) (SagaList, error) {
	v := url.Values{}
	v.Set("state", "in_flight")
	if q.Stuck {
		v.Set("state", "stuck")
	}
	if q.OlderThan != nil {
		v.Set("older_than", q.OlderThan.String())
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	var list SagaList
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.ReadmodelURL+"/sagas?"+v.Encode(), nil)
	if err != nil {
		return list, fmt.Errorf("list sagas: %w", err)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return list, fmt.Errorf("list sagas: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return list, fmt.Errorf("list sagas: %w", &StatusError{Code: resp.StatusCode, Status: resp.Status, Body: strings.TrimSpace(string(raw))})
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return list, fmt.Errorf("list sagas: decode answer: %w", err)
	}
	return list, nil
}
