package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Ceiling is a rate the machine reaches doing one part of a saga's work
// alone.
type Ceiling struct {
	PerSec float64 `json:"per_sec"`
	Count  int64   `json:"count"`
	What   string  `json:"what"`
}

// sagaMessage is a typical event of the saga: an order.created of one
// item, with the five headers every event carries.
func sagaMessage() (*nats.Msg, error) {
	id := "0193b1c2-d3e4-7f00-8a1b-2c3d4e5f6a7b"
	e, err := event.New(event.OrderCreated, id, "", event.OrderCreatedPayload{
		OrderID: id, CustomerID: "load-c123",
		Items:      []event.Item{{SKU: "load-42", Qty: 1, UnitPriceCents: 499}},
		TotalCents: 499,
	}, time.Now())
	if err != nil {
		return nil, err
	}
	return e.Msg(), nil
}

// msgSize is the bytes of a message as sent: subject, headers and body.
func msgSize(m *nats.Msg) int {
	n := len(m.Subject) + len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // "k: v\r\n"
		}
	}
	return n
}

// publishCeiling publishes copies of the saga's message asynchronously to
// a scratch file stream on the stack's nats-server (its sync_interval is
// the stack's: always) for d, each with its own Nats-Msg-Id as the relay
// sends them, and counts the acks per second. The stream is deleted after.
func publishCeiling(ctx context.Context, nc *nats.Conn, d time.Duration) (Ceiling, int, error) {
	const name = "BENCH_CEILING"
	var failed atomic.Int64
	var firstErr atomic.Value
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}))
	if err != nil {
		return Ceiling{}, 0, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{"bench.ceiling.>"}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	}); err != nil {
		return Ceiling{}, 0, fmt.Errorf("publish ceiling: create stream: %w", err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }()
	tmpl, err := sagaMessage()
	if err != nil {
		return Ceiling{}, 0, err
	}
	size := msgSize(tmpl)

	var sent int64
	start := time.Now()
	for i := 0; time.Since(start) < d && ctx.Err() == nil; i++ {
		m := &nats.Msg{Subject: "bench.ceiling." + strconv.Itoa(i%1000), Header: nats.Header{}, Data: tmpl.Data}
		for k, v := range tmpl.Header {
			m.Header[k] = v
		}
		m.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second)); err != nil {
			return Ceiling{}, size, fmt.Errorf("publish ceiling: %w", err)
		}
		sent++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return Ceiling{}, size, fmt.Errorf("publish ceiling: acks still pending after 30s")
	}
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return Ceiling{}, size, fmt.Errorf("publish ceiling: %d of %d publishes failed: %w", failed.Load(), sent, err)
	}
	return Ceiling{
		PerSec: float64(sent) / elapsed.Seconds(), Count: sent,
		What: fmt.Sprintf("JetStream async publish of %d-byte messages (the saga's order.created with its headers) with a Nats-Msg-Id each, file stream, 256 in flight, the stack's nats-server (sync_interval: always)", size),
	}, size, nil
}

// txCeiling runs saga-step transactions against the stack's Postgres in a
// scratch schema for d with clients connections: each transaction inserts
// an inbox row, updates one state row and inserts an outbox row, as a
// handler does, and commits (fsync and synchronous_commit as the stack
// runs: on). The schema is dropped after.
func txCeiling(ctx context.Context, databaseURL string, clients int, d time.Duration) (Ceiling, error) {
	const schema = "bench_ceiling"
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return Ceiling{}, fmt.Errorf("transaction ceiling: %w", err)
	}
	defer pool.Close()
	drop := func(ctx context.Context) error {
		_, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
		return err
	}
	if err := drop(ctx); err != nil {
		return Ceiling{}, fmt.Errorf("transaction ceiling: %w", err)
	}
	defer func() { _ = drop(context.WithoutCancel(ctx)) }()
	const rows = 1000
	if _, err := pool.Exec(ctx, `
		CREATE SCHEMA `+schema+`;
		CREATE TABLE `+schema+`.inbox (consumer text NOT NULL, event_id uuid NOT NULL, event_type text NOT NULL,
			order_id text NOT NULL, handled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, event_id));
		CREATE TABLE `+schema+`.state (id int PRIMARY KEY, n bigint NOT NULL, updated_at timestamptz NOT NULL);
		CREATE TABLE `+schema+`.outbox (seq bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, event_type text NOT NULL,
			order_id text NOT NULL, causation_id text NOT NULL DEFAULT '', occurred_at timestamptz NOT NULL, body bytea NOT NULL,
			created_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO `+schema+`.state SELECT g, 0, now() FROM generate_series(1, `+strconv.Itoa(rows)+`) g;`); err != nil {
		return Ceiling{}, fmt.Errorf("transaction ceiling: create schema: %w", err)
	}
	tmpl, err := sagaMessage()
	if err != nil {
		return Ceiling{}, err
	}
	var done atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for time.Since(start) < d && ctx.Err() == nil {
				if err := sagaStep(ctx, pool, schema, rng.IntN(rows)+1, tmpl.Data); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Ceiling{}, fmt.Errorf("transaction ceiling: %w", firstErr)
	}
	n := done.Load()
	return Ceiling{
		PerSec: float64(n) / elapsed.Seconds(), Count: n,
		What: fmt.Sprintf("Postgres transactions of an inbox insert, a one-row update and an outbox insert, %d clients, the stack's Postgres (fsync on)", clients),
	}, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func sagaStep(ctx context.Context, pool *pgxpool.Pool, schema string, row int, body []byte) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	id := uuid.Must(uuid.NewV7())
	if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.inbox (consumer, event_id, event_type, order_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		"bench", id, "order.created", id.String()); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE `+schema+`.state SET n = n + 1, updated_at = now() WHERE id = $1`, row); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.outbox (event_id, event_type, order_id, causation_id, occurred_at, body) VALUES ($1, $2, $3, $4, now(), $5)`,
		uuid.Must(uuid.NewV7()), "inventory.reserved", id.String(), id.String(), body); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
