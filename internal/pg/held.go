package pg

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Held holds the statements ExecOrHold kept under a context from
// WithHeld, for the caller that owns the transaction to send with its
// COMMIT (CommitWith): a handler's last writes then cost no round trip of
// their own. It belongs to one transaction and one goroutine.
type Held struct{ queries []*pgx.QueuedQuery }

type heldKey struct{}

// WithHeld returns a context under which ExecOrHold keeps its statements in
// the returned Held instead of running them. For a transaction that commits
// whole: a statement held behind a savepoint that is then rolled back would
// still be sent.
func WithHeld(ctx context.Context) (context.Context, *Held) {
	h := &Held{}
	return context.WithValue(ctx, heldKey{}, h), h
}

// ExecOrHold runs b's statements in tx in one round trip, or, under a
// context from WithHeld, keeps them to go with the transaction's COMMIT.
// It is for writes whose results the caller does not read and that nothing
// later in the transaction reads either: the last statements of a handler
// that has the transaction to itself. A held statement that fails makes
// the COMMIT fail (Postgres commits nothing after an error), and the error
// reaches whoever commits. A check on a statement's outcome belongs in its
// SQL, as an error Postgres raises.
func ExecOrHold(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	if h, ok := ctx.Value(heldKey{}).(*Held); ok {
		h.queries = append(h.queries, b.QueuedQueries...)
		return nil
	}
	_, err := ExecBatch(ctx, tx, b)
	return err
}

// Len returns how many statements h holds (0 for a nil h).
func (h *Held) Len() int {
	if h == nil {
		return 0
	}
	return len(h.queries)
}

// Queue appends the statements h holds to b, in the order they were held.
func (h *Held) Queue(b *pgx.Batch) {
	if h != nil {
		b.QueuedQueries = append(b.QueuedQueries, h.queries...)
	}
}
