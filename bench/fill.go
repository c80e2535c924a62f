package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/load"
)

// Fill puts history on a stack: real sagas, run by the real services, but
// injected faster than POST /orders can take them. It writes the orders as
// the order service's POST /orders would (PENDING, version 1) straight into
// orders.orders with COPY, and publishes their order.created to ORDERS as
// the order service's outbox relay would (event.New, e.Msg(), Nats-Msg-Id =
// the event id, many publishes in flight). Everything downstream —
// reservations, payments, the other streams, inboxes, the read model — is
// then made by the services themselves when they consume the backlog, so
// the history has the shapes a real one has.
//
// The orders get no deadline (NULL), so that no timeout fires while a
// large backlog waits: every saga ends as its class says. Fill does not
// start or stop services; see RunHistory for the order of things.
type Fill struct {
	Pool *pgxpool.Pool // the stack's database (orders.orders)
	NC   *nats.Conn    // the stack's NATS
	// AdminToken is the bearer token of inventory's operator endpoints
	// (--admin-token-file), sent with PUT /stock; empty for a stack
	// without one.
	AdminToken string
	// Mix, DeclinePriceCents: as in load.Config (default 80/10/10, over the
	// stack's payment limit).
	Mix               load.Mix
	DeclinePriceCents int64
	// SKUPrefix names the history's own SKUs: <prefix>-0 … <prefix>-(SKUs-1)
	// with stock enough for every confirmable order, <prefix>-oos with none
	// (SeedStock gives them that). Default "hist", 64 SKUs.
	SKUPrefix string
	SKUs      int
	// Chunk is the orders per COPY and per round of publishes (default
	// 10,000); InFlight the publishes awaiting their ack (default 4,096).
	Chunk, InFlight int
}

// FillResult says what a Fill wrote and how fast.
type FillResult struct {
	Orders  int            `json:"orders"`
	Took    time.Duration  `json:"took_ns"`
	PerSec  float64        `json:"per_sec"`
	Classes map[string]int `json:"classes"`
}

func (f *Fill) defaults() {
	if f.Mix == (load.Mix{}) {
		f.Mix = load.Mix{load.Confirm: 80, load.Decline: 10, load.OOS: 10}
	}
	if f.DeclinePriceCents == 0 {
		f.DeclinePriceCents = load.DefaultDeclinePriceCents
	}
	if f.SKUPrefix == "" {
		f.SKUPrefix = "hist"
	}
	if f.SKUs <= 0 {
		f.SKUs = load.DefaultSKUs
	}
	if f.Chunk <= 0 {
		f.Chunk = 10_000
	}
	if f.InFlight <= 0 {
		f.InFlight = 4096
	}
}

// histStock is what each confirmable history SKU starts with: more than a
// history of millions of sagas sells.
const histStock = 1_000_000_000

// SeedStock gives the history's SKUs their stock through the inventory
// API (PUT /stock/{sku}), as an operator would: so inventory's own rows and
// invariant 2 (initial + adjusted = available + reserved + sold) hold from
// the start.
func (f *Fill) SeedStock(ctx context.Context, hc *http.Client, inventoryURL string) error {
	f.defaults()
	put := func(sku string, n int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, inventoryURL+"/stock/"+sku,
			bytes.NewReader(fmt.Appendf(nil, `{"available":%d}`, n)))
		if err != nil {
			return fmt.Errorf("seed stock %s: %w", sku, err)
		}
		req.Header.Set("Content-Type", "application/json")
		if f.AdminToken != "" {
			req.Header.Set("Authorization", "Bearer "+f.AdminToken)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("seed stock %s: %w", sku, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return fmt.Errorf("seed stock %s: %s: %s", sku, resp.Status, strings.TrimSpace(string(b)))
		}
		return nil
	}
	for i := range f.SKUs {
		if err := put(f.sku(i), histStock); err != nil {
			return err
		}
	}
	return put(f.SKUPrefix+"-oos", 0)
}

func (f *Fill) sku(i int) string { return fmt.Sprintf("%s-%d", f.SKUPrefix, i) }

// order is history order number i: its class and its items, shaped as
// load's (one item, a price under the payment limit, over it, or an SKU
// with no stock).
func (f *Fill) order(cycle []load.Class, i int) (load.Class, []event.Item, string) {
	c := cycle[i%len(cycle)]
	customer := fmt.Sprintf("%s-c%d", f.SKUPrefix, i%1000)
	switch c {
	case load.Decline:
		return c, []event.Item{{SKU: f.sku(i % f.SKUs), Qty: 1, UnitPriceCents: f.DeclinePriceCents}}, customer
	case load.OOS:
		return c, []event.Item{{SKU: f.SKUPrefix + "-oos", Qty: 1, UnitPriceCents: 500}}, customer
	default:
		return c, []event.Item{{SKU: f.sku(i % f.SKUs), Qty: 1, UnitPriceCents: int64(100 + i%900)}}, customer
	}
}

// Run writes n orders and publishes their order.created, chunk by chunk:
// each chunk's rows are committed before its events are published, as the
// outbox makes it. progress, when not nil, is called after each chunk with
// the orders done so far.
func (f *Fill) Run(ctx context.Context, n int, progress func(done int)) (FillResult, error) {
	f.defaults()
	res := FillResult{Classes: map[string]int{}}
	js, err := jetstream.New(f.NC, jetstream.WithPublishAsyncMaxPending(f.InFlight))
	if err != nil {
		return res, fmt.Errorf("fill: %w", err)
	}
	cycle := f.Mix.Cycle()
	began := time.Now()
	for done := 0; done < n; {
		size := min(f.Chunk, n-done)
		rows := make([][]any, 0, size)
		msgs := make([]*nats.Msg, 0, size)
		now := time.Now().UTC()
		for i := done; i < done+size; i++ {
			class, items, customer := f.order(cycle, i)
			res.Classes[class.String()]++
			id, err := uuid.NewV7()
			if err != nil {
				return res, fmt.Errorf("fill: order id: %w", err)
			}
			var total int64
			for _, it := range items {
				total += int64(it.Qty) * it.UnitPriceCents
			}
			p := event.OrderCreatedPayload{OrderID: id.String(), CustomerID: customer, Items: items, TotalCents: total}
			e, err := event.New(event.OrderCreated, id.String(), "", p, now)
			if err != nil {
				return res, fmt.Errorf("fill: order %s: %w", id, err)
			}
			itemsJSON, err := json.Marshal(items)
			if err != nil {
				return res, fmt.Errorf("fill: order %s: encode items: %w", id, err)
			}
			eventID, err := uuid.Parse(e.ID)
			if err != nil {
				return res, fmt.Errorf("fill: order %s: event id: %w", id, err)
			}
			rows = append(rows, []any{id.String(), customer, itemsJSON, total, "PENDING", "", false, int32(1), "", now, now, eventID})
			msgs = append(msgs, e.Msg())
		}
		if _, err := f.Pool.CopyFrom(ctx, pgx.Identifier{"orders", "orders"},
			[]string{"order_id", "customer_id", "items", "total_cents", "status", "reason", "payment_failed", "version",
				"request_hash", "created_at", "updated_at", "created_event_id"},
			pgx.CopyFromRows(rows)); err != nil {
			return res, fmt.Errorf("fill: copy %d orders: %w", size, err)
		}
		if err := publishAll(ctx, js, msgs); err != nil {
			return res, fmt.Errorf("fill: %w", err)
		}
		done += size
		if progress != nil {
			progress(done)
		}
	}
	res.Orders = n
	res.Took = time.Since(began)
	if s := res.Took.Seconds(); s > 0 {
		res.PerSec = float64(n) / s
	}
	return res, nil
}

// publishAll publishes msgs asynchronously, as many in flight as js allows,
// and waits for every ack; a duplicate is a success, as for the relay.
func publishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	acks := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		a, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		acks = append(acks, a)
	}
	for _, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			return fmt.Errorf("publish %s: %w", a.Msg().Subject, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Minute):
			return fmt.Errorf("publish %s: no ack after 1m", a.Msg().Subject)
		}
	}
	return nil
}

// WaitTerminal waits until no order of the order service is PENDING or
// RESERVED, calling progress (when not nil) about every interval with the
// open count.
func WaitTerminal(ctx context.Context, pool *pgxpool.Pool, timeout, interval time.Duration, progress func(open int64)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lastReport := time.Now()
	for {
		var open int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders.orders WHERE status IN ('PENDING', 'RESERVED')`).Scan(&open); err != nil {
			return fmt.Errorf("wait for every order to end: %w", err)
		}
		if open == 0 {
			return nil
		}
		if progress != nil && time.Since(lastReport) >= interval {
			progress(open)
			lastReport = time.Now()
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for every order to end: %d still open: %w", open, ctx.Err())
		case <-t.C:
		}
	}
}
