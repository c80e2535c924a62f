package pg_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var svc = fstest.MapFS{
	"001_things.up.sql": {Data: []byte(`CREATE TABLE things (id int PRIMARY KEY);`)},
	"002_more.up.sql":   {Data: []byte(`ALTER TABLE things ADD COLUMN name text NOT NULL DEFAULT '';`)},
}

// Instances starting together migrate the same schema at once: the advisory
// lock makes one of them do the work and the others find it done.
func TestConcurrentMigrateOfOneSchema(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			pool, err := pg.Open(ctx, pg.Config{URL: url, Schema: "inventory"})
			if err != nil {
				errs <- err
				return
			}
			defer pool.Close()
			errs <- pg.Migrate(ctx, pool, "inventory", svc)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}

	pool, err := pg.Open(ctx, pg.Config{URL: url, Schema: "inventory"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var version int
	if err := pool.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != 2 {
		t.Fatalf("schema version = %d, want 2", version)
	}
	// The unqualified names resolve in the service schema.
	for _, table := range []string{"outbox", "inbox", "things"} {
		var schema string
		err := pool.QueryRow(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name = $1`, table).Scan(&schema)
		if err != nil || schema != "inventory" {
			t.Fatalf("table %s: schema %q, %v; want inventory", table, schema, err)
		}
	}
}

func TestTwoSchemasInOneDatabase(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	a := testenv.PoolOn(t, url, "orders", nil)
	b := testenv.PoolOn(t, url, "payment", svc)
	ctx := context.Background()
	if _, err := a.Exec(ctx, `INSERT INTO inbox (consumer, event_id, event_type, order_id) VALUES ('c', gen_random_uuid(), 't', 'o')`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, `SELECT count(*) FROM inbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("payment.inbox sees %d rows written to orders.inbox", n)
	}
	if _, err := a.Exec(ctx, `SELECT 1 FROM things`); err == nil {
		t.Fatal("orders schema has the payment schema's table")
	}
}

func TestOpenRejectsBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, url, schema string }{
		{"empty url", "", "orders"},
		{"bad schema", "postgres://127.0.0.1:1/x", "Orders; DROP"},
		{"unparsable url", "postgres://%zz", "orders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pg.Open(context.Background(), pg.Config{URL: tc.url, Schema: tc.schema}); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
