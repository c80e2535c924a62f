package testenv

import (
	"context"
	"io/fs"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/pg"
)

// JetStream returns a JetStream handle on nc.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("testenv: jetstream: %v", err)
	}
	return js
}

// Pool opens a pool on a fresh database bound to schema, runs the delivery
// migrations and then migrations (may be nil), and closes it at cleanup.
func Pool(t testing.TB, schema string, migrations fs.FS) *pgxpool.Pool {
	t.Helper()
	return PoolOn(t, DatabaseURL(t), schema, migrations)
}

// PoolOn is Pool on a database the test already has (several services'
// schemas in one database, as in production).
func PoolOn(t testing.TB, url, schema string, migrations fs.FS) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, pg.Config{URL: url, Schema: schema})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, schema, migrations); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return pool
}
