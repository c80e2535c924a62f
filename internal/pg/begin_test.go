package pg_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// BeginWith's statements run inside the transaction it begins: a commit
// keeps them and what followed, a rollback drops them, a broken
// transaction's commit reports the rollback, and every way out gives the
// connection back to the pool.
func TestBeginWith(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, "beginwith", svc)
	ctx := t.Context()
	begin := func(id int) pgx.Tx {
		t.Helper()
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO things (id) VALUES ($1) RETURNING id`, id)
		tx, br, err := pg.BeginWith(ctx, pool, b)
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := br.QueryRow().Scan(&got); err != nil || got != id {
			t.Fatalf("batch result = %d, %v; want %d", got, err, id)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		var inTx bool
		if err := tx.QueryRow(ctx, `SELECT now() <> statement_timestamp()`).Scan(&inTx); err != nil || !inTx {
			t.Fatalf("not inside a transaction (%v)", err)
		}
		return tx
	}

	tx := begin(1)
	if _, err := tx.Exec(ctx, `INSERT INTO things (id) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("rollback after commit = %v, want ErrTxClosed", err)
	}
	idle(t, pool, "after commit")
	if n := things(t, pool); n != 2 {
		t.Fatalf("%d things after commit, want 2", n)
	}

	tx = begin(3)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, pool, "after rollback")
	if n := things(t, pool); n != 2 {
		t.Fatalf("%d things after rollback, want 2: the batch's insert is rolled back too", n)
	}

	tx = begin(4)
	if _, err := tx.Exec(ctx, `INSERT INTO things (id) VALUES (1)`); err == nil {
		t.Fatal("duplicate key accepted")
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("commit of a broken transaction = %v, want ErrTxCommitRollback", err)
	}
	idle(t, pool, "after a broken commit")
	if n := things(t, pool); n != 2 {
		t.Fatalf("%d things after a broken transaction, want 2", n)
	}

	if _, err := tx.Begin(ctx); err == nil {
		t.Error("a nested transaction was begun")
	}

	b := &pgx.Batch{}
	b.Queue(`SELECT 1/0`)
	tx, br, err := pg.BeginWith(ctx, pool, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := br.Exec(); err == nil {
		t.Error("division by zero accepted")
	}
	_ = br.Close()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, pool, "after a failed batch")
}

// GenericPlans holds for the rest of its transaction only: there a
// statement runs its generic plan from its first execution; after the
// commit, on the same connection, Postgres plans it for its parameters
// again.
func TestGenericPlansLastTheTransaction(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, "genericplans", svc)
	ctx := t.Context()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	const q = `SELECT count(*) FROM things WHERE id = ANY($1)`
	plans := func(db interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) (generic, custom int64) {
		t.Helper()
		var n int
		if err := db.QueryRow(ctx, q, []int32{1, 2}).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`, q).
			Scan(&generic, &custom); err != nil {
			t.Fatal(err)
		}
		return generic, custom
	}

	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, pg.GenericPlans); err != nil {
		t.Fatal(err)
	}
	if g, cu := plans(tx); g != 1 || cu != 0 {
		t.Errorf("inside the transaction: %d generic, %d custom plans; want 1, 0", g, cu)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if g, cu := plans(c); g != 1 || cu != 1 {
		t.Errorf("after the commit: %d generic, %d custom plans in all; want 1, 1", g, cu)
	}
}

// Under GenericPlans a statement that looks rows up by key uses the index
// even when its plan is made on a nearly empty table (as on a fresh
// stack), where a generic plan alone scans the whole table, and keeps
// scanning it as the table grows.
func TestGenericPlansUseTheIndexOnANearlyEmptyTable(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, "genericindex", svc)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `INSERT INTO things (id) SELECT generate_series(1, 20); ANALYZE things`); err != nil {
		t.Fatal(err)
	}
	plan := func(settings string) string {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, settings); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `PREPARE lock_things(int[]) AS SELECT 1 FROM things WHERE id = ANY($1) ORDER BY id FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, `EXPLAIN EXECUTE lock_things('{1,2}')`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `DEALLOCATE lock_things`); err != nil { // a session's, not the transaction's
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	if p := plan(`SET LOCAL plan_cache_mode = force_generic_plan`); !strings.Contains(p, "Seq Scan") {
		t.Fatalf("a generic plan alone, on a table of one page, does not scan it (the case this guards against is gone?):\n%s", p)
	}
	if p := plan(pg.GenericPlans); strings.Contains(p, "Seq Scan") || !strings.Contains(p, "Index") {
		t.Errorf("under GenericPlans the lookup by key scans the table:\n%s", p)
	}
}

// CommitWith commits its statements and the transaction before them
// together; when one of them fails nothing is committed, the error comes
// back and the transaction is rolled back as usual; every way out gives
// the connection back. A transaction not from BeginWith commits the same.
func TestCommitWith(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, "commitwith", svc)
	ctx := t.Context()
	has := func(id int) bool {
		t.Helper()
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM things WHERE id = $1)`, id).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	insertThen := func(id int) *pgx.Batch {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO things (id) VALUES ($1) RETURNING id`, id)
		return b
	}
	readID := func(want int) func(pgx.BatchResults) error {
		return func(br pgx.BatchResults) error {
			var got int
			if err := br.QueryRow().Scan(&got); err != nil {
				return err
			}
			if got != want {
				t.Errorf("result %d, want %d", got, want)
			}
			return nil
		}
	}
	begin := func(id int) pgx.Tx {
		t.Helper()
		tx, br, err := pg.BeginWith(ctx, pool, insertThen(id))
		if err != nil {
			t.Fatal(err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		return tx
	}

	tx := begin(1)
	if err := pg.CommitWith(ctx, tx, insertThen(2), readID(2)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("rollback after CommitWith = %v, want ErrTxClosed", err)
	}
	idle(t, pool, "after CommitWith")
	if !has(1) || !has(2) {
		t.Fatal("the transaction or its last statement not committed")
	}

	tx = begin(3)
	err := pg.CommitWith(ctx, tx, insertThen(1), readID(1))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("CommitWith of a duplicate key = %v, want the unique violation", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, pool, "after a failed CommitWith")
	if has(3) {
		t.Fatal("a transaction whose last statement failed was committed")
	}

	ptx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.CommitWith(ctx, ptx, insertThen(4), readID(4)); err != nil {
		t.Fatal(err)
	}
	idle(t, pool, "after CommitWith of a pgx transaction")
	if !has(4) {
		t.Fatal("a pgx transaction's CommitWith not committed")
	}
}

// Transact commits its statements as one transaction, or, when one fails,
// none of them; either way the connection goes back to the pool, and one
// left broken is not handed out again.
func TestTransact(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, "transact", svc)
	ctx := t.Context()
	two := func(a, b int) *pgx.Batch {
		q := &pgx.Batch{}
		q.Queue(`INSERT INTO things (id) VALUES ($1)`, a)
		q.Queue(`INSERT INTO things (id) VALUES ($1) RETURNING id`, b)
		return q
	}
	read := func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		var id int
		return br.QueryRow().Scan(&id)
	}
	if err := pg.Transact(ctx, pool, two(1, 2), read); err != nil {
		t.Fatal(err)
	}
	if n := things(t, pool); n != 2 {
		t.Fatalf("%d things, want 2", n)
	}
	err := pg.Transact(ctx, pool, two(3, 1), read)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("Transact with a duplicate key = %v, want the unique violation", err)
	}
	if n := things(t, pool); n != 2 {
		t.Fatalf("%d things, want 2: the first insert of the failed transaction is not kept", n)
	}
	idle(t, pool, "after a failed Transact")
	for _, c := range pool.AcquireAllIdle(ctx) {
		if st := c.Conn().PgConn().TxStatus(); st != 'I' {
			t.Errorf("a pooled connection's transaction status is %c, want I (idle)", st)
		}
		c.Release()
	}
}

// idle checks that every connection of pool is back in it.
func idle(t *testing.T, pool *pgxpool.Pool, when string) {
	t.Helper()
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%s: %d connections still acquired, want 0", when, n)
	}
}

// things counts the rows of the things table of pool's schema.
func things(t *testing.T, pool *pgxpool.Pool) (n int) {
	t.Helper()
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM things`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
