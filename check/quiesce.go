package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/stream"
)

// Polling intervals of Quiesce: the first, and the most it backs off to.
const (
	quiesceFirstPoll = 25 * time.Millisecond
	quiesceMaxPoll   = 500 * time.Millisecond
)

// ErrNotQuiet is returned, wrapped, by Quiesce when the system did not
// settle in time.
var ErrNotQuiet = errors.New("not quiet")

// Quiesce waits until the saga has settled: every outbox of the four
// services (each in its service's database of dbs) is empty and every durable consumer of the ORDERS, INVENTORY and PAYMENTS
// streams has nothing pending and nothing awaiting an ack, on two polls in a
// row with no new message in the streams between them. It polls with
// backoff and gives up after timeout with an error (matching ErrNotQuiet)
// that says what was still busy. The pools may have any search_path.
//
// An error reading the state is retried until the timeout (NATS or
// PostgreSQL may be restarting), except a missing table or schema, which
// waiting cannot fix.
func Quiesce(ctx context.Context, dbs DBs, js jetstream.JetStream, timeout time.Duration) error {
	began := time.Now()
	for _, db := range dbs.services() {
		if db.pool == nil {
			return fmt.Errorf("quiesce: no database for the %s service", db.service)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	interval := quiesceFirstPoll
	var prev *snapshot // the previous poll, if it was quiet
	var last string    // why the last poll was not quiet
	for {
		snap, err := poll(ctx, dbs, js)
		switch {
		case err != nil && ctx.Err() != nil:
			// Cut short by the deadline: keep what the last poll saw.
		case err != nil && permanent(err):
			return fmt.Errorf("quiesce: %w", err)
		case err != nil:
			prev, last = nil, err.Error()
		case len(snap.busy) > 0:
			prev, last = nil, strings.Join(snap.busy, "; ")
		case prev != nil && slices.Equal(prev.lastSeqs, snap.lastSeqs):
			return nil
		default:
			prev, last = &snap, "settling"
			interval = quiesceFirstPoll // quiet once: confirm soon
		}

		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
				return fmt.Errorf("quiesce: %w", cause)
			}
			return fmt.Errorf("quiesce: %w after %v: %s", ErrNotQuiet, time.Since(began).Round(time.Millisecond), last)
		case <-t.C:
		}
		interval = min(interval*3/2, quiesceMaxPoll)
	}
}

// snapshot is what one poll saw.
type snapshot struct {
	busy     []string // what is not quiet, readable
	lastSeqs []uint64 // last sequence of each event stream
}

// poll looks at every outbox and at the durable consumers of the event
// streams once.
func poll(ctx context.Context, dbs DBs, js jetstream.JetStream) (snapshot, error) {
	var snap snapshot
	for _, db := range dbs.services() {
		var n int
		schema := db.schema
		table := pgx.Identifier{schema, "outbox"}.Sanitize()
		if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			return snapshot{}, fmt.Errorf("count %s.outbox: %w", schema, err)
		}
		if n > 0 {
			snap.busy = append(snap.busy, fmt.Sprintf("%s.outbox holds %d %s", schema, n, plural(n, "event", "events")))
		}
	}
	// The event streams, and REPLAY: a dead letter replayed and not yet
	// handled is work in flight too.
	for _, name := range append(eventStreams(), stream.Replay) {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			snap.lastSeqs = append(snap.lastSeqs, 0)
			continue
		}
		if err != nil {
			return snapshot{}, fmt.Errorf("stream %s: %w", name, err)
		}
		snap.lastSeqs = append(snap.lastSeqs, s.CachedInfo().State.LastSeq)
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			if ci.Config.Durable == "" {
				continue // ephemeral, such as an ordered consumer reading the stream
			}
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				snap.busy = append(snap.busy, fmt.Sprintf("consumer %s on %s: %d pending, %d awaiting ack",
					ci.Config.Durable, name, ci.NumPending, ci.NumAckPending))
			}
		}
		if err := consumers.Err(); err != nil {
			return snapshot{}, fmt.Errorf("list consumers of %s: %w", name, err)
		}
	}
	return snap, nil
}

// permanent reports an error that polling again cannot fix: a PostgreSQL
// syntax or access error (SQLSTATE class 42), such as a missing table, or a
// missing schema (class 3F).
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "42") || strings.HasPrefix(pgErr.Code, "3F"))
}
