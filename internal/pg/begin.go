package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// GenericPlans is a statement to queue first in the batch given to
// BeginWith (or Transact): for the rest of the transaction, every
// statement runs its cached generic plan instead of being planned again for
// its parameters (plan_cache_mode), and no plan scans a whole table where
// an index can serve (enable_seqscan off, which leaves a sequential scan as
// the last resort). Both end with the transaction (set_config's is_local).
//
// The saga's statements take arrays of ids and find their rows by their
// keys, so a plan for one set of ids is the plan for any. Yet Postgres
// planned most of them again on every execution (the generic plan, made
// for an array of unknown length, is estimated to cost more than one made
// for a batch of a few ids), and planning was a quarter of Postgres' CPU
// at 50 sagas/s (perf). A generic plan is made once per connection,
// though, and one made while a table was nearly empty scanned it whole:
// on a fresh stack at 500 sagas/s, auto_explain caught sequential scans of
// orders (FOR UPDATE), the read model's events and reservation_items in
// statements of 30 ms and more, and the saga could fall seconds behind
// until autovacuum's ANALYZE had those plans made again. Every such
// statement looks rows up by keys an index serves, so the index is right
// at any size. Statements whose best plan depends on their values (ranges,
// status filters, limits: the API's, the pruners') run outside such
// transactions, and Postgres keeps choosing their plans.
const GenericPlans = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true)"

// BeginWith begins a transaction on a connection of pool and sends b's
// statements in the same round trip as its BEGIN: pool.Begin costs a round
// trip of its own, which for a short transaction is a good share of its
// cost. It returns the transaction and b's results, which the caller reads
// and closes before using the transaction. The transaction is a pgx.Tx
// without nested transactions (Begin fails) or large objects; Commit or
// Rollback ends it and gives the connection back to the pool. An error means
// no transaction is open.
func BeginWith(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) (pgx.Tx, pgx.BatchResults, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("acquire: %w", err)
	}
	withBegin := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+1)}
	withBegin.Queue("begin")
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	br := c.SendBatch(ctx, withBegin)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		c.Release() // not idle: the pool closes it
		return nil, nil, fmt.Errorf("begin: %w", err)
	}
	return &batchTx{c: c}, br, nil
}

// CommitWith ends tx with b's statements and its COMMIT sent together:
// one round trip when tx came from BeginWith (two otherwise: b, then
// Commit). read is given b's results, in b's order, and reads them all.
// Postgres runs the COMMIT only when every statement of b succeeded; when
// one failed, or read did, CommitWith returns that error and tx stays to
// be rolled back (a Rollback after a COMMIT that went through, which only
// a failure of read itself can leave, finds nothing to undo). Like Commit,
// it returns pgx.ErrTxCommitRollback when Postgres rolled back instead.
func CommitWith(ctx context.Context, tx pgx.Tx, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	btx, ok := tx.(*batchTx)
	if !ok || btx.closed {
		br := tx.SendBatch(ctx, b)
		err := read(br)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	withCommit := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+1)}
	withCommit.QueuedQueries = append(withCommit.QueuedQueries, b.QueuedQueries...)
	withCommit.Queue("commit")
	err := readThenCommit(btx.c.SendBatch(ctx, withCommit), read)
	if err == nil || errors.Is(err, pgx.ErrTxCommitRollback) {
		btx.closed = true
		btx.c.Release()
	}
	return err
}

// Transact runs b's statements as one transaction in one round trip: its
// BEGIN, b and its COMMIT are sent together. read is given b's results, in
// b's order, and reads them all. Postgres runs the COMMIT only when every
// statement of b succeeded; otherwise Transact rolls back and returns the
// error. (A failure of read itself comes after Postgres committed: the
// error then stands for a commit whose outcome the caller did not learn.)
func Transact(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	defer c.Release()
	all := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+2)}
	all.Queue("begin")
	all.QueuedQueries = append(all.QueuedQueries, b.QueuedQueries...)
	all.Queue("commit")
	err = readThenCommit(c.SendBatch(ctx, all), func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		return read(br)
	})
	if err != nil && !errors.Is(err, pgx.ErrTxCommitRollback) {
		// A connection left inside a transaction is closed by the pool
		// when given back.
		_, _ = c.Exec(context.WithoutCancel(ctx), "rollback")
	}
	return err
}

// readThenCommit reads a batch ending in a COMMIT: read takes the results
// before it, then the COMMIT's is checked (pgx.ErrTxCommitRollback when
// Postgres rolled back instead), and br is closed.
func readThenCommit(br pgx.BatchResults, read func(pgx.BatchResults) error) error {
	err := read(br)
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && tag.String() == "ROLLBACK" {
		err = pgx.ErrTxCommitRollback
	}
	return err
}

// batchTx is a transaction BeginWith began. Unlike pgx's, it holds its
// connection and gives it back when it ends.
type batchTx struct {
	c      *pgxpool.Conn
	closed bool
}

var errNested = errors.New("pg: a transaction from BeginWith has no nested transactions")

func (tx *batchTx) Begin(context.Context) (pgx.Tx, error) { return nil, errNested }

// Commit commits; like pgx's, it returns pgx.ErrTxCommitRollback when the
// transaction was broken and Postgres rolled it back instead.
func (tx *batchTx) Commit(ctx context.Context) error {
	if tx.closed {
		return pgx.ErrTxClosed
	}
	tx.closed = true
	defer tx.c.Release()
	tag, err := tx.c.Exec(ctx, "commit")
	if err != nil {
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Rollback rolls back; it is safe to call after Commit (pgx.ErrTxClosed).
// A connection left in a transaction by a failed rollback is closed by the
// pool when given back.
func (tx *batchTx) Rollback(ctx context.Context) error {
	if tx.closed {
		return pgx.ErrTxClosed
	}
	tx.closed = true
	defer tx.c.Release()
	_, err := tx.c.Exec(ctx, "rollback")
	return err
}

func (tx *batchTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return tx.c.CopyFrom(ctx, table, columns, src)
}

func (tx *batchTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return tx.c.SendBatch(ctx, b)
}

// LargeObjects is not supported: the zero value, unusable.
func (tx *batchTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

func (tx *batchTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return tx.c.Conn().Prepare(ctx, name, sql)
}

func (tx *batchTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return tx.c.Exec(ctx, sql, args...)
}

func (tx *batchTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return tx.c.Query(ctx, sql, args...)
}

func (tx *batchTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return tx.c.QueryRow(ctx, sql, args...)
}

func (tx *batchTx) Conn() *pgx.Conn { return tx.c.Conn() }
